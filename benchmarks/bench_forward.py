"""SNN forward vs the same network's ANN forward over the same T x B inputs (DESIGN.md speed target).

Reference network: conv 2->32, conv 32->64 (3x3, BN, IF, 2x2 average pooling each), linear 4096->256, IF,
linear 256->10; input 2x34x34, T=8, B=64. Prints ratios measured in one run (never lone absolute times):
qnoise SNN / ANN (target <= 1.15 on 2 CPU cores), for stateless layers folded over T ("fold") and per
timestep ("loop"), and snnTorch's and SpikingJelly's forward on the same network where installed
(`pip install --no-deps -r benchmarks/requirements-peers.txt`).

Run: ``.venv/bin/python benchmarks/bench_forward.py [--rounds 15] [--threads 2]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved_medians  # noqa: E402

from qnoise.layers import MultiStep  # noqa: E402
from qnoise.neurons import IF  # noqa: E402

T, B = 8, 64


def stateless_blocks() -> list[nn.Module]:
    """The network's stateless stages, in order; a neuron follows each but the last."""
    return [
        nn.Sequential(nn.Conv2d(2, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)),
        nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64)),
        nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4096, 256)),
        nn.Linear(256, 10),
    ]


def qnoise_snn(blocks: list[nn.Module], mode: str) -> nn.Module:
    layers: list[nn.Module] = []
    for i, block in enumerate(blocks):
        layers.append(MultiStep(block, mode=mode))
        if i < len(blocks) - 1:
            layers.append(IF())
    return nn.Sequential(*layers)


def ann(blocks: list[nn.Module]) -> nn.Module:
    layers: list[nn.Module] = []
    for i, block in enumerate(blocks):
        layers.append(block)
        if i < len(blocks) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def snntorch_snn(blocks: list[nn.Module]):
    import snntorch as snn

    neurons = [snn.Leaky(beta=1.0, threshold=1.0, reset_mechanism="subtract", init_hidden=True)
               for _ in range(len(blocks) - 1)]
    layers: list[nn.Module] = []
    for i, block in enumerate(blocks):
        layers.append(block)
        if i < len(neurons):
            layers.append(neurons[i])
    net = nn.Sequential(*layers)

    def forward(x: torch.Tensor) -> torch.Tensor:
        for m in neurons:
            m.reset_hidden()
        return torch.stack([net(xt) for xt in x])

    return forward


def spikingjelly_snn(blocks: list[nn.Module]):
    from spikingjelly.activation_based import functional, layer, neuron

    layers: list[nn.Module] = []
    for i, block in enumerate(blocks):
        layers.append(layer.SeqToANNContainer(block))
        if i < len(blocks) - 1:
            layers.append(neuron.IFNode(v_threshold=1.0, v_reset=None, step_mode="m"))
    net = nn.Sequential(*layers)

    def forward(x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(net)
        return net(x)

    return forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    blocks = stateless_blocks()
    for m in blocks:
        m.eval()
    x = (torch.rand(T, B, 2, 34, 34) < 0.15).float()  # binary event frames
    x_folded = x.flatten(0, 1)
    ann_net = ann(blocks)
    candidates = {
        "ann": lambda: ann_net(x_folded),
        "qnoise_fold": (lambda net: lambda: net(x))(qnoise_snn(blocks, "fold")),
        "qnoise_loop": (lambda net: lambda: net(x))(qnoise_snn(blocks, "loop")),
    }
    for name, build in (("snntorch", snntorch_snn), ("spikingjelly", spikingjelly_snn)):
        try:
            fn = build(blocks)
        except ImportError as err:
            print(f"{name}: not installed ({err.name}); pip install --no-deps -r benchmarks/requirements-peers.txt")
            continue
        candidates[name] = (lambda f: lambda: f(x))(fn)
    with torch.inference_mode():
        ref = candidates["qnoise_fold"]()
        assert torch.equal(ref, candidates["qnoise_loop"]()), "fold and loop must give identical outputs"
        med = interleaved_medians(candidates, rounds=args.rounds)
    print(f"reference network, T={T}, B={B}, {args.threads} threads, {args.rounds} interleaved rounds (median)")
    print(f"{'forward':<14} {'time / ANN':>10}")
    for name, seconds in med.items():
        print(f"{name:<14} {seconds / med['ann']:>10.3f}")
    best = min(med["qnoise_fold"], med["qnoise_loop"]) / med["ann"]
    print(f"qnoise SNN/ANN (best mode) = {best:.3f}  (target <= 1.15)")


if __name__ == "__main__":
    main()
