"""Learnable-clip activation quantizer (PACT / Fast-SNN)::

    y = alpha * round(clamp(x / alpha, 0, 1) * n) / n,     n = 2^b - 1

Rounding is half up (``floor(u + 1/2)``), the rule of an IF neuron with ``v[0] = theta/2``, so that an
activation quantized this way converts to an IF neuron with ``theta = alpha`` and ``T = n`` timesteps.
Gradients: to ``x``, 1 inside ``[0, alpha]`` and 0 outside; to ``alpha``, 1 above the clip and
``round(u n)/n - u`` inside it (LSQ-style, ``u = x/alpha``). ``bits=None`` gives the float clip
``clamp(x, 0, alpha)``.
"""

from __future__ import annotations

import torch
from torch import nn

from .uniform import straight_through

CLIP_FLOOR = 1e-4  # the smallest clip level alpha a forward uses (a trained alpha is kept at or above it)


def learnable_clip(x: torch.Tensor, alpha: torch.Tensor, bits: int | None) -> torch.Tensor:
    """Functional form of `LearnableClip` (see the module docstring)."""
    u = torch.clamp(x / alpha, 0.0, 1.0)
    if bits is None:
        return alpha * u
    n = 2**bits - 1
    q = straight_through(torch.floor(u * n + 0.5) / n, u)
    return alpha * q


class LearnableClip(nn.Module):
    """ReLU clipped at a learnable ``alpha`` and quantized to ``bits`` bits (``2^b`` levels in [0, alpha])."""

    def __init__(self, bits: int | None = 4, alpha: float = 1.0, learn_alpha: bool = True) -> None:
        super().__init__()
        if bits is not None and not (isinstance(bits, int) and 1 <= bits <= 16):
            raise ValueError(f"LearnableClip bits must be an int in 1..16 or None, got {bits!r}")
        if not alpha > 0:
            raise ValueError(f"LearnableClip alpha must be > 0, got {alpha}")
        self.bits = bits
        a = torch.tensor(float(alpha))
        if learn_alpha:
            self.alpha = nn.Parameter(a)
        else:
            self.register_buffer("alpha", a)

    @property
    def levels(self) -> int | None:
        """Number of nonzero levels ``n = 2^b - 1``: the timesteps of the converted SNN."""
        return None if self.bits is None else 2**self.bits - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return learnable_clip(x, self.alpha.clamp_min(CLIP_FLOOR), self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, alpha={float(self.alpha):.4g}"
