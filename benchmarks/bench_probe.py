"""Cost of the probe and of sweeps, as ratios measured in one run (issue 4's targets).

Reference network (`qnoise.models.build_model("cnn", (2, 34, 34), 10)`): conv 2->32, conv 32->64 (3x3, BN,
IF, 2x2 average pooling each), linear 4096->256, IF, linear 256->10; input random binary spikes 2x34x34.

1. probe / plain: one batch (T=8, B=64) through `qnoise.Probe` (all layers, all timesteps, all metrics:
   ANN twin, error decomposition, isolated mode, firing rates, synaptic operations) against the plain SNN
   forward, both under ``torch.no_grad``. Target <= 1.25.
2. sweep / plain: `qnoise.sweep` over weight bits {1, 2, 4, 8, 32} x T {1, 2, 4, 8, 16, 32} (30 cells, one
   batch of B samples each, serial, parquet files written) against the sum of the 30 plain evaluations
   (weights quantized, SNN forward). Target <= 1.3.

Each ratio is the median over rounds of the ratio of two runs made in the same round (other processes'
load drifts between rounds more than within one); wall and CPU time (all threads of this process).

Run: ``.venv/bin/python benchmarks/bench_probe.py [--rounds 9] [--sweep-rounds 3] [--threads 2]``
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch
from torch.nn.utils import parametrize

import qnoise
from qnoise.models import build_model
from qnoise.probe import Probe, configured

T, B = 8, 64
BITS = [1, 2, 4, 8, 32]
STEPS = [1, 2, 4, 8, 16, 32]


def spikes(timesteps: int, batch: int = B):
    """Random binary event frames, sample-major ``[N, T, 2, 34, 34]`` with labels (fixed per T)."""
    g = torch.Generator().manual_seed(1000 + timesteps)
    x = (torch.rand(batch, timesteps, 2, 34, 34, generator=g) < 0.15).float()
    return x, torch.randint(0, 10, (batch,), generator=g)


def interleaved(candidates: dict, rounds: int, warmup: int = 2) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds per candidate and round, the candidates run in turn within each round. CPU time
    (all threads of this process) is less disturbed than wall time when other processes share the cores."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            times[name].append((time.perf_counter() - w, time.process_time() - c))
    return times


def median_time(times: list[tuple[float, float]]) -> float:
    return statistics.median(w for w, _ in times)


def paired_ratio(times: dict, num: str, den: str) -> tuple[float, float]:
    """Median over rounds of ``num / den`` measured in the same round, (wall, CPU): the load of other
    processes drifts between rounds more than within one."""
    pairs = list(zip(times[num], times[den], strict=True))
    return (statistics.median(a[0] / b[0] for a, b in pairs), statistics.median(a[1] / b[1] for a, b in pairs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--sweep-rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=B, help="samples per sweep cell")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = build_model("cnn", (2, 34, 34), 10).eval()
    X, y = spikes(T)
    x = X.transpose(0, 1).contiguous()

    # 1. probe vs plain forward --------------------------------------------------------------------
    plain_model = copy.deepcopy(model)  # hooks live on `model` only: the plain forward runs unprobed
    propagated_model = copy.deepcopy(model)
    with torch.no_grad(), Probe(model) as probe, Probe(propagated_model, isolate=False) as propagated:
        start = time.perf_counter()
        probe.step(x, y)  # first call: builds the structure and compiles the fused kernels
        first = time.perf_counter() - start
        propagated.step(x, y)
        times = interleaved({"plain": lambda: plain_model(x), "probe": lambda: probe.step(x, y),
                             "propagated": lambda: propagated.step(x, y)}, args.rounds)
    print(f"reference network, T={T}, B={B}, {args.threads} threads, {args.rounds} interleaved rounds "
          f"(median of the ratios within a round)")
    print(f"first probed batch (structure + kernel compile or cache load): {first:.1f} s")
    wall, cpu = paired_ratio(times, "probe", "plain")
    print(f"plain forward {median_time(times['plain']) * 1e3:.0f} ms; probe / plain forward = {wall:.3f} wall, "
          f"{cpu:.3f} CPU time  (target <= 1.25)")
    wall, cpu = paired_ratio(times, "propagated", "plain")
    print(f"  without isolated mode (propagated rows only): {wall:.3f} wall, {cpu:.3f} CPU time")

    # 2. sweep vs the sum of its plain evaluations -----------------------------------------------------
    data = {t: spikes(t, args.batch) for t in STEPS}

    def plain_cells() -> None:
        for bits in BITS:
            for t in STEPS:
                xs, _ = data[t]
                with configured(model, weight_bits=bits), torch.no_grad(), parametrize.cached():
                    model(xs.transpose(0, 1))

    def run_sweep() -> None:
        with tempfile.TemporaryDirectory() as out:
            qnoise.sweep(model, data_for, weight_bits=BITS, timesteps=STEPS, out=out, workers=1,
                         batch_size=args.batch, progress=False, device="cpu")

    global _DATA
    _DATA = data
    run_sweep()  # warm-up (kernels compiled for every T)
    plain_cells()
    times = interleaved({"plain": plain_cells, "sweep": run_sweep}, args.sweep_rounds, warmup=0)
    print(f"sweep {len(BITS)}x{len(STEPS)} (B={args.batch}, serial): {median_time(times['sweep']):.1f} s; sum of "
          f"plain evaluations {median_time(times['plain']):.1f} s")
    wall, cpu = paired_ratio(times, "sweep", "plain")
    print(f"sweep / sum of plain evaluations = {wall:.3f} wall, {cpu:.3f} CPU time  (target <= 1.3)")


_DATA: dict = {}


def data_for(timesteps: int):
    return _DATA[timesteps]


if __name__ == "__main__":
    main()
