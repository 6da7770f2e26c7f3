"""Reference networks: shapes per arch and kind, conventions the probe relies on, config rebuild, quantization spec."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qnoise.layers import MultiStep
from qnoise.models import apply_quantization, build_model, model_from_config, set_act_bits, sync_threshold_step
from qnoise.neurons import IF, LIF, spiking_neurons
from qnoise.quant import LearnableClip, SigmoidSumQuantizer, weight_quantizers

SHAPES = {"mlp": (1, 8, 8), "cnn": (1, 8, 8), "resnet": (1, 8, 8)}


@pytest.mark.parametrize("arch", sorted(SHAPES))
@pytest.mark.parametrize("kind,act_bits", [("snn", None), ("ann", None), ("ann", 2)])
def test_shapes_per_arch_and_kind(arch, kind, act_bits):
    model = build_model(arch, SHAPES[arch], 10, kind=kind, act_bits=act_bits).eval()
    t = 1 if kind == "ann" else 3
    out = model(torch.rand(t, 5, *SHAPES[arch]))
    assert out.shape == (t, 5, 10)
    acts = [m for m in model.modules() if isinstance(m, (IF, nn.ReLU, LearnableClip))]
    expected = IF if kind == "snn" else (LearnableClip if act_bits else nn.ReLU)
    assert acts and all(isinstance(m, expected) for m in acts)
    # activations are never hidden inside a MultiStep; no max pooling anywhere
    for m in model.modules():
        if isinstance(m, MultiStep):
            assert not any(isinstance(c, (IF, nn.ReLU, LearnableClip)) for c in m.modules())
        assert not isinstance(m, (nn.MaxPool2d, nn.MaxPool1d))


def test_last_layer_is_a_plain_readout():
    model = build_model("cnn", (1, 8, 8), 10)
    names = [n for n, _ in model.named_children()]
    assert names[-1] == "readout" and spiking_neurons(model)[-1][0] != "readout"
    assert isinstance(list(model.readout.modules())[-1], nn.Linear)


def test_reference_network_of_the_speed_benchmark():
    model = build_model("cnn", (2, 34, 34), 10, channels=[32, 64], hidden=256)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(2, 32, (3, 3)), (32, 64, (3, 3))]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(4096, 256), (256, 10)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2
    assert sum(isinstance(m, nn.AvgPool2d) for m in model.modules()) == 2
    assert len(spiking_neurons(model)) == 3
    assert build_model("cnn", (2, 34, 34), 10).qnoise_config == model.qnoise_config  # the defaults


def test_lif_signed_per_channel_neurons():
    model = build_model("cnn", (1, 8, 8), 4, neuron={"type": "lif", "beta": 0.8, "per_channel": True,
                                                     "learn_threshold": True, "signed": True})
    neurons = [m for _, m in spiking_neurons(model)]
    assert all(isinstance(m, LIF) and m.signed and m.learn_threshold for m in neurons)
    assert [m.threshold.numel() for m in neurons] == [32, 64, 256]
    assert model(torch.rand(2, 3, 1, 8, 8)).shape == (2, 3, 4)


def test_resnet_add_happens_before_the_neuron():
    model = build_model("resnet", (1, 8, 8), 10, channels=[4, 8]).eval()
    block = model.block2
    seen = {}
    block.act2.register_forward_hook(lambda m, i, o: seen.setdefault("in", i[0]))
    x = torch.rand(2, 3, 1, 8, 8)
    model(x)
    with torch.no_grad():
        h = model.block1(model.act1(model.conv1(x)))
        expected = block.conv2(block.act1(block.conv1(h))) + block.shortcut(h)
    torch.testing.assert_close(seen["in"], expected)


def test_rebuild_from_config_gives_the_same_model():
    model = build_model("resnet", (2, 16, 16), 5, neuron="lif", channels=[4, 8], blocks=2).eval()
    twin = model_from_config(model.qnoise_config).eval()
    twin.load_state_dict(model.state_dict())
    x = torch.rand(3, 2, 2, 16, 16)
    assert torch.equal(model(x), twin(x))
    assert twin.qnoise_config == model.qnoise_config


def test_config_is_complete_and_json_able():
    import json

    cfg = build_model("mlp", (64,), 10, kind="ann", act_bits=3, hidden=[32]).qnoise_config
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["hidden"] == [32] and cfg["batchnorm"] is True and cfg["activation"] == "clip"


@pytest.mark.parametrize("kwargs,match", [
    ({"arch": "vgg"}, "unknown architecture"),
    ({"channels": [8]}, "unknown mlp option"),
    ({"kind": "cnn"}, "kind="),
    ({"neuron": {"tau": 2}}, "unknown neuron option"),
    ({"kind": "ann", "neuron": "if"}, "takes no neuron"),
    ({"kind": "ann", "activation": "relu", "act_bits": 2}, "cannot be quantized"),
])
def test_bad_configs_are_explained(kwargs, match):
    args = {"arch": "mlp", "input_shape": (1, 8, 8), "num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_model(**args)


def test_wrong_input_shape_is_explained():
    model = build_model("cnn", (1, 8, 8), 10)
    with pytest.raises(ValueError, match=r"expects input \[T, B, 1, 8, 8\]"):
        model(torch.rand(2, 4, 1, 9, 9))


def test_quantization_spec_applies_records_and_removes():
    model = build_model("cnn", (1, 8, 8), 10, neuron={"learn_threshold": True})
    for i, (_, m) in enumerate(spiking_neurons(model)):
        m.set_threshold(0.5 + i)
    spec = apply_quantization(model, {"weights": {"bits": 1, "method": "sigmoid", "keep_first_last": True},
                                      "thresholds": {"bits": 3}, "membrane": {"bits": 6, "rounding": "truncate"}})
    assert model.qnoise_config["quantization"] == spec
    assert sorted(weight_quantizers(model)) == ["conv2.body.0", "fc3.body.1"]
    assert all(isinstance(q, SigmoidSumQuantizer) for q in weight_quantizers(model).values())
    step = sync_threshold_step(model)
    assert step == pytest.approx(2.5 / 7)
    for _, m in spiking_neurons(model):
        levels = m.threshold / step
        torch.testing.assert_close(levels, levels.round())  # on the shared grid
        assert m.state_bits == 6 and m.state_rounding == "truncate"
    # only the parts named are touched; None removes
    apply_quantization(model, {"membrane": None, "thresholds": None})
    assert all(m.state_bits is None for _, m in spiking_neurons(model))
    assert [float(m.threshold.detach()) for _, m in spiking_neurons(model)] == [0.5, 1.5, 2.5]
    assert len(weight_quantizers(model)) == 2
    assert model.qnoise_config["quantization"]["weights"]["method"] == "sigmoid"


def test_ann_rejects_neuron_quantization():
    model = build_model("mlp", (1, 8, 8), 10, kind="ann")
    with pytest.raises(ValueError, match="needs spiking neurons"):
        apply_quantization(model, {"membrane": {"bits": 8}})


def test_set_act_bits_updates_modules_and_config():
    model = build_model("mlp", (1, 8, 8), 10, kind="ann", act_bits=2)
    assert set_act_bits(model, None) == 2
    assert all(m.bits is None for m in model.modules() if isinstance(m, LearnableClip))
    assert model.qnoise_config["act_bits"] is None


def test_per_layer_bits_in_the_quantization_spec_round_trip_a_checkpoint(tmp_path):
    """A mixed-precision configuration (per-layer weight and membrane bits, 32 = float, 1 = binary) is applied
    as recorded and survives save/load bit for bit."""
    from qnoise.io import load_checkpoint, save_checkpoint
    from qnoise.neurons import spiking_neurons
    from qnoise.quant import weight_bits, weight_layers

    torch.manual_seed(0)
    spec = {"weights": {"bits": 8, "per_layer": {"conv1.body.0": 2, "fc3.body.1": 1, "readout.body.0": 32}},
            "membrane": {"bits": 8, "per_layer": {"act1": 4, "act3": 32}}}
    model = build_model("cnn", (1, 8, 8), 10, quantization=spec)
    assert [weight_bits(m) for _, m in weight_layers(model)] == [2, 8, 1, 32]
    assert [n.state_bits for _, n in spiking_neurons(model)] == [4, 8, None]
    save_checkpoint(model, tmp_path / "mixed", timesteps=4)
    again = load_checkpoint(tmp_path / "mixed")
    for (_, a), (_, b) in zip(weight_layers(model), weight_layers(again), strict=True):
        assert torch.equal(a.weight, b.weight) and weight_bits(a) == weight_bits(b)
    assert [n.state_bits for _, n in spiking_neurons(again)] == [4, 8, None]
    with pytest.raises(ValueError, match="not Conv/Linear layers"):
        build_model("cnn", (1, 8, 8), 10, quantization={"weights": {"bits": 8, "per_layer": {"nope": 4}}})
    with pytest.raises(ValueError, match="per_layer"):
        build_model("cnn", (1, 8, 8), 10, quantization={"weights": {"bits": 8, "per_layer": {"conv1.body.0": 0}}})
