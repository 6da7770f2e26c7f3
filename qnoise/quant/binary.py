"""Binary ``{-a, +a}`` and ternary ``{-a, 0, +a}`` quantizers with a scale ``a``.

Binary (BinaryConnect / XNOR-Net): ``y = a * sign(x)`` with ``sign(0) = +1`` and, by default,
``a = mean|x|`` (the L2-optimal scale for a fixed sign pattern).

Ternary (TWN, Li et al. 2016): ``y = a * sign(x) * [|x| > delta]`` with ``delta = 0.7 * mean|x|`` and
``a = mean(|x| : |x| > delta)``, both by default.

Both use a straight-through gradient (identity).
"""

from __future__ import annotations

import torch

from .uniform import straight_through


def _scale_dims(x: torch.Tensor, axis: int | None) -> tuple[int, ...] | None:
    if axis is None:
        return None
    axis = axis % x.dim()
    return tuple(d for d in range(x.dim()) if d != axis)


def _mean(x: torch.Tensor, axis: int | None) -> torch.Tensor:
    dims = _scale_dims(x, axis)
    return x.mean() if dims is None else x.mean(dim=dims, keepdim=True)


def binarize(x: torch.Tensor, scale: torch.Tensor | float | None = None, axis: int | None = None) -> torch.Tensor:
    """``a * sign(x)`` with ``sign(0) = +1``; ``a = mean|x|`` (per tensor or along ``axis``) unless given."""
    with torch.no_grad():
        a = _mean(x.abs(), axis) if scale is None else torch.as_tensor(scale, dtype=x.dtype, device=x.device)
        y = torch.where(x >= 0, a, -a)
    return straight_through(y, x)


def ternarize(
    x: torch.Tensor,
    scale: torch.Tensor | float | None = None,
    threshold: torch.Tensor | float | None = None,
    axis: int | None = None,
) -> torch.Tensor:
    """``a * sign(x) * [|x| > delta]``; defaults ``delta = 0.7 mean|x|``, ``a`` = mean of the kept |x|."""
    with torch.no_grad():
        mag = x.abs()
        delta = 0.7 * _mean(mag, axis) if threshold is None else torch.as_tensor(threshold, dtype=x.dtype)
        keep = (mag > delta).to(x.dtype)
        if scale is None:
            dims = _scale_dims(x, axis)
            if dims is None:
                a = (mag * keep).sum() / keep.sum().clamp_min(1.0)
            else:
                a = (mag * keep).sum(dim=dims, keepdim=True) / keep.sum(dim=dims, keepdim=True).clamp_min(1.0)
        else:
            a = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
        y = a * torch.sign(x) * keep
    return straight_through(y, x)
