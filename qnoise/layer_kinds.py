"""Non-spiking layers that imported models need (NIR's LI, I, Delay, Scale, SumPool2d), over ``[T, B, ...]``.

Parameters are buffers of shape ``()`` (one per layer) or the neuron shape (``x.shape[2:]``, or a shape that
broadcasts to it); time constants in steps. State starts at 0 at every call.

    LeakyIntegrator (LI)   v = v + (r x - (v - v_leak)) / tau,  output v (a readout that does not spike)
    Integrator (I)         v = v + r x,                          output v
    Delay                  y[t] = x[t - d],  0 before the first input arrives (d whole steps)
    Scale                  y = s x
    SumPool2d              sum over each window: average pooling times the window's area
"""

from __future__ import annotations

import torch
from torch import nn

from .neuron_kinds import any_true, param_tensor, per_neuron


class LeakyIntegrator(nn.Module):
    """Non-spiking leaky integrator (NIR LI), output = membrane: ``v = v + (r x - (v - v_leak)) / tau``
    (tau in steps, > 0), v[0] = 0."""

    def __init__(self, tau=2.0, r=1.0, v_leak=0.0) -> None:
        super().__init__()
        t = param_tensor(tau, "tau")
        if any_true(t <= 0):
            raise ValueError(f"tau must be > 0 (steps), got {t.tolist()}")
        self.register_buffer("tau", t)
        self.register_buffer("r", param_tensor(r, "r"))
        self.register_buffer("v_leak", param_tensor(v_leak, "v_leak"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        tau, r, vl = (per_neuron(getattr(self, k), x, k, name) for k in ("tau", "r", "v_leak"))
        v = torch.zeros_like(x[0])
        out = []
        for xt in x.unbind(0):
            v = v + (r * xt - (v - vl)) / tau
            out.append(v)
        return torch.stack(out)


class Integrator(nn.Module):
    """Non-spiking integrator (NIR I), output = membrane: ``v = v + r x``, v[0] = 0."""

    def __init__(self, r=1.0) -> None:
        super().__init__()
        self.register_buffer("r", param_tensor(r, "r"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(per_neuron(self.r, x, "r", type(self).__name__) * x, 0)


class Delay(nn.Module):
    """Axonal delay: ``y[t] = x[t - d]`` (0 before the first input arrives), d whole steps per layer or per
    neuron (``steps`` of shape ``()`` or the neuron shape)."""

    def __init__(self, steps=1) -> None:
        super().__init__()
        d = torch.as_tensor(steps).detach().clone()
        if d.is_floating_point():
            if any_true(d != d.round()):
                raise ValueError(f"delay steps must be whole numbers, got {d.flatten()[:4].tolist()}")
        d = d.round().to(torch.int64) if d.is_floating_point() else d.to(torch.int64)
        if any_true(d < 0):
            raise ValueError(f"delay steps must be >= 0, got {d.flatten()[:4].tolist()}")
        self.register_buffer("steps", d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.steps
        T = x.shape[0]
        if d.dim() == 0:
            k = int(d)
            return torch.cat([torch.zeros_like(x[:k]), x[:T - k]]) if k < T else torch.zeros_like(x)
        d = per_neuron(d, x, "steps", type(self).__name__).to(torch.int64)
        t = torch.arange(T, device=x.device).view(T, *[1] * (x.dim() - 1))
        src = t - d  # [T, 1, ...] broadcast over the neurons
        idx = src.clamp_min(0).expand_as(x)
        return torch.where(src >= 0, torch.gather(x, 0, idx), torch.zeros_like(x))


class Scale(nn.Module):
    """Elementwise scaling ``y = s * x`` (NIR Scale), s of shape ``()`` or the neuron shape."""

    def __init__(self, scale=1.0) -> None:
        super().__init__()
        self.register_buffer("scale", param_tensor(scale, "scale"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return per_neuron(self.scale, x, "scale", type(self).__name__) * x


class SumPool2d(nn.Module):
    """Sum pooling over ``[N, C, H, W]`` (NIR SumPool2d): average pooling times the window area."""

    def __init__(self, kernel_size, stride=None, padding=0) -> None:
        super().__init__()
        self.kernel_size = tuple(_pair(kernel_size))
        self.stride = tuple(_pair(stride if stride is not None else kernel_size))
        self.padding = tuple(_pair(padding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(x, self.kernel_size, self.stride, self.padding, count_include_pad=True,
                                        divisor_override=1)


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ValueError(f"expected 2 values, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)
