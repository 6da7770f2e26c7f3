"""The probe on a CUDA GPU: the same table as on the CPU, and its cost against a plain forward there.

1. `qnoise.analyze` of the reference network (`bench_probe.py`) on random binary spikes, against the ANN twin
   and against the float SNN, on the CPU (numba kernels, step-major) and on the GPU with the torch functions
   eager and fused by ``torch.compile`` (Triton): every value must agree (rtol 1e-4, atol 1e-6).
2. The plain GPU forward in each order of `qnoise.stepping` (layer-major, the default on a GPU; folded;
   step-major), as ratios to layer-major, and the same network as a plain ANN (per step and folded): what
   `qnoise.stepping.DEVICES` should say for CUDA.
3. probe / plain forward on the GPU (T=8, batches of 64 and 512, ``compile=True``), timed with CUDA
   synchronisation, as the median of per-round ratios; and the host synchronisations one probed batch makes
   (``torch.cuda.set_sync_debug_mode``: each one is a wait for the device).

Run on a machine with a GPU: ``python benchmarks/check_cuda.py``. Exits 1 if a table disagrees.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_forward import plain_ann  # noqa: E402
from bench_probe import T, spikes  # noqa: E402  (the reference network's input: random binary spikes)

from qnoise import stepping  # noqa: E402
from qnoise.models import build_model  # noqa: E402
from qnoise.probe import Compare, Probe, analyze  # noqa: E402


def agree(a, b) -> bool:
    return len(a) == len(b) and bool(np.allclose(a.value.to_numpy(), b.value.to_numpy(), rtol=1e-4, atol=1e-6,
                                                 equal_nan=True))


def timed(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def ratios(candidates: dict, base: str, rounds: int = 15) -> dict[str, float]:
    """Median over interleaved rounds of each candidate's time over ``base``'s in the same round."""
    for fn in candidates.values():  # warm-up: cuDNN autotuning, compilation
        fn()
        fn()
    per = {name: [] for name in candidates}
    for _ in range(rounds):
        t = {name: timed(fn) for name, fn in candidates.items()}
        for name in candidates:
            per[name].append(t[name] / t[base])
    return {name: statistics.median(r) for name, r in per.items()}


def tables_agree(model) -> bool:
    data = spikes(T, 128)
    ok = True
    for reference in ("ann", "snn"):
        tables = {
            "cpu kernels": analyze(model, data, device="cpu", compile=True, reference=reference),
            "cuda eager": analyze(model, data, device="cuda", compile=False, reference=reference),
            "cuda torch.compile": analyze(model, data, device="cuda", compile=True, reference=reference),
        }
        for name, df in tables.items():
            same = agree(df, tables["cpu kernels"])
            ok &= same
            print(f"  reference={reference}, {name}: {len(df)} rows, {'agrees with' if same else 'DIFFERS from'} "
                  f"the CPU table")
    return ok


def forward_orders(model) -> None:
    gpu = copy.deepcopy(model).cuda()
    ann = plain_ann(gpu)
    for batch in (64, 512):
        x = spikes(T, batch)[0].transpose(0, 1).contiguous().cuda()

        def run(kind: str):
            def fn():
                with torch.inference_mode(), stepping.mode(kind):
                    gpu(x)
            return fn

        with torch.inference_mode():
            folded = x.flatten(0, 1)
            found = ratios({"snn layer-major": run("layer"), "snn folded": run("fold"), "snn step-major": run("step"),
                            "ann per step": lambda: torch.stack([ann(xt) for xt in x]),
                            "ann folded": lambda: ann(folded)}, "snn layer-major")
        print(f"  B={batch}: " + ", ".join(f"{k} {v:.2f}" for k, v in found.items()) + "  (times / snn layer-major)")


def probe_cost(model) -> None:
    gpu, plain = copy.deepcopy(model).cuda(), copy.deepcopy(model).cuda()
    for batch in (64, 512):
        X, y = spikes(T, batch)
        x, y = X.transpose(0, 1).contiguous().cuda(), y.cuda()
        for reference in ("ann", "snn"):
            with torch.no_grad(), Probe(copy.deepcopy(gpu), Compare(reference=reference), compile=True) as probe:
                found = ratios({"plain": lambda: plain(x), "probe": lambda: probe.step(x, y)}, "plain")
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    torch.cuda.set_sync_debug_mode("warn")
                    try:
                        probe.step(x, y)
                    finally:
                        torch.cuda.set_sync_debug_mode("default")
                syncs = sum("synchroniz" in str(w.message) for w in caught)
            target = "  (target <= 1.3)" if reference == "ann" else ""
            print(f"  B={batch}, reference={reference}: probe / plain forward = {found['probe']:.2f}{target}; "
                  f"{syncs} host synchronisation(s) in one probed batch")


def main() -> int:
    if not torch.cuda.is_available():
        print(f"no CUDA device (torch {torch.__version__}, CUDA build: {torch.version.cuda}): nothing to check")
        return 0
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    torch.manual_seed(0)
    model = build_model("cnn", (2, 34, 34), 10).eval()
    print("1. tables, CPU vs GPU:")
    ok = tables_agree(model)
    print(f"2. plain forward on the GPU, T={T}:")
    forward_orders(model)
    print(f"3. probe on the GPU, T={T}, compile=True:")
    probe_cost(model)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
