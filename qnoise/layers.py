"""Multi-step wrappers for stateless layers (conv, linear, BN, pooling) over ``[T, B, ...]`` tensors."""

from __future__ import annotations

import torch
from torch import nn


class MultiStep(nn.Module):
    """Apply a stateless module to every timestep of ``[T, B, ...]``.

    ``mode="fold"`` runs it once on ``[T*B, ...]`` (one big batch); ``mode="loop"`` runs it per timestep.
    Both give the same values (BN in training mode sees all T*B samples with "fold", B per step with
    "loop"); `benchmarks/bench_forward.py` measures which is faster on a machine.
    """

    def __init__(self, *modules: nn.Module, mode: str = "fold") -> None:
        super().__init__()
        if mode not in ("fold", "loop"):
            raise ValueError(f"mode={mode!r}: expected 'fold' or 'loop'")
        self.body = modules[0] if len(modules) == 1 else nn.Sequential(*modules)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3:
            raise ValueError(f"MultiStep expects [T, B, ...], got shape {tuple(x.shape)}")
        if self.mode == "loop":
            return torch.stack([self.body(xt) for xt in x])
        t, b = x.shape[:2]
        y = self.body(x.flatten(0, 1))
        return y.unflatten(0, (t, b))
