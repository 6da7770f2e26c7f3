"""SNN forward vs the fastest forward of the same network as an ANN over the same T x B inputs (DESIGN.md).

For each reference network (`qnoise.models.build_model` on 2x34x34 binary events: ``cnn``, the speed
benchmark's network: conv 2->32, conv 32->64 (3x3, BN, neuron, 2x2 average pooling each), linear 4096->256,
neuron, linear 256->10; ``mlp`` 2312->256->256->10 with BN; ``resnet`` 16/32 channels, one residual block per
stage) at T=8, B=64, inference mode, it times in interleaved rounds:

- ``ann_step``: the same layers as an ANN (MultiStep bodies, ReLU in place of each neuron; torch layers, and
  qnoise's `AvgPool2d`, which gives torch's numbers faster, so the baseline is the faster one), one call per
  timestep on ``x[t] [B, ...]``;
- ``ann_fold``: the same, once on ``x`` folded to ``[T*B, ...]``;
- ``snn``: the qnoise SNN as `Network.forward` runs it at inference, in the order `qnoise.stepping.plan`
  picks: step-major (cnn, resnet) or folded (mlp: small activations);
- ``snn_layer``: the same SNN forced layer-major (each layer over all T before the next), for reference;
- for ``cnn``, snnTorch's and SpikingJelly's forward of the same network where installed
  (`pip install --no-deps -r benchmarks/requirements-peers.txt`): their own neurons around the same stateless
  blocks (qnoise's pooling included), outputs checked equal to qnoise's.

Printed: each time as a ratio to the faster ANN of its round (by wall time for the wall ratio, by CPU time for the
CPU ratio; each the median over rounds of the ratio within a round: other processes' load drifts between rounds
more than within one); the target is SNN <= 1.15.
The SNN's outputs in the three orders (step, fold, layer) are checked identical first.

Allocator: glibc serves each allocation over its mmap threshold with fresh pages, and a first touch costs
about 0.45 ms per MB here, which is most of what folding T into the batch costs (76 MB tensors). By default
the benchmark keeps freed memory for reuse (`qnoise.allocator`, as training does), which makes the
folded ANN as fast as it can be; ``--system-malloc`` keeps glibc's defaults. Both apply to every candidate.

Run: ``.venv/bin/python benchmarks/bench_forward.py [--rounds 15] [--threads 2] [--models cnn,mlp,resnet]``
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import snntorch_sequential, spikingjelly_sequential  # noqa: E402
from timing import interleaved_times, median_ms  # noqa: E402

from qnoise import stepping  # noqa: E402
from qnoise.layers import MultiStep  # noqa: E402
from qnoise.models import build_model  # noqa: E402
from qnoise.neurons import IF, spiking_neurons  # noqa: E402
from qnoise.allocator import recycle_large_allocations  # noqa: E402

T, B = 8, 64
SHAPE = (2, 34, 34)
MODELS = ("cnn", "mlp", "resnet")


def plain_ann(snn: nn.Module) -> nn.Module:
    """The SNN's layers as a plain PyTorch ANN on ``[N, ...]``: each `MultiStep` replaced by its body, each neuron
    by ``nn.ReLU``, the network a plain ``nn.Sequential`` (residual blocks compose their children as before)."""
    ann = nn.Sequential(*copy.deepcopy(list(snn.children())))

    def swap(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, MultiStep):
                setattr(module, name, child.body)
            elif isinstance(child, IF):
                setattr(module, name, nn.ReLU())
            else:
                swap(child)

    swap(ann)
    return ann.eval()


def stateless_blocks(ann: nn.Sequential) -> list[nn.Module]:
    """The plain ANN's stages between two ReLUs (a neuron follows each but the last): the peers' networks."""
    blocks: list[list[nn.Module]] = [[]]
    for m in ann:
        if isinstance(m, nn.ReLU):
            blocks.append([])
        else:
            blocks[-1].append(m)
    return [nn.Sequential(*b) for b in blocks]


def snntorch_snn(blocks: list[nn.Module]):
    return snntorch_sequential(blocks)[1]


def spikingjelly_snn(blocks: list[nn.Module]):
    return spikingjelly_sequential(blocks)[1]


def candidates_for(arch: str, x: torch.Tensor, peers: bool) -> dict:
    snn = build_model(arch, SHAPE, 10).eval()
    ann = plain_ann(snn)
    folded = x.flatten(0, 1)

    def snn_layer():
        with stepping.mode("layer"):
            return snn(x)

    found = {"ann_step": lambda: torch.stack([ann(xt) for xt in x]), "ann_fold": lambda: ann(folded),
             "snn": lambda: snn(x), "snn_layer": snn_layer}
    with torch.inference_mode():
        assert stepping.why_not(snn) is None, stepping.why_not(snn)
        ref = snn_layer()
        for kind in ("step", "fold"):
            with stepping.mode(kind):
                assert torch.equal(snn(x), ref), f"{arch}: {kind} and layer-major outputs differ"
        torch.testing.assert_close(found["ann_step"](), found["ann_fold"]().unflatten(0, (T, B)))
        chosen = stepping.plan(snn, x)
        rates = []
        first = spiking_neurons(snn)[0][1]
        handle = first.register_forward_hook(lambda m, a, o: rates.append(float((o != 0).float().mean())))
        snn_layer()
        handle.remove()
    if peers:
        blocks = stateless_blocks(ann)
        for name, build in (("snntorch", snntorch_snn), ("spikingjelly", spikingjelly_snn)):
            try:
                fn = build(blocks)
            except ImportError as err:
                print(f"  {name}: not installed ({err.name}); pip install --no-deps -r "
                      f"benchmarks/requirements-peers.txt")
                continue
            with torch.inference_mode():  # the same network: its outputs are qnoise's
                assert torch.equal(fn(x), ref), f"{arch}: {name}'s outputs differ from qnoise's"
            found[name] = (lambda f: lambda: f(x))(fn)
    return found, rates[0], chosen


def report(arch: str, times: dict) -> float:
    """Print each candidate against the faster ANN of each round (by wall time for the wall ratio, by CPU time
    for the CPU ratio); returns the SNN's CPU-time ratio."""
    pairs = list(zip(times["ann_step"], times["ann_fold"], strict=True))
    best_wall = [min(a[0], b[0]) for a, b in pairs]
    best_cpu = [min(a[1], b[1]) for a, b in pairs]
    print(f"{'forward':<14} {'wall / ANN':>10} {'CPU / ANN':>10} {'median ms (wall, CPU)':>24}")
    snn_cpu = float("nan")
    for name, ts in times.items():
        wall = statistics.median(t[0] / b for t, b in zip(ts, best_wall, strict=True))
        cpu = statistics.median(t[1] / b for t, b in zip(ts, best_cpu, strict=True))
        w, c = median_ms(ts)
        print(f"{name:<14} {wall:>10.3f} {cpu:>10.3f} {w:>12.1f} {c:>10.1f}")
        if name == "snn":
            snn_cpu = cpu
    step_won = sum(a[1] <= b[1] for a, b in pairs)
    print(f"{arch}: SNN / fastest ANN ({'step by step' if step_won > len(pairs) / 2 else 'folded'} in most rounds) = "
          f"{snn_cpu:.3f} CPU time  (target <= 1.15)")
    return snn_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--system-malloc", action="store_true", help="keep glibc's allocation defaults")
    args = parser.parse_args()
    recycled = False if args.system_malloc else recycle_large_allocations()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    x = (torch.rand(T, B, *SHAPE) < 0.15).float()  # binary event frames
    print(f"T={T}, B={B}, {args.threads} threads, {args.rounds} interleaved rounds, inference mode, freed memory "
          f"{'reused (qnoise.allocator)' if recycled else 'returned to the system (glibc defaults)'}")
    for arch in args.models.split(","):
        found, rate, chosen = candidates_for(arch, x, peers=arch == "cnn")
        print(f"\n{arch}: the SNN's order {chosen!r} (qnoise.stepping.plan); first neuron layer's firing rate "
              f"{rate:.3f}; ratios to the faster ANN of each round")
        with torch.inference_mode():
            times = interleaved_times(found, rounds=args.rounds)
        report(arch, times)


if __name__ == "__main__":
    main()
