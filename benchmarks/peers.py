"""The peers' networks the benchmarks compare qnoise with, built around the same stateless stages.

``blocks`` are the stages between two neuron layers (a neuron follows each but the last), with qnoise's weights.
Each builder returns ``(net, forward)``: ``forward(x [T, B, ...]) -> [T, B, classes]`` resets the neurons first.
IF neurons as qnoise's reference network has them: threshold 1, reset by subtraction, no leak.
"""

from __future__ import annotations

import torch
from torch import nn


def snntorch_sequential(blocks: list[nn.Module], spike_grad=None):
    """snnTorch's per-step loop: ``snn.Leaky(beta=1)`` after each block, ``init_hidden`` state, one call per step;
    ``spike_grad`` its surrogate (snnTorch's default when None)."""
    import snntorch as snn

    extra = {} if spike_grad is None else {"spike_grad": spike_grad}
    neurons = [snn.Leaky(beta=1.0, threshold=1.0, reset_mechanism="subtract", init_hidden=True, **extra)
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

    return net, forward


def spikingjelly_sequential(blocks: list[nn.Module], surrogate_function=None):
    """SpikingJelly's multi-step torch backend: each block in a ``SeqToANNContainer`` (T folded into the batch),
    ``neuron.IFNode(v_reset=None, step_mode="m")`` after it; ``surrogate_function`` its surrogate (SpikingJelly's
    default when None)."""
    from spikingjelly.activation_based import functional, layer, neuron

    extra = {} if surrogate_function is None else {"surrogate_function": surrogate_function}
    layers: list[nn.Module] = []
    for i, block in enumerate(blocks):
        layers.append(layer.SeqToANNContainer(block))
        if i < len(blocks) - 1:
            layers.append(neuron.IFNode(v_threshold=1.0, v_reset=None, step_mode="m", **extra))
    net = nn.Sequential(*layers)

    def forward(x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(net)
        return net(x)

    return net, forward
