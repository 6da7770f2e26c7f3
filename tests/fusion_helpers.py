"""Shared by the fused-step tests (test_neuron_pool.py, test_neuron_add.py): reference models whose fused layers
are exercised, their runs in one order, and random spikes."""

from __future__ import annotations

import torch
from torch import nn

from qnoise import IF, stepmode, stepping
from qnoise.models import build_model

NEURONS = {
    "IF zero": None,
    "IF half": {"v_init": "half"},
    "LIF": {"type": "lif", "beta": 0.8, "v_init": "half"},
    "per-channel reset-to-zero": {"per_channel": True, "reset": "zero"},
}


def build(arch: str, shape, neuron, seed: int, dtype=torch.float32, **options) -> nn.Module:
    """``build_model(arch, shape, 4, ...)`` in eval mode with a low threshold (every layer spikes), per-channel
    thresholds that differ and BatchNorm statistics that are not the identity."""
    torch.manual_seed(seed)
    net = build_model(arch, shape, 4, neuron={**(neuron or {}), "threshold": 0.2}, **options).to(dtype)
    for m in net.modules():
        if isinstance(m, IF) and m.threshold.dim():
            m.threshold.data.uniform_(0.1, 0.4)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def run(net: nn.Module, x: torch.Tensor, kind: str) -> torch.Tensor:
    """``net(x)`` without autograd in the order ``kind`` (``"step"`` or ``"layer"``)."""
    with torch.no_grad(), stepping.mode(kind):
        return net(x)


def spikes(shape, T: int = 5, B: int = 48, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    """Random binary frames ``[T, B, *shape]`` (30 % ones)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, *shape, generator=g) < 0.3).to(dtype)


def step_by_step(T: int, step) -> torch.Tensor:
    """``step(t)`` for t = 0 .. T-1 inside one step-major run, without autograd, stacked ``[T, ...]``."""
    run = stepmode.Step(T=T)
    out = []
    with torch.no_grad():
        for t in range(T):
            run.t = t
            with stepmode.running(run):
                out.append(step(t))
    return torch.stack(out)
