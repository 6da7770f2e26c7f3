"""A user's copies of a quantized model never change with it (qnoise.parametrized, qnoise.probe.copying):
``copy.deepcopy`` shares torch's generated Parametrized* class between a module and its copies, and qnoise used
to remove and re-register parametrizations on the model it was given (to copy it, or to try other bits), which
deleted ``weight`` from every sibling."""

from __future__ import annotations

import copy

import pytest
import torch

import qnoise
from qnoise.models import apply_quantization, build_model
from qnoise.probe.copying import clone_model, private_copy, to_portable
from qnoise.quant import quantize_weights, remove_weight_quantization

X = torch.rand(8, 3, 1, 6, 6, generator=torch.Generator().manual_seed(0))
Y = torch.arange(8) % 3


def _quantized():
    torch.manual_seed(0)
    model = build_model("cnn", (1, 6, 6), 3, channels=[3, 4], hidden=8).eval()
    apply_quantization(model, {"weights": {"bits": 4}, "thresholds": {"bits": 4}})
    return model


def _out(model):
    with torch.no_grad():
        return model(X.transpose(0, 1))


ACTIONS = {
    "analyze at other bits": lambda m: qnoise.analyze(m, (X, Y), weight_bits=8, progress=False),
    "analyze against the float SNN": lambda m: qnoise.analyze(m, (X, Y), reference="snn", progress=False),
    "sensitivity": lambda m: qnoise.sensitivity(m, (X, Y), weight_bits=2),
    "sweep": lambda m: qnoise.sweep(m, (X, Y), weight_bits=[2, 32], timesteps=[3], workers=1, progress=False),
    "clone and portable copies": lambda m: (clone_model(m, "float"), clone_model(m, "quantized"), to_portable(m),
                                            private_copy(m)),
    "re-quantize, then remove": lambda m: (quantize_weights(m, bits=3), remove_weight_quantization(m)),
    "thresholds again": lambda m: apply_quantization(m, {"thresholds": {"bits": 6}}),
}


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_sibling_made_by_deepcopy_is_untouched(action):
    model = _quantized()
    sibling = copy.deepcopy(model)
    expected = _out(model)
    ACTIONS[action](model)
    assert torch.equal(_out(sibling), expected)  # failed with "'ParametrizedConv2d' object has no attribute 'weight'"


def test_copies_leave_the_original_as_it_was():
    model = _quantized()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    expected = _out(model)
    plain = clone_model(model, "float")
    assert not any(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in plain.modules())
    neurons = qnoise.neurons.spiking_neurons(plain)
    assert all(torch.nn.utils.parametrize.is_parametrized(m, "raw_threshold") for _, m in neurons)
    frozen = clone_model(model, "quantized")
    assert torch.equal(_out(frozen), expected)  # the quantized weights, frozen as plain parameters
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(_out(model), expected)
