"""The reference ANN's activation function ``a_l`` of each layer, as a small value both implementations share.

Every ANN activation the probe accepts (DESIGN.md: the ANN twin's clamp, or a given ANN's own activation)
is a clamp, optionally quantized to ``n`` uniform levels with rounding half up::

    clamp       a(z) = clamp(z, lo, hi)                                  ReLU (hi = inf), ReLU6, Hardtanh,
                                                                         ClampActivation (lo = 0, hi = theta)
    levels n    a(z) = hi * floor(clamp(z / hi, 0, 1) * n + 1/2) / n     LearnableClip (hi = alpha, n = 2^b - 1)

`ActivationRule` holds ``lo``, ``hi`` (one value per element of a sample) and ``n`` (0: not quantized).
The torch functions call the activation module itself (`apply`); the CPU kernel evaluates the rule; the
tests hold the two to each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..neurons import ClampActivation
from ..quant import LearnableClip

ANN_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, LearnableClip, ClampActivation)


@dataclass(frozen=True)
class ActivationRule:
    """``a(z)`` of one layer (module docstring). ``hi`` is ``[N]``, one value per element of a sample."""

    lo: float
    hi: torch.Tensor
    levels: int = 0

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """The rule on ``z [..., N]`` (the kernel's arithmetic, in torch)."""
        hi = self.hi.to(z)
        if self.levels:
            n = float(self.levels)
            return hi * (torch.floor(torch.clamp(z / hi, 0.0, 1.0) * n + 0.5) / n)
        return torch.minimum(z.clamp_min(self.lo), hi)


def _per_element(value: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """``value`` (a scalar or a per-channel ``[C]`` tensor of a ``[T, B, C, ...]`` layer) as ``[N]``."""
    v = torch.as_tensor(value, dtype=like.dtype, device=like.device).detach()
    if v.dim() == 1 and like.dim() > 3 and v.numel() == like.shape[2]:
        v = v.view(-1, *[1] * (like.dim() - 3))
    return v.expand(like.shape[2:]).reshape(-1).contiguous()


def activation_rule(module: nn.Module, like: torch.Tensor) -> ActivationRule:
    """The `ActivationRule` of an ANN activation module, for a layer whose input looks like ``like``
    (``[T, B, ...]``); raises for a module that is not one of `ANN_ACTIVATIONS`."""
    if isinstance(module, ClampActivation):
        neuron = module.neuron
        return ActivationRule(0.0, _per_element(neuron.threshold, like))
    if isinstance(module, LearnableClip):
        alpha = module.alpha.detach().clamp_min(1e-4)
        return ActivationRule(0.0, _per_element(alpha, like), module.levels or 0)
    if isinstance(module, nn.ReLU6):
        return ActivationRule(0.0, _per_element(6.0, like))
    if isinstance(module, nn.ReLU):
        return ActivationRule(0.0, _per_element(math.inf, like))
    if isinstance(module, nn.Hardtanh):
        return ActivationRule(float(module.min_val), _per_element(float(module.max_val), like))
    raise TypeError(f"the probe cannot use {type(module).__name__} as an ANN activation; expected one of "
                    f"{', '.join(t.__name__ for t in ANN_ACTIVATIONS)}")


@torch.no_grad()
def apply(module: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The activation module's own forward on ``z``, bypassing hooks (the torch functions' ``a(z)``)."""
    return module.forward(z)
