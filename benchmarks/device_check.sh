#!/usr/bin/env bash
# Issue 15's measurements on a quiet machine with a GPU (the device machine: 16 CPU cores, one H200), in at
# most 10 minutes: the CPU ratios at 2 threads (bench_forward.py: SNN vs the fastest ANN for cnn, mlp and
# resnet; bench_probe.py: probe / plain forward for both references, 4-bit weights, the 5x6 sweep) and the GPU
# check (check_cuda.py: CPU and GPU tables agree, the GPU forward in each order, probe / plain forward there,
# host synchronisations). Each step has its own time limit, so one that runs long leaves the others their
# time; everything goes to stdout.
#
# Run from the repository root: bash benchmarks/device_check.sh
set -u
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3

section() { printf '\n==== %s (%s)\n' "$1" "$(date +%T)"; }

section "environment"
nproc
"$PY" -c "import torch, numba; print('torch', torch.__version__, '| CUDA build', torch.version.cuda, '| GPU',
torch.cuda.is_available() and torch.cuda.get_device_name(), '| numba', numba.__version__)"

section "numba kernels: compile once into the on-disk cache"
timeout 150 "$PY" -c "from qnoise.probe.cpu_kernel import warm_up; warm_up()" && echo "compiled"

section "bench_forward.py --threads 2"
timeout 100 "$PY" benchmarks/bench_forward.py --threads 2 --rounds 11

section "bench_probe.py --threads 2"
timeout 170 "$PY" benchmarks/bench_probe.py --threads 2 --rounds 9 --sweep-rounds 2

section "check_cuda.py"
timeout 150 "$PY" benchmarks/check_cuda.py
echo "check_cuda exit status: $?"

section "done"
