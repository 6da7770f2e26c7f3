"""qnoise.pooling.AvgPool2d gives torch's average pooling bit for bit, values and gradients."""

from __future__ import annotations

from unittest import mock

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from qnoise import pooling
from qnoise.models import build_model
from qnoise.pooling import AvgPool2d, kernel_mean, window_mean


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 4), n=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(4, 19), w=st.integers(4, 19),
       double=st.booleans(), batched=st.booleans(), scale=st.sampled_from([1e-3, 1.0, 1e3]),
       seed=st.integers(0, 2**31 - 1))
def test_window_mean_is_avg_pool2d_bit_for_bit(k, n, c, h, w, double, batched, scale, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, c, h, w) if batched else (c, h, w), generator=g,
                    dtype=torch.float64 if double else torch.float32) * scale
    assert torch.equal(window_mean(x, k), F.avg_pool2d(x, k))
    assert torch.equal(AvgPool2d(k)(x), nn.AvgPool2d(k)(x))


def test_gradients_are_torch_s():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 10)
    grads = []
    for pool in (AvgPool2d(3), nn.AvgPool2d(3)):
        xi = x.clone().requires_grad_(True)
        out = pool(xi)
        out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(1)))
        grads.append(xi.grad)
    assert torch.equal(*grads)


def test_other_configurations_run_torch_s_pooling():
    """Overlapping windows, padding, ceil mode and a divisor override are not non-overlapping windows: torch's own
    kernel runs (the values are torch's whichever path runs)."""
    x = torch.randn(2, 3, 11, 11)
    for args in ({"kernel_size": 3, "stride": 2}, {"kernel_size": 2, "padding": 1}, {"kernel_size": 2, "ceil_mode": True},
                 {"kernel_size": 2, "divisor_override": 3}, {"kernel_size": (2, 3)}):
        assert torch.equal(AvgPool2d(**args)(x), nn.AvgPool2d(**args)(x)), args


def test_the_cnn_pools_with_it_and_its_forward_is_unchanged():
    torch.manual_seed(0)
    model = build_model("cnn", (2, 12, 12), 10).eval()
    pools = [m for m in model.modules() if isinstance(m, nn.AvgPool2d)]
    assert pools and all(type(m) is AvgPool2d for m in pools)
    x = (torch.rand(4, 3, 2, 12, 12) < 0.3).float()
    with torch.no_grad():
        fast = model(x)
        for m in pools:
            m.forward = nn.AvgPool2d.forward.__get__(m)  # torch's kernel in place of window_mean
        assert torch.equal(fast, model(x))


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 4), n=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(4, 19), w=st.integers(4, 19),
       double=st.booleans(), scale=st.sampled_from([1e-3, 1.0, 1e3]), seed=st.integers(0, 2**31 - 1))
def test_the_inference_kernel_is_avg_pool2d_bit_for_bit(k, n, c, h, w, double, scale, seed):
    """Non-integer k^2 (9) as well as powers of two: the kernel divides in the data's precision."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, c, h, w), generator=g, dtype=torch.float64 if double else torch.float32) * scale
    assert torch.equal(kernel_mean(x, k), F.avg_pool2d(x, k))
    assert torch.equal(kernel_mean(x.transpose(2, 3), k), F.avg_pool2d(x.transpose(2, 3), k))  # not contiguous


def test_big_batches_pool_in_the_kernel_at_inference_only():
    x = torch.randn(8, 16, 34, 34)
    with mock.patch.object(pooling, "kernel_mean", wraps=pooling.kernel_mean) as kernel:
        with torch.no_grad():
            assert torch.equal(AvgPool2d(2)(x), F.avg_pool2d(x, 2))
        assert kernel.call_count == 1
        xi = x.clone().requires_grad_(True)
        AvgPool2d(2)(xi).sum().backward()  # training: the strided additions, which autograd differentiates
        assert kernel.call_count == 1
        assert torch.equal(xi.grad, torch.full_like(x, 0.25))
