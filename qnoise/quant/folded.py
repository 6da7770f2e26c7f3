"""Quantized weights that keep their grid when batch norm is folded into them (conversion of a quantized ANN).

A quantized layer followed by batch norm computes ``BN(Q(W) x + b)``; folding multiplies output channel c by
``s_c = gamma_c / sqrt(var_c + eps)``. The folded weight ``s_c Q(W_c)`` is still on a grid, channel c's
being the original grid times ``s_c``: a per-channel scale. `FoldedWeight` stores the folded *float* weight
``s_c W_c`` and applies ``w -> s_c * Q(w / s_c)`` with the ANN's own quantizer Q, so the SNN's weights are the
ANN's quantized weights folded (exactly, up to one float rounding of ``w / s_c``), its weight bits are the
ANN's, and its weight SQNR compares them with the folded float weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from .. import parametrized


class FoldedWeight(nn.Module):
    """Parametrization ``w -> scale_c * quantizer(w / scale_c)`` (``scale [C_out]``, a buffer)."""

    def __init__(self, quantizer: nn.Module, channels: int) -> None:
        super().__init__()
        self.quantizer = quantizer
        self.register_buffer("scale", torch.ones(channels))

    @property
    def bits(self) -> int:
        return int(getattr(self.quantizer, "bits", 32))

    @property
    def rounding(self) -> str:
        return str(getattr(self.quantizer, "rounding", "nearest"))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        s = self.scale.to(w.dtype).view(-1, *[1] * (w.dim() - 1))
        return s * self.quantizer(w / s)

    def extra_repr(self) -> str:
        return f"channels={self.scale.numel()}"


def fold_quantizers(model: nn.Module) -> int:
    """Wrap every weight quantizer of ``model`` in a `FoldedWeight` with unit scales (the state dict of a
    converted model then loads the scales). Returns how many were wrapped."""
    count = 0
    for _, m in model.named_modules():
        if parametrize.is_parametrized(m, "weight") and not isinstance(m.parametrizations.weight[0], FoldedWeight):
            q = m.parametrizations.weight[0]
            parametrized.remove(m, "weight", leave_parametrized=False)
            parametrized.register(m, "weight", FoldedWeight(q, m.weight.shape[0]))
            count += 1
    return count


def base_quantizer(q: nn.Module) -> nn.Module:
    """The quantizer inside a `FoldedWeight` (or ``q`` itself)."""
    return q.quantizer if isinstance(q, FoldedWeight) else q
