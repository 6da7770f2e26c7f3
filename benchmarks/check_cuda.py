"""The probe on a CUDA GPU: the same table as on the CPU, and its cost against a plain forward there.

1. `qnoise.analyze` of the reference network (`bench_probe.py`) on random binary spikes, on the CPU (fused
   numba kernel) and on the GPU with the torch functions eager and fused by ``torch.compile`` (Triton):
   every value must agree (rtol 1e-4, atol 1e-6).
2. probe / plain forward on the GPU (T=8, batches of 64 and 512), timed with CUDA synchronisation, as the
   median of per-round ratios.

Run on a machine with a GPU: ``python benchmarks/check_cuda.py``. Exits 1 if a table disagrees.
"""

from __future__ import annotations

import copy
import sys
import time

import numpy as np
import torch

from bench_probe import T, spikes  # the reference network's input: random binary spikes

from qnoise.models import build_model
from qnoise.probe import Probe, analyze


def agree(a, b) -> bool:
    return bool(np.allclose(a.value.to_numpy(), b.value.to_numpy(), rtol=1e-4, atol=1e-6, equal_nan=True))


def timed(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 0
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    torch.manual_seed(0)
    model = build_model("cnn", (2, 34, 34), 10).eval()
    data = spikes(T, 128)
    tables = {
        "cpu fused": analyze(model, data, device="cpu", compile=True),
        "cuda eager": analyze(model, data, device="cuda", compile=False),
        "cuda torch.compile": analyze(model, data, device="cuda", compile=True),
    }
    ok = True
    for name, df in tables.items():
        same = agree(df, tables["cpu fused"])
        ok &= same
        print(f"{name}: {len(df)} rows, {'agrees with' if same else 'DIFFERS from'} the CPU table")

    gpu = copy.deepcopy(model).cuda()
    plain = copy.deepcopy(model).cuda()
    for batch in (64, 512):
        X, y = spikes(T, batch)
        x, y = X.transpose(0, 1).contiguous().cuda(), y.cuda()
        with torch.no_grad(), Probe(gpu, compile=True) as probe:
            for _ in range(3):  # warm-up: structure, compilation
                probe.step(x, y)
                plain(x)
            ratios = []
            for _ in range(15):
                p = timed(lambda: plain(x))
                ratios.append(timed(lambda: probe.step(x, y)) / p)
        print(f"GPU, T={T}, B={batch}: probe / plain forward = {float(np.median(ratios)):.2f} "
              f"(plain {p * 1e3:.1f} ms)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
