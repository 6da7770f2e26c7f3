"""Multi-step wrappers for stateless layers (conv, linear, BN, pooling) over ``[T, B, ...]`` tensors."""

from __future__ import annotations

import weakref

import torch
from torch import nn

from . import stepmode

# MultiStep -> {(input shape, dtype, device, threads): whether folding gave the per-step values bit for bit}
_FOLDS_EXACTLY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


ALIGN = 64  # bytes: where PyTorch's CPU allocator starts every tensor


def aligned(x: torch.Tensor) -> torch.Tensor:
    """``x``, copied when it does not start on an ``ALIGN``-byte boundary: a step ``x[t]`` of a ``[T, B, ...]``
    tensor usually does not, a fresh step tensor does, and a linear layer on a few rows rounds differently by the
    input's alignment (its vectorised kernel's tail), so every order of a run must give the body aligned steps
    to give the same values bit for bit."""
    return x if x.data_ptr() % ALIGN == 0 else x.clone()


class MultiStep(nn.Module):
    """Apply a stateless module to every timestep of ``[T, B, ...]``.

    ``mode="loop"`` (default) runs it per timestep on ``[B, ...]``; ``mode="fold"`` runs it once on
    ``[T*B, ...]``. Both give the same values in eval mode up to the backend's rounding (BN in training mode
    normalises over B samples per step with "loop", over all T*B with "fold"). At inference the order of work
    is `qnoise.stepping`'s: in a step-major run the body gets one step ``[B, ...]``; in a folded run a "loop"
    module folds where that gives its per-step values bit for bit (checked once per input shape).
    """

    def __init__(self, *modules: nn.Module, mode: str = "loop") -> None:
        super().__init__()
        if mode not in ("fold", "loop"):
            raise ValueError(f"mode={mode!r}: expected 'fold' or 'loop'")
        self.body = modules[0] if len(modules) == 1 else nn.Sequential(*modules)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        run = stepmode.current()
        if run is not None and not run.fold:  # a step-major run (qnoise.stepping): x is one step [B, ...]
            return self.body(aligned(x))
        if run is not None:  # a folded run: T into the batch where that gives the per-step values
            return self._fold_if_exact(x)
        if x.dim() < 3:
            raise ValueError(f"MultiStep expects [T, B, ...], got shape {tuple(x.shape)}")
        if self.mode == "loop":
            if x.shape[0] == 1:  # one step (an ANN twin): no copy into a stack
                return self.body(aligned(x[0])).unsqueeze(0)
            return torch.stack([self.body(aligned(xt)) for xt in x])
        return self._folded(x)

    def _folded(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(0, 1)).unflatten(0, tuple(x.shape[:2]))

    def _fold_if_exact(self, x: torch.Tensor) -> torch.Tensor:
        """The body on ``x [T, B, ...]`` as ``mode`` says (inference, `qnoise.stepping`'s folded order), folded
        once on ``[T*B, ...]`` if that was found to give the per-step values bit for bit for this input shape:
        a backend may round a sample's output differently in a larger batch (a GEMM with few rows takes another
        path). The first call for a shape decides on random values of that shape (the caller's may agree by
        chance, e.g. all-zero spikes from a silent layer) and keeps the per-step values."""
        if self.mode == "fold":
            return self._folded(x)
        key = (tuple(x.shape), x.dtype, x.device, torch.get_num_threads())
        known = _FOLDS_EXACTLY.setdefault(self, {})
        exact = known.get(key)
        if exact:
            return self._folded(x)
        loop = torch.stack([self.body(aligned(xt)) for xt in x])
        if exact is None:
            gen = torch.Generator(device=x.device).manual_seed(0)  # not the global stream: no side effect
            probe = torch.rand(x.shape, generator=gen, dtype=x.dtype, device=x.device) if x.is_floating_point() else x
            known[key] = torch.equal(self._folded(probe), torch.stack([self.body(aligned(pt)) for pt in probe]))
        return loop
