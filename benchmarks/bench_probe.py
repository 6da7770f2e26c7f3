"""Cost of the probe and of sweeps, as ratios measured in one run (issue 15's targets).

Reference network (`qnoise.models.build_model("cnn", (2, 34, 34), 10)`): conv 2->32, conv 32->64 (3x3, BN,
IF, 2x2 average pooling each), linear 4096->256, IF, linear 256->10; input random binary spikes 2x34x34.
The SNN runs as `Network.forward` runs it at inference (step-major here: `qnoise.stepping`), probed or not.

1. probe / plain: one batch (T=8, B=64) through `qnoise.Probe` (all layers, all timesteps, all metrics:
   ANN twin, four-term error decomposition, isolated mode, firing rates, synaptic operations) against the
   plain SNN forward, both under ``torch.no_grad``. Target <= 1.25. Also reported: without isolated mode;
   with 4-bit weights (the twin with float weights then needs one more T = 1 pass for z_hat, and the plain
   forward runs at 4 bits too); against the float SNN (``reference="snn"``): on the float model (it is its own
   float SNN, which is then not run again), at 4-bit thresholds (the float SNN steps in lockstep with the model
   as a second network, and each quantized neuron on its inputs; target <= 2.2), and at 4-bit weights (the own
   pass is a third network: the quantized copy fed the float SNN's spikes); without a reference (spikes and
   synaptic operations only); and the floor of any probe against the twin, before its sums: the forward with a
   no-op hook on each neuron (so neuron and pooling step apart) plus the twin's one step.
2. sweep / plain: `qnoise.sweep` over weight bits {1, 2, 4, 8, 32} x T {1, 2, 4, 8, 16, 32} (30 cells, one
   batch of B samples each, serial, parquet files written) against the sum of the 30 plain evaluations
   (weights quantized, SNN forward). Target <= 1.1. Twice: on event frames drawn for each T (no cell can
   share another's run), and on one static image per sample repeated to each T (the six T cells of a width
   are one run at T = 32, `qnoise.sweep.worker.shared_runs`; the plain side still runs every cell).

Each ratio is the median over rounds of the ratio of two runs made in the same round (other processes'
load drifts between rounds more than within one); wall and CPU time (all threads of this process). Freed
memory is kept for reuse (`qnoise.allocator`): a `Probe` sets it on creation, so the plain side runs with it
too. Each timed sweep starts without the probe's cached structures (`qnoise.probe.structure`), as a user's one
sweep does.

Run: ``.venv/bin/python benchmarks/bench_probe.py [--rounds 9] [--sweep-rounds 3] [--threads 2]``
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn.utils import parametrize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved_times, median_ms, paired_ratio  # noqa: E402

import qnoise  # noqa: E402
from qnoise import stepping  # noqa: E402
from qnoise.models import build_model  # noqa: E402
from qnoise.probe import Compare, Probe, configured, structure  # noqa: E402
from qnoise.allocator import recycle_large_allocations  # noqa: E402

T, B = 8, 64
BITS = [1, 2, 4, 8, 32]
STEPS = [1, 2, 4, 8, 16, 32]


def spikes(timesteps: int, batch: int = B):
    """Random binary event frames, sample-major ``[N, T, 2, 34, 34]`` with labels (fixed per T)."""
    g = torch.Generator().manual_seed(1000 + timesteps)
    x = (torch.rand(batch, timesteps, 2, 34, 34, generator=g) < 0.15).float()
    return x, torch.randint(0, 10, (batch,), generator=g)


def report(times: dict, name: str, what: str, target: str = "") -> None:
    wall, cpu = paired_ratio(times, name, "plain")
    print(f"  {what}: {wall:.3f} wall, {cpu:.3f} CPU time{'  (target ' + target + ')' if target else ''}")


def probe_ratios(model, x, y, rounds: int) -> None:
    """Probe (each reference) against the plain forward of the same weights, interleaved."""
    plain_model = copy.deepcopy(model)  # hooks live on the probed copies only: the plain forward runs unprobed
    probed = {"probe": Compare(), "propagated": Compare(isolate=False), "snn": Compare(reference="snn"),
              "none": Compare(reference="none")}
    first = {}
    with torch.no_grad(), contextlib.ExitStack() as stack:
        probes = {name: stack.enter_context(Probe(copy.deepcopy(model), c)) for name, c in probed.items()}
        for name, p in probes.items():
            start = time.perf_counter()
            p.step(x, y)  # first call: builds the structure and compiles the fused kernels
            first[name] = time.perf_counter() - start
        order = stepping.plan(plain_model, x)
        hooked, twin, x_mean = floor_parts(model, x)
        times = interleaved_times({"plain": lambda: plain_model(x), "hooked": lambda: hooked(x),
                                   "twin": lambda: twin(x_mean),
                                   **{n: (lambda p=p: p.step(x, y)) for n, p in probes.items()}}, rounds)
    print(f"first probed batch (structure + kernel compile or cache load): {first['probe']:.1f} s")
    wall_ms, cpu_ms = median_ms(times["plain"])
    print(f"plain forward ({order}-major) {wall_ms:.0f} ms wall, {cpu_ms:.0f} ms CPU")
    report(times, "probe", "probe / plain forward (ANN twin, all metrics)", "<= 1.25")
    report(times, "propagated", "without isolated mode (propagated rows only)")
    report(times, "snn", "against the float SNN (reference='snn'), a float model (its own float SNN: run once)")
    report(times, "none", "no reference (reference='none', and any model without a twin): spikes and synops")
    hooked_ratio, twin_ratio = paired_ratio(times, "hooked", "plain")[1], paired_ratio(times, "twin", "plain")[1]
    print(f"  floor of any probe that reads each neuron's output and runs the twin: {hooked_ratio:.3f} (the forward "
          f"with a no-op hook on each neuron: its neuron and pooling steps no longer fuse) + {twin_ratio:.3f} (the "
          f"twin's one step) = {hooked_ratio + twin_ratio:.3f} CPU time, before any sum")
    thresholds_ratio(model, x, y, rounds)


def floor_parts(model, x):
    """What any probe against the twin pays before its sums: the forward with a step-aware no-op hook on each
    neuron (a hook reads the neuron's output, so the neuron and the pooling after it step apart), and the twin's
    pass on the mean input."""
    from qnoise.neurons import spiking_neurons
    from qnoise.probe.references import ann_twin
    from qnoise.time_mean import frame_mean

    hooked = copy.deepcopy(model)
    for _, neuron in spiking_neurons(hooked):
        neuron.register_forward_hook(stepping.step_aware(lambda module, args, out: None))
    return hooked, ann_twin(model), frame_mean(x)


def thresholds_ratio(model, x, y, rounds: int) -> None:
    """Float weights, 4-bit thresholds: the float SNN is a second network (its neurons' thresholds are float),
    and each quantized neuron steps on the float SNN's input to it."""
    from qnoise.models import apply_quantization

    t_plain, t_snn = copy.deepcopy(model), copy.deepcopy(model)
    for m in (t_plain, t_snn):
        apply_quantization(m, {"thresholds": {"bits": 4}})
    with torch.no_grad(), Probe(t_snn, Compare(reference="snn")) as snn:
        snn.step(x, y)
        times = interleaved_times({"plain": lambda: t_plain(x), "snn": lambda: snn.step(x, y)}, rounds)
    report(times, "snn", "against the float SNN, 4-bit thresholds (a second SNN runs), against the same plain "
                         "forward", "<= 2.2")


def quantized_ratios(model, x, y, rounds: int) -> None:
    """At 4-bit weights: the ANN twin (one more T = 1 pass for z_hat) and the float SNN (a third network)."""
    q_plain = copy.deepcopy(model)
    q_ann, q_snn = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad(), configured(q_plain, weight_bits=4), configured(q_ann, weight_bits=4), \
            configured(q_snn, weight_bits=4), parametrize.cached(), Probe(q_ann) as ann, \
            Probe(q_snn, Compare(reference="snn")) as snn:
        ann.step(x, y)
        snn.step(x, y)
        times = interleaved_times({"plain": lambda: q_plain(x), "ann": lambda: ann.step(x, y),
                                   "snn": lambda: snn.step(x, y)}, rounds)
    report(times, "ann", "4-bit weights, ANN twin (z_hat pass), against a 4-bit plain forward")
    report(times, "snn", "4-bit weights, against the float SNN (three networks), against a 4-bit plain forward")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--sweep-rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=B, help="samples per sweep cell")
    args = parser.parse_args()
    recycle_large_allocations()  # as a Probe does on creation, for the plain forward too
    print("freed memory reused (qnoise.allocator), as every Probe sets it")
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = build_model("cnn", (2, 34, 34), 10).eval()
    X, y = spikes(T)
    x = X.transpose(0, 1).contiguous()

    print(f"reference network, T={T}, B={B}, {args.threads} threads, {args.rounds} interleaved rounds "
          f"(median of the ratios within a round)")
    probe_ratios(model, x, y, args.rounds)
    quantized_ratios(model, x, y, args.rounds)

    # 2. sweep vs the sum of its plain evaluations -----------------------------------------------------
    sweep_ratio(model, {t: spikes(t, args.batch) for t in STEPS}, args, "event frames (other frames per T)")
    g = torch.Generator().manual_seed(7)
    image = torch.rand(args.batch, 1, 2, 34, 34, generator=g)  # one frame per sample: repeated to each T
    labels = torch.randint(0, 10, (args.batch,), generator=g)
    sweep_ratio(model, {"static": (image, labels)}, args, "a static image (the T cells of a width are one run)")


def sweep_ratio(model, data: dict, args, what: str) -> None:
    """One sweep over `BITS` x `STEPS` against the sum of its 30 plain evaluations, interleaved."""
    static = "static" in data

    def frames(t):
        x, _ = data["static"] if static else data[t]
        return x.transpose(0, 1).expand(t, *x.shape[:1], *x.shape[2:]) if static else x.transpose(0, 1)

    def plain_cells() -> None:
        for bits in BITS:
            for t in STEPS:
                with configured(model, weight_bits=bits), torch.no_grad(), parametrize.cached():
                    model(frames(t))

    def run_sweep() -> None:
        structure._CACHE.pop(model, None)  # each timed sweep builds its structures, as a user's one sweep does
        with tempfile.TemporaryDirectory() as out:
            qnoise.sweep(model, data["static"] if static else data_for, weight_bits=BITS, timesteps=STEPS, out=out,
                         workers=1, batch_size=args.batch, progress=False, device="cpu")

    global _DATA
    _DATA = data
    run_sweep()  # warm-up (kernels compiled for every T)
    plain_cells()
    times = interleaved_times({"plain": plain_cells, "sweep": run_sweep}, args.sweep_rounds, warmup=0)
    print(f"sweep {len(BITS)}x{len(STEPS)} on {what} (B={args.batch}, serial): "
          f"{median_ms(times['sweep'])[0] / 1e3:.1f} s; sum of plain evaluations "
          f"{median_ms(times['plain'])[0] / 1e3:.1f} s (wall)")
    wall, cpu = paired_ratio(times, "sweep", "plain")
    print(f"  sweep / sum of plain evaluations = {wall:.3f} wall, {cpu:.3f} CPU time  (target <= 1.1)")


_DATA: dict = {}


def data_for(timesteps: int):
    return _DATA[timesteps]


if __name__ == "__main__":
    main()
