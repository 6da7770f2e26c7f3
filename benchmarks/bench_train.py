"""Speed of one BPTT training step, qnoise against SpikingJelly and snnTorch, as ratios from one run.

Reference network (`qnoise.models.build_model("cnn", (2, 34, 34), 10)`): conv 2->32, conv 32->64 (3x3, BN,
IF, 2x2 average pooling each), linear 4096->256, IF, linear 256->10; input random binary frames 2x34x34,
T=8, B=64. One step = forward over T, cross-entropy of the time-averaged readout, backward, Adam step.

Candidates (same initial weights, ATan surrogate with alpha = 2 everywhere, reset by subtraction):

- ``qnoise``: the model `qnoise train` builds (IF, learned threshold, v[0] = 0), in training mode.
- ``qnoise_fixed``: the same with fixed thresholds (what the peers do).
- ``spikingjelly``: ``IFNode(step_mode="m", v_reset=None)`` with its stateless layers in
  ``SeqToANNContainer`` (folded over T), the multi-step torch backend.
- ``snntorch``: ``snn.Leaky(beta=1, reset_mechanism="subtract")`` stepped in a Python loop over T.

The peers' forward equals qnoise's in eval mode (checked). In training mode, which is what is timed, they
differ in ways that do not change the work much: SpikingJelly's ``SeqToANNContainer`` normalises BatchNorm
over T*B (qnoise and snnTorch: over B per step), snnTorch fires on ``>`` (qnoise on ``>=``) and detaches its
reset from the gradient. The headline divides qnoise with learned thresholds (more work) by the fastest peer;
``qnoise_fixed`` against that peer is the like-for-like ratio, printed under it.

The allocator setting `qnoise train` applies (`qnoise.allocator`: freed memory kept for reuse, so large
tensors are not page-faulted in anew each step) is process-wide, so it holds for every candidate here;
``--malloc default`` measures with glibc's defaults instead. Peers are optional (``.venv/bin/pip install --no-deps -r benchmarks/requirements-peers.txt``). Each ratio is
the median over rounds of (candidate / qnoise) measured in the same round, the candidates run in turn, so load
from other processes hits every candidate alike; absolute times are printed only beside the ratios.

``--finetune`` instead measures layer-wise fine-tuning (`qnoise.train.layerwise_finetune`) of the 2-bit CNN
converted from a quantized ANN on 4,000 28x28 images (T = 3), against one training epoch of that ANN: the
seconds of one epoch per tuned layer and of the accuracy check that decides keep or revert, as ratios of
single measurements taken one after the other (not interleaved rounds: each is a whole epoch).

Run: ``.venv/bin/python benchmarks/bench_train.py [--rounds 9] [--threads 2] [--finetune]``
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import snntorch_sequential, spikingjelly_sequential  # noqa: E402

from qnoise.models import build_model  # noqa: E402

T, B = 8, 64


def reference(learn_threshold: bool = True) -> nn.Module:
    neuron = {"type": "if", "learn_threshold": learn_threshold, "surrogate": "atan"}
    torch.manual_seed(0)
    return build_model("cnn", (2, 34, 34), 10, kind="snn", neuron=neuron)


def stateless_blocks(model: nn.Module) -> list[nn.Module]:
    """The qnoise model's stateless stages (deep copies, same weights); a neuron follows each but the last."""
    m = copy.deepcopy(model)
    return [nn.Sequential(m.conv1.body),
            nn.Sequential(m.pool1.body, m.conv2.body),
            nn.Sequential(m.pool2.body, m.fc3.body),
            m.readout.body]


def spikingjelly_net(model: nn.Module):
    from spikingjelly.activation_based import surrogate

    return spikingjelly_sequential(stateless_blocks(model), surrogate.ATan(alpha=2.0))


def snntorch_net(model: nn.Module):
    from snntorch import surrogate

    return snntorch_sequential(stateless_blocks(model), surrogate.atan(alpha=2.0))


def step_fn(net: nn.Module, forward, x: torch.Tensor, y: torch.Tensor):
    """One training step of ``net``: forward over T, CE of the mean readout, backward, Adam."""
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step() -> float:
        loss = F.cross_entropy(forward(x).mean(0), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def candidates(x: torch.Tensor, y: torch.Tensor) -> dict:
    out = {}
    for name, learn in (("qnoise", True), ("qnoise_fixed", False)):
        net = reference(learn)
        out[name] = step_fn(net, net, x, y)
    base = reference(False)
    for name, build in (("spikingjelly", spikingjelly_net), ("snntorch", snntorch_net)):
        try:
            net, fwd = build(base)
        except ImportError as err:
            print(f"{name}: not installed ({err.name}); pip install --no-deps -r benchmarks/requirements-peers.txt")
            continue
        out[name] = step_fn(net, fwd, x, y)
    return out


def check_same_forward(x: torch.Tensor) -> None:
    """The peers compute the same network: in eval mode (BN on running statistics) their outputs equal qnoise's."""
    base = reference(False).eval()
    with torch.no_grad():
        ref = base(x)
        for name, build in (("spikingjelly", spikingjelly_net), ("snntorch", snntorch_net)):
            try:
                _, fwd = build(base)
            except ImportError:
                continue
            out = fwd(x)
            diff = float((out - ref).abs().max())
            print(f"{name}: max |output - qnoise| in eval mode = {diff:.2e}")


def finetune_cost(samples: int = 4000, batch: int = 64) -> dict[str, float]:
    """Seconds of one ANN training epoch, one fine-tuning epoch per tuned layer and one accuracy check."""
    from qnoise.train import Batches, convert_to_snn, train_epoch
    from qnoise.train.finetune import _accuracy, layerwise_finetune

    g = torch.Generator().manual_seed(1)
    x = (torch.rand(samples, 1, 1, 28, 28, generator=g) < 0.3).float()  # [N, T=1, C, H, W]
    y = torch.randint(0, 10, (samples,), generator=g)
    torch.manual_seed(0)
    ann = build_model("cnn", (1, 28, 28), 10, kind="ann", act_bits=2)
    opt = torch.optim.Adam(ann.parameters(), lr=1e-3)
    train_epoch(ann, Batches(x[:256], y[:256], batch, shuffle=True), opt, torch.device("cpu"))  # warm-up
    start = time.perf_counter()
    train_epoch(ann, Batches(x, y, batch, shuffle=True), opt, torch.device("cpu"))
    ann_epoch = time.perf_counter() - start
    snn = convert_to_snn(ann.eval())
    loader = Batches(x, y, batch, shuffle=True)
    reports = layerwise_finetune(snn, ann, loader, 3, epochs=1, force=True, progress=False)
    start = time.perf_counter()
    _accuracy(snn, Batches(x, y, 256), "cpu", 3)
    check = time.perf_counter() - start
    out = {"ann_epoch": ann_epoch, "accuracy_check": check}
    for r in reports:
        if "seconds" in r:
            out[f"layer{r['layer']}"] = r["seconds"]
    print(f"fine-tuning the converted 2-bit CNN, {samples} images 28x28, T=3, batch {batch}, "
          f"{torch.get_num_threads()} threads")
    print(f"one ANN training epoch: {ann_epoch:.1f} s")
    for k, v in out.items():
        if k.startswith("layer"):
            print(f"{k} (one epoch): {v:.1f} s = {v / ann_epoch:.2f} ANN epochs")
    print(f"accuracy check on the training set (per layer and epoch): {check:.1f} s = {check / ann_epoch:.2f} "
          f"ANN epochs")
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--finetune", action="store_true", help="measure layer-wise fine-tuning against an ANN epoch")
    p.add_argument("--malloc", choices=("recycle", "default"), default="recycle",
                   help="recycle: keep freed memory for reuse, as `qnoise train` sets it for the whole process "
                        "(qnoise.allocator); default: glibc's defaults")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.malloc == "recycle":
        from qnoise.allocator import recycle_large_allocations

        recycle_large_allocations()
    if args.finetune:
        return finetune_cost()
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(T, B, 2, 34, 34, generator=g) < 0.15).float()
    y = torch.randint(0, 10, (B,), generator=g)
    check_same_forward(x)
    steps = candidates(x, y)
    for _ in range(args.warmup):
        for fn in steps.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    ratios = {name: statistics.median(a / b for a, b in zip(ts, times["qnoise"], strict=True))
              for name, ts in times.items()}
    print(f"one BPTT step (forward + backward + Adam), reference CNN, T={T}, B={B}, {args.threads} threads, "
          f"{args.rounds} interleaved rounds, malloc {args.malloc} (for every candidate: one process)")
    print(f"{'candidate':<14} {'time / qnoise':>13} {'median s':>9}")
    for name, ts in times.items():
        print(f"{name:<14} {ratios[name]:>13.3f} {statistics.median(ts):>9.3f}")
    peers = [k for k in ("spikingjelly", "snntorch") if k in ratios]
    if peers:
        fastest = min(peers, key=lambda k: ratios[k])
        print(f"qnoise (learned thresholds) / fastest peer ({fastest}, fixed thresholds) = "
              f"{1 / ratios[fastest]:.3f}  (target <= 1.0)")
        if "qnoise_fixed" in ratios:
            print(f"qnoise_fixed / {fastest} (the same work: fixed thresholds) = "
                  f"{ratios['qnoise_fixed'] / ratios[fastest]:.3f}")
    return ratios


if __name__ == "__main__":
    main()
