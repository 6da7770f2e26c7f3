"""Cost of the probe and of sweeps, as ratios measured in one run (issue 4's targets).

Reference network (`qnoise.models.build_model("cnn", (2, 34, 34), 10)`): conv 2->32, conv 32->64 (3x3, BN,
IF, 2x2 average pooling each), linear 4096->256, IF, linear 256->10; input random binary spikes 2x34x34.

1. probe / plain: one batch (T=8, B=64) through `qnoise.Probe` (all layers, all timesteps, all metrics:
   ANN twin, four-term error decomposition, isolated mode, firing rates, synaptic operations) against the
   plain SNN forward, both under ``torch.no_grad``. Target <= 1.25. Also reported: without isolated mode;
   with 4-bit weights (the twin with float weights then needs one more T = 1 pass for z_hat, and the plain
   forward runs at 4 bits too); against the float SNN (``reference="snn"``: a second SNN forward and the pass
   that feeds each quantized layer the float SNN's spikes).
2. sweep / plain: `qnoise.sweep` over weight bits {1, 2, 4, 8, 32} x T {1, 2, 4, 8, 16, 32} (30 cells, one
   batch of B samples each, serial, parquet files written) against the sum of the 30 plain evaluations
   (weights quantized, SNN forward). Target <= 1.3.

Each ratio is the median over rounds of the ratio of two runs made in the same round (other processes'
load drifts between rounds more than within one); wall and CPU time (all threads of this process).

Run: ``.venv/bin/python benchmarks/bench_probe.py [--rounds 9] [--sweep-rounds 3] [--threads 2]``
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import tempfile
import time

import torch
from torch.nn.utils import parametrize

import qnoise
from qnoise.models import build_model
from qnoise.probe import Compare, Probe, configured
from qnoise.train.allocator import recycle_large_allocations

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
    parser.add_argument("--system-malloc", action="store_true", help="keep glibc's allocation defaults")
    args = parser.parse_args()
    recycled = False if args.system_malloc else recycle_large_allocations()
    print(f"freed memory {'reused (qnoise.train.allocator)' if recycled else 'returned to the system (glibc)'}")
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = build_model("cnn", (2, 34, 34), 10).eval()
    X, y = spikes(T)
    x = X.transpose(0, 1).contiguous()

    # 1. probe vs plain forward --------------------------------------------------------------------
    plain_model = copy.deepcopy(model)  # hooks live on the probed copies only: the plain forward runs unprobed
    probed = {"probe": (copy.deepcopy(model), Compare()), "propagated": (copy.deepcopy(model), Compare(isolate=False)),
              "snn": (copy.deepcopy(model), Compare(reference="snn"))}
    first = {}
    with torch.no_grad(), contextlib.ExitStack() as stack:
        probes = {name: stack.enter_context(Probe(m, c)) for name, (m, c) in probed.items()}
        for name, p in probes.items():
            start = time.perf_counter()
            p.step(x, y)  # first call: builds the structure and compiles the fused kernels
            first[name] = time.perf_counter() - start
        times = interleaved({"plain": lambda: plain_model(x), **{n: (lambda p=p: p.step(x, y))
                                                                 for n, p in probes.items()}}, args.rounds)
    print(f"reference network, T={T}, B={B}, {args.threads} threads, {args.rounds} interleaved rounds "
          f"(median of the ratios within a round)")
    print(f"first probed batch (structure + kernel compile or cache load): {first['probe']:.1f} s")
    wall, cpu = paired_ratio(times, "probe", "plain")
    print(f"plain forward {median_time(times['plain']) * 1e3:.0f} ms; probe / plain forward = {wall:.3f} wall, "
          f"{cpu:.3f} CPU time  (target <= 1.25)")
    wall, cpu = paired_ratio(times, "propagated", "plain")
    print(f"  without isolated mode (propagated rows only): {wall:.3f} wall, {cpu:.3f} CPU time")
    wall, cpu = paired_ratio(times, "snn", "plain")
    print(f"  against the float SNN (reference='snn'): {wall:.3f} wall, {cpu:.3f} CPU time")
    q_model, q_plain = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad(), configured(q_model, weight_bits=4), configured(q_plain, weight_bits=4), \
            parametrize.cached(), Probe(q_model) as q_probe:
        q_probe.step(x, y)
        times = interleaved({"plain": lambda: q_plain(x), "probe": lambda: q_probe.step(x, y)}, args.rounds)
    wall, cpu = paired_ratio(times, "probe", "plain")
    print(f"  4-bit weights (z_hat pass), against a 4-bit plain forward: {wall:.3f} wall, {cpu:.3f} CPU time")

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
