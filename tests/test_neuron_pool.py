"""A neuron's inference step fused with the average pooling after it (qnoise.neuron_pool): the values of the two
calls bit for bit (whole reference CNNs against their layer-major run, and a property test against the neuron's
rule and torch's avg_pool2d), and fusion only where it applies."""

from __future__ import annotations

from unittest import mock

import hypothesis.strategies as st
import pytest
import torch
import torch.nn.functional as F
from fusion_helpers import NEURONS, build, run, spikes, step_by_step
from hypothesis import given, settings
from torch import nn

from qnoise import IF, LIF, neuron_pool, stepping
from qnoise.layers import MultiStep
from qnoise.neurons import neuron_multistep
from qnoise.pooling import AvgPool2d


def _cnn(neuron, shape=(2, 35, 33), pool=2, dtype=torch.float32) -> nn.Module:
    """A CNN whose layers are big enough to fuse, with odd sizes (rows and columns left out of every window)."""
    return build("cnn", shape, neuron, 3, dtype, channels=[8, 8], hidden=12, pool=pool)


def _spikes(shape, B=48, dtype=torch.float32):
    return spikes(shape, B=B, dtype=dtype)


@pytest.mark.parametrize("kind", NEURONS)
def test_a_fused_cnn_gives_the_layer_major_outputs_bit_for_bit(kind):
    model = _cnn(NEURONS[kind])
    x = _spikes((2, 35, 33))
    with mock.patch.object(neuron_pool, "_step_pool", wraps=neuron_pool._step_pool) as kernel:
        stepped = run(model, x, "step")
    assert kernel.call_count == 2 * x.shape[0]  # both conv blocks, every step
    assert torch.equal(stepped, run(model, x, "layer"))


@pytest.mark.parametrize("pool, dtype", [(3, torch.float32), (2, torch.float64)])
def test_other_windows_and_float64_fuse_bit_for_bit(pool, dtype):
    model = _cnn(NEURONS["IF half"], shape=(2, 31, 29), pool=pool, dtype=dtype)
    x = _spikes((2, 31, 29), dtype=dtype)
    with mock.patch.object(neuron_pool, "_step_pool", wraps=neuron_pool._step_pool) as kernel:
        stepped = run(model, x, "step")
    assert kernel.call_count >= x.shape[0]
    assert torch.equal(stepped, run(model, x, "layer"))


def test_no_fusion_where_a_hook_small_step_or_signed_neuron_needs_the_neuron_output():
    model = _cnn(None)
    x = _spikes((2, 35, 33))
    seen = []
    hook = stepping.step_aware(lambda m, i, o: seen.append(tuple(o.shape)))
    handle = model.act1.register_forward_hook(hook)
    with mock.patch.object(neuron_pool, "_step_pool", wraps=neuron_pool._step_pool) as kernel:
        stepped = run(model, x, "step")
    handle.remove()
    assert kernel.call_count == x.shape[0]  # act2 only: act1's hook sees its own output at every step
    assert seen == [(48, 8, 35, 33)] * x.shape[0]
    assert torch.equal(stepped, run(model, x, "layer"))
    signed = _cnn({"signed": True, "v_init": "half"})
    small = _spikes((2, 35, 33), B=2)  # 2 x 8 x 35 x 33 values per step: below SERIAL_BELOW
    for net, data in ((signed, x), (model, small)):
        with mock.patch.object(neuron_pool, "_step_pool", wraps=neuron_pool._step_pool) as kernel:
            stepped = run(net, data, "step")
        assert kernel.call_count == 0
        assert torch.equal(stepped, run(net, data, "layer"))


def test_what_fuses():
    pool = MultiStep(nn.Sequential(AvgPool2d(2)))
    assert neuron_pool.fusable(IF(), pool) == 2
    assert neuron_pool.fusable(LIF(beta=0.5), pool) == 2
    assert neuron_pool.fusable(IF(signed=True), pool) is None
    assert neuron_pool.fusable(IF(state_bits=8), pool) is None
    assert neuron_pool.fusable(IF(), MultiStep(nn.Sequential(nn.AvgPool2d(2)))) is None  # torch's own order
    assert neuron_pool.fusable(IF(), MultiStep(nn.Sequential(AvgPool2d(3, stride=2)))) is None  # overlapping
    assert neuron_pool.fusable(IF(), MultiStep(nn.Sequential(AvgPool2d(2), nn.Identity()))) is None
    assert neuron_pool.fusable(IF(), MultiStep(nn.Sequential(AvgPool2d(2)), mode="fold")) is None

    class Own(IF):
        def forward(self, x):
            return super().forward(x)

    assert neuron_pool.fusable(Own(), pool) is None


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 4), h=st.integers(4, 11), w=st.integers(4, 11), B=st.integers(1, 3), C=st.integers(1, 3),
       T=st.integers(1, 5), seed=st.integers(0, 2**16), half=st.booleans(), zero=st.booleans(),
       beta=st.sampled_from([None, 0.75]), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_step_pooled_is_the_neuron_rule_then_avg_pool2d(k, h, w, B, C, T, seed, half, zero, beta, dtype):
    """Inputs on a quarter grid (membranes land exactly on thresholds), per-channel thresholds; against the
    neuron's multi-step rule and torch's avg_pool2d per step."""
    if min(h, w) < k:
        return
    g = torch.Generator().manual_seed(seed)
    x = (torch.randint(-2, 5, (T, B, C, h, w), generator=g) / 4).to(dtype)
    theta = (torch.randint(1, 5, (C,), generator=g) / 4).to(dtype)
    kw = {"threshold": 1.0, "v_init": "half" if half else "zero", "reset": "zero" if zero else "subtract",
          "per_channel": True, "channels": C}
    neuron = (LIF(beta=beta, **kw) if beta is not None else IF(**kw)).to(dtype).eval()
    neuron.threshold.data.copy_(theta)
    pool = MultiStep(nn.Sequential(AvgPool2d(k)))
    expected = F.avg_pool2d(neuron_multistep(x, neuron.broadcast_threshold(x), neuron.beta, neuron.v_init,
                                             neuron.reset, False, "atan").flatten(0, 1), k).unflatten(0, (T, B))
    with mock.patch.object(neuron_pool, "SERIAL_BELOW", 0), \
            mock.patch.object(neuron_pool, "_step_pool", wraps=neuron_pool._step_pool) as kernel:
        out = step_by_step(T, lambda t: neuron_pool.step_pooled(neuron, pool, k, x[t]))
    assert kernel.call_count == T
    assert torch.equal(out, expected)
