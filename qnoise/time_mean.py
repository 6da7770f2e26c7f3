"""Means over the time axis (dimension 0 of ``[T, ...]``) that are exact for repeated frames.

A float32 running sum of T copies of a value v rounds as soon as k * v needs more than 24 significant bits
(k = 3 already), so ``x.mean(0)`` of one image repeated over T steps is not the image: measured on 147,968 random
values, 24,452 differ in the last bit at T = 3, 60,636 at T = 8 and 99,106 at T = 16 and 32. The ANN twin of an
SNN fed a static image would then see another input at each T, and the isolated count ``floor(t z_hat / theta +
c)`` could flip. These means accumulate in float64, where every k * v is exact (T < 2^29), and round once to the
data's type: the mean of a repeated frame is the frame itself, bit for bit, and the mean of other frames is the
correctly rounded mean up to float64's own rounding.
"""

from __future__ import annotations

import torch


def _result_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


def frame_mean(x: torch.Tensor) -> torch.Tensor:
    """``(1/T) sum_t x[t]`` of ``x [T, ...]`` as ``[1, ...]``; a repeated frame (an ``expand``-ed view, stride 0
    along T) is returned as that frame without any arithmetic (contiguous, as a mean would be)."""
    if x.shape[0] == 1 or x.stride(0) == 0:
        return x[:1].to(_result_dtype(x)).contiguous()
    return x.mean(0, keepdim=True, dtype=torch.float64).to(_result_dtype(x))


def running_mean(x: torch.Tensor) -> torch.Tensor:
    """``(1/t) sum_{tau <= t} x[tau]`` of ``x [T, ...]`` for t = 1..T (``[T, ...]``)."""
    T = x.shape[0]
    steps = torch.arange(1, T + 1, dtype=torch.float64, device=x.device).view(T, *[1] * (x.dim() - 1))
    return (x.cumsum(0, dtype=torch.float64) / steps).to(_result_dtype(x))
