"""Average pooling with PyTorch's numbers at a fraction of its CPU time.

For non-overlapping square windows (stride = kernel k, no padding, floor mode) PyTorch's CPU kernel for
``[N, C, H, W]`` walks each window element by element; the same sums as whole-tensor additions of k^2 strided
views run vectorized, about 3.5x faster on 2 cores for the reference CNN's first pooling (spikes of 64 x 32 x
34 x 34), where pooling otherwise costs as much as the convolution before it::

    out[..., i, j] = (x[..., ki, kj] + x[..., ki, kj + 1] + ... + x[..., ki + k - 1, kj + k - 1]) / k^2

summed in PyTorch's order (window rows, then columns within a row) and divided once, so every value is
``torch.nn.functional.avg_pool2d``'s bit for bit, float32 and float64 (tests/test_pooling.py); gradients are
the same (each input of a window receives the output's gradient / k^2). At inference (no gradient wanted) a
batch of at least ``KERNEL_FROM`` values pools in a numba kernel instead (`pool_rows`: the same sums in the same
order, a job per sample and channel, the 2x2 window written out so that it vectorizes): one read of the input
and one write of the output, 1.7x (first) and 3x (second pooling of the reference CNN) faster than the strided
additions on 2 cores. Other configurations, and inputs that are not on the CPU, run ``nn.AvgPool2d`` itself.
"""

from __future__ import annotations

import torch
from numba import njit, prange
from torch import nn

from .neuron_step import kernel_threads

KERNEL_FROM = 1 << 15  # values of a batch from which the numba kernel pools (below: the strided additions)


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


@njit(inline="always")
def pool_rows(rows, k, kk, out):
    """``out [Wo]`` = the mean of each ``k x k`` window of ``rows [k, W]`` (`window_mean`'s sum in its order,
    divided once by ``kk = k^2`` in the data's precision)."""
    if k == 2:  # the usual window written out: the loop vectorizes
        r0, r1 = rows[0], rows[1]
        for j in range(out.shape[0]):
            out[j] = (((r0[2 * j] + r0[2 * j + 1]) + r1[2 * j]) + r1[2 * j + 1]) / kk
        return
    for j in range(out.shape[0]):
        total = rows[0, j * k]
        for a in range(k):
            for d in range(k):
                if a or d:
                    total = total + rows[a, j * k + d]
        out[j] = total / kk


@njit(parallel=True, cache=True)
def _pool(x, k, kk, out):
    """``x [B, C, H, W]`` pooled into ``out [B, C, H//k, W//k]``, a job per (sample, channel)."""
    B, C = x.shape[:2]
    for job in prange(B * C):
        b = job // C
        c = job % C
        xs, o = x[b, c], out[b, c]
        for i in range(o.shape[0]):
            pool_rows(xs[i * k:(i + 1) * k], k, kk, o[i])


def divisor(x: torch.Tensor, k: int):
    """``k^2`` as a numpy scalar in ``x``'s precision (the kernels' ``kk``)."""
    return x.new_tensor(k * k).numpy()[()]


def kernel_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """`window_mean` of ``x [B, C, H, W]`` (CPU, float32 or float64) by the numba kernel, bit for bit."""
    x = x.contiguous()
    out = x.new_empty(*x.shape[:2], x.shape[2] // k, x.shape[3] // k)
    with kernel_threads():
        _pool(x.numpy(), k, divisor(x, k), out.numpy())
    return out


class AvgPool2d(nn.AvgPool2d):
    """``nn.AvgPool2d`` (same arguments, same outputs and gradients) that pools non-overlapping square windows on
    the CPU by `window_mean`, or at inference by its numba kernel (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = window_size(self)
        if (k is not None and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
                and x.dim() in (3, 4) and x.shape[-2] >= k and x.shape[-1] >= k):
            if x.dim() == 4 and x.numel() >= KERNEL_FROM and not (torch.is_grad_enabled() and x.requires_grad):
                return kernel_mean(x, k)
            return window_mean(x, k)
        return super().forward(x)


def warm_up() -> None:
    """Compile the kernel for float32 and float64 data now (numba caches it on disk)."""
    for dtype in (torch.float32, torch.float64):
        kernel_mean(torch.zeros(1, 1, 2, 2, dtype=dtype), 2)
