# Plain runner: `make run` (set up and start the main job), `make test` (set up and run every test).
# The virtual environment is built once and rebuilt when pyproject.toml changes.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup run test bench demo clean

setup: $(VENV)/.installed

# torch==2.13.0 named on the same line keeps pip on the CPU build (see pyproject.toml)
# then the probe's CPU kernels are compiled once into numba's on-disk cache (20-35 s)
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0 -e ".[test]"
	# SpikingJelly for the interop tests, without its torchvision/torchaudio requirement (a multi-GB CUDA build)
	$(BIN)/pip install -q --disable-pip-version-check --no-deps spikingjelly==2.0.0
	$(BIN)/python -c "from qnoise.probe.cpu_kernel import warm_up; warm_up()"
	touch $@

run: setup
	$(BIN)/qnoise dashboard

demo: setup
	$(BIN)/qnoise demo

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/bench_forward.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
