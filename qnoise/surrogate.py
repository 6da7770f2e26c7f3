"""Spike functions: Heaviside step forward, a smooth surrogate derivative backward.

``spike(x) = H(x) = 1 if x >= 0 else 0`` where ``x = v - theta``. Backward uses ``dH/dx ~ g(x)``:

    atan       g(x) = (a/2) / (1 + (pi/2 * a * x)^2)          a = 2    (SpikingJelly's ATan)
    sigmoid    g(x) = a * sigmoid(a x) * (1 - sigmoid(a x))   a = 4
    rectangle  g(x) = 1/a * [|x| < a/2]                       a = 1    (straight-through window)
"""

from __future__ import annotations

import math

import torch

SURROGATES: tuple[str, ...] = ("atan", "sigmoid", "rectangle")
DEFAULT_ALPHA = {"atan": 2.0, "sigmoid": 4.0, "rectangle": 1.0}


def surrogate_grad(x: torch.Tensor, kind: str, alpha: float) -> torch.Tensor:
    """The surrogate derivative ``g(x)`` of the Heaviside step."""
    if kind == "atan":
        return (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)
    if kind == "sigmoid":
        s = torch.sigmoid(alpha * x)
        return alpha * s * (1 - s)
    if kind == "rectangle":
        return (x.abs() < alpha / 2).to(x.dtype) / alpha
    raise ValueError(f"surrogate={kind!r} is not one of {SURROGATES}")


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kind: str, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.kind, ctx.alpha = kind, alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_out * surrogate_grad(x, ctx.kind, ctx.alpha), None, None


def spike(x: torch.Tensor, kind: str = "atan", alpha: float | None = None) -> torch.Tensor:
    """Heaviside ``H(x)`` (1 where ``x >= 0``) with the surrogate gradient ``kind``."""
    if kind not in SURROGATES:
        raise ValueError(f"surrogate={kind!r} is not one of {SURROGATES}")
    if not (x.requires_grad and torch.is_grad_enabled()):
        return (x >= 0).to(x.dtype)
    return _Spike.apply(x, kind, DEFAULT_ALPHA[kind] if alpha is None else float(alpha))
