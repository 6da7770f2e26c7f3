"""A neuron's inference step fused with the residual addition before it (qnoise.neuron_add): the values of
``neuron(a + b)`` bit for bit (whole ResNets against their layer-major run, and a property test against the
neuron's rule), and fusion only where it applies."""

from __future__ import annotations

from unittest import mock

import hypothesis.strategies as st
import pytest
import torch
from fusion_helpers import NEURONS, build, run, spikes, step_by_step
from hypothesis import given, settings
from torch import nn

from qnoise import IF, LIF, neuron_add, stepping
from qnoise.neurons import neuron_multistep

SHAPE = (2, 25, 23)  # both blocks big enough to fuse at B = 48


def _resnet(neuron, dtype=torch.float32) -> nn.Module:
    return build("resnet", SHAPE, neuron, 4, dtype, channels=[8, 8], blocks=1)


def _spikes(B=48, dtype=torch.float32) -> torch.Tensor:
    return spikes(SHAPE, B=B, dtype=dtype)


@pytest.mark.parametrize("kind", NEURONS)
def test_a_fused_resnet_gives_the_layer_major_outputs_bit_for_bit(kind):
    model = _resnet(NEURONS[kind])
    x = _spikes()
    with mock.patch.object(neuron_add, "_step_sum", wraps=neuron_add._step_sum) as kernel:
        stepped = run(model, x, "step")
    assert kernel.call_count == 2 * x.shape[0]  # the second neuron of both blocks, every step
    assert torch.equal(stepped, run(model, x, "layer"))


def test_float64_fuses_bit_for_bit():
    model = _resnet(NEURONS["IF half"], torch.float64)
    x = _spikes(dtype=torch.float64)
    with mock.patch.object(neuron_add, "_step_sum", wraps=neuron_add._step_sum) as kernel:
        stepped = run(model, x, "step")
    assert kernel.call_count == 2 * x.shape[0]
    assert torch.equal(stepped, run(model, x, "layer"))


def test_no_fusion_where_a_hook_small_step_or_signed_neuron_needs_the_sum():
    model = _resnet(None)
    x = _spikes()
    seen = []
    hook = stepping.step_aware(lambda m, i, o: seen.append(tuple(i[0].shape)))
    handle = model.block1.act2.register_forward_hook(hook)
    with mock.patch.object(neuron_add, "_step_sum", wraps=neuron_add._step_sum) as kernel:
        stepped = run(model, x, "step")
    handle.remove()
    assert kernel.call_count == x.shape[0]  # block2 only: block1's hook sees the sum at every step
    assert seen == [(48, 8, 25, 23)] * x.shape[0]
    assert torch.equal(stepped, run(model, x, "layer"))
    signed = _resnet({"signed": True, "v_init": "half"})
    for net, data in ((signed, x), (model, _spikes(B=2))):  # 2 x 8 x 25 x 23 values: below SERIAL_BELOW
        with mock.patch.object(neuron_add, "_step_sum", wraps=neuron_add._step_sum) as kernel:
            stepped = run(net, data, "step")
        assert kernel.call_count == 0
        assert torch.equal(stepped, run(net, data, "layer"))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), B=st.integers(1, 3), T=st.integers(1, 5), seed=st.integers(0, 2**16),
       half=st.booleans(), zero=st.booleans(), beta=st.sampled_from([None, 0.75]),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_step_added_is_the_neuron_rule_on_the_sum(n, B, T, seed, half, zero, beta, dtype):
    """Inputs on a quarter grid (sums and membranes land exactly on thresholds), per-neuron thresholds varying
    along the channel axis; against the neuron's multi-step rule on ``a + b``."""
    g = torch.Generator().manual_seed(seed)
    a = (torch.randint(-3, 5, (T, B, n), generator=g) / 4).to(dtype)
    b = (torch.randint(-3, 5, (T, B, n), generator=g) / 8).to(dtype)
    kw = {"threshold": 1.0, "v_init": "half" if half else "zero", "reset": "zero" if zero else "subtract",
          "per_channel": True, "channels": n}
    neuron = (LIF(beta=beta, **kw) if beta is not None else IF(**kw)).to(dtype).eval()
    neuron.threshold.data.copy_((torch.randint(1, 5, (n,), generator=g) / 4).to(dtype))
    x = a + b
    expected = neuron_multistep(x, neuron.broadcast_threshold(x), neuron.beta, neuron.v_init, neuron.reset, False,
                                "atan")
    with mock.patch.object(neuron_add, "SERIAL_BELOW", 0), \
            mock.patch.object(neuron_add, "_step_sum", wraps=neuron_add._step_sum) as kernel:
        out = step_by_step(T, lambda t: neuron_add.step_added(neuron, a[t], b[t]))
    assert kernel.call_count == T
    assert torch.equal(out, expected)
