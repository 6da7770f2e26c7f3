"""Means over time (qnoise.time_mean): a repeated frame's mean is the frame, bit for bit, at any T (a float32
mean of three copies already is not); other frames' means are float64's, rounded once; the probe's twin, the
static input mode and a sweep's shared reference therefore see the same input at every T."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from qnoise.time_mean import frame_mean, running_mean


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 200), seed=st.integers(0, 2**16), scale=st.sampled_from([1e-3, 1.0, 7.3, 1e4]))
def test_a_repeated_frame_is_its_own_mean_at_every_t(T, seed, scale):
    g = torch.Generator().manual_seed(seed)
    frame = torch.randn(3, 5, 7, generator=g) * scale
    repeated = frame.unsqueeze(0).repeat(T, 1, 1, 1)  # materialised copies: the arithmetic path
    assert torch.equal(frame_mean(repeated)[0], frame)
    assert torch.equal(frame_mean(frame.unsqueeze(0).expand(T, -1, -1, -1))[0], frame)  # a view: no arithmetic
    means = running_mean(repeated)
    assert means.dtype == frame.dtype and all(torch.equal(means[t], frame) for t in range(T))


def test_float32_means_are_not_exact_which_is_why():
    frame = torch.rand(147_968, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(frame.unsqueeze(0).repeat(3, 1).mean(0), frame)  # what x.mean(0) gave the twin


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_other_frames_get_the_correctly_rounded_mean(T, seed):
    x = torch.randn(T, 64, generator=torch.Generator().manual_seed(seed))
    exact = x.double().numpy().mean(0)  # float64: each value's error is far below float32's half-ulp
    np.testing.assert_array_equal(frame_mean(x)[0].numpy(), exact.astype(np.float32))
    cumulative = np.cumsum(x.double().numpy(), 0) / np.arange(1, T + 1)[:, None]
    np.testing.assert_array_equal(running_mean(x).numpy(), cumulative.astype(np.float32))


def test_integer_frames_average_to_floats():
    x = torch.tensor([[1, 2], [2, 2]])
    assert frame_mean(x).dtype == torch.get_default_dtype() and frame_mean(x).tolist() == [[1.5, 2.0]]


def test_a_static_sweep_cell_is_the_cell_analysed_alone():
    """A sweep shares the twin's activations across T for static frames (`twin_key`): the T = 3 cell used the
    twin of the T = 1 cell (input: the frame) while analyse at T = 3 alone fed the twin the float32 mean of
    three copies (input: the frame, off by an ulp in a sixth of its values). Both now see the frame."""
    import qnoise
    from qnoise.models import build_model

    torch.manual_seed(0)
    model = build_model("cnn", (1, 12, 12), 3, channels=[4, 6], hidden=16).eval()
    X = torch.rand(16, 1, 1, 12, 12) * 3  # one frame per sample: static, repeated to T
    y = torch.arange(16) % 3
    table = qnoise.sweep(model, (X, y), timesteps=[1, 3, 5], weight_bits=4, workers=1, progress=False)
    for T in (3, 5):
        alone = qnoise.analyze(model, (X, y), timesteps=T, weight_bits=4, progress=False)
        cell = table[table["timesteps"] == T].reset_index(drop=True)
        assert cell["value"].fillna(-1).equals(alone["value"].fillna(-1)), T
