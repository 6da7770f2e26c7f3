"""Imported models (issue 11): snnTorch and SpikingJelly models and NIR graphs give the original's outputs exactly;
SpikingJelly -> NIR -> qnoise -> NIR keeps every weight and parameter; what cannot map is refused by name;
imported models save, load, analyse and export (weights at their quantized values)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from interop_helpers import need
from torch import nn

import qnoise
from qnoise.interop import NIRImportError, from_nir, from_snntorch, from_spikingjelly, from_state_dict, to_nir
from qnoise.io import load_checkpoint, save_checkpoint

snn = need("snntorch")
nir = need("nir")
sj_neuron = need("spikingjelly.activation_based.neuron")
from spikingjelly.activation_based import functional as sf  # noqa: E402
from spikingjelly.activation_based import layer  # noqa: E402


def _sj_cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(layer.Conv2d(2, 8, 3, padding=1), sj_neuron.IFNode(v_reset=0.0), layer.AvgPool2d(2),
                        layer.Conv2d(8, 8, 3, padding=1), sj_neuron.LIFNode(tau=3.0, v_reset=0.0), layer.Flatten(),
                        layer.Linear(8 * 4 * 4, 10), sj_neuron.LIFNode(tau=2.0, decay_input=False, v_reset=0.0))
    sf.set_step_mode(net, "m")
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "weight" in name:
                p.mul_(6)  # active enough that every layer spikes
    return net.eval()


def _events(seed: int = 1, T: int = 8, B: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, 2, 8, 8, generator=g) < 0.3).float()


def _sj_out(net, x):
    sf.reset_net(net)
    with torch.no_grad():
        out = net(x)
    sf.reset_net(net)
    return out


def test_spikingjelly_model_output_equals_the_original():
    net, x = _sj_cnn(), _events()
    ref = _sj_out(net, x)
    q = from_spikingjelly(net, input_shape=(2, 8, 8))
    assert ref.sum() > 0
    assert torch.equal(q(x), ref)
    assert [type(m).__name__ for _, m in qnoise.spiking_neurons(q)] == ["Leaky", "Leaky", "Leaky"]


def test_snntorch_model_output_equals_the_original():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(128, 32), snn.Leaky(beta=0.8, init_hidden=True),
                        nn.Linear(32, 10), snn.Synaptic(alpha=0.7, beta=0.9, init_hidden=True, reset_mechanism="zero"))
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "weight" in name:
                p.mul_(3)
    x = _events(2)
    from snntorch import utils

    utils.reset(net)
    with torch.no_grad():
        ref = torch.stack([net(x[t]) for t in range(x.shape[0])])
    q = from_snntorch(net, input_shape=(2, 8, 8))
    assert ref.sum() > 0
    assert torch.equal(q(x), ref)


def _param_arrays(node) -> dict[str, np.ndarray]:
    out = {}
    for field in node.__dataclass_fields__:
        v = getattr(node, field)
        if isinstance(v, np.ndarray) and field not in ("input_type", "output_type"):
            out[field] = v
    return out


def test_nir_round_trip_keeps_every_weight_and_parameter(tmp_path):
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    net, x = _sj_cnn(), _events()
    graph = export_to_nir(net, x[:, :1], dt=1e-4)
    q = from_nir(graph, dt=1e-4, fire=">=")  # SpikingJelly fires at v >= theta, which NIR cannot say
    assert torch.equal(q(x), _sj_out(net, x))  # SpikingJelly's NIR, run by qnoise: the same spikes
    back = to_nir(q, dt=1e-4, path=tmp_path / "back.nir")
    assert set(back.nodes) == set(graph.nodes)
    assert sorted(back.edges) == sorted(graph.edges)
    compared = 0
    for name, node in graph.nodes.items():
        assert type(back.nodes[name]) is type(node), name
        mine, theirs = _param_arrays(back.nodes[name]), _param_arrays(node)
        assert set(theirs) <= set(mine), (name, set(theirs) - set(mine))
        for field, value in theirs.items():
            # parameters as the model runs them: float32 (NIR files hold float64)
            assert np.array_equal(np.asarray(mine[field], np.float32), np.asarray(value, np.float32)), (name, field)
            compared += 1
    assert compared >= 15
    again = from_nir(tmp_path / "back.nir", dt=1e-4)  # through the file, metadata (fire '>=') included
    assert torch.equal(again(x), q(x))


def test_nir_firing_test_decides_ties():
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    net = nn.Sequential(layer.Flatten(), layer.Linear(4, 3, bias=False), sj_neuron.IFNode(v_reset=0.0))
    sf.set_step_mode(net, "m")
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[0.25, 0.25, 0.0, 0.0], [0.5, 0.0, 0.25, 0.0], [0.25, 0.0, 0.0, 0.5]]))
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(12, 8, 1, 2, 2, generator=g) < 0.6).float()  # quarter sums: membranes land on theta = 1
    ref = _sj_out(net, x)
    graph = export_to_nir(net, x[:, :1], dt=1e-4)
    assert torch.equal(from_nir(graph, fire=">=")(x), ref)
    assert not torch.equal(from_nir(graph, fire=">")(x), ref)  # the default of NIR's Heaviside differs at ties


def test_subtract_reset_survives_a_qnoise_nir_round_trip():
    net = nn.Sequential(layer.Flatten(), layer.Linear(128, 10), sj_neuron.IFNode(v_reset=None))
    sf.set_step_mode(net, "m")
    q = from_spikingjelly(net, input_shape=(2, 8, 8))
    back = from_nir(to_nir(q))  # NIR cannot say "subtract": the node's qnoise.reset metadata does
    x = _events(3) * 0.7
    assert torch.equal(back(x), q(x))
    assert qnoise.spiking_neurons(back)[0][1].reset == "subtract"
    plain = from_nir(to_nir(q), reset="zero")  # metadata wins over the argument
    assert qnoise.spiking_neurons(plain)[0][1].reset == "subtract"


@pytest.mark.parametrize("kind", ["leaky-subtract", "synaptic-subtract", "synaptic-zero"])
def test_snntorch_neurons_survive_a_nir_round_trip_spike_for_spike(kind, tmp_path):
    """snnTorch subtracts the previous spike after this step's leak (``reset_time="next"``): `to_nir` writes it to
    the node's metadata and `from_nir` rebuilds it, so the spikes are snnTorch's after the round trip."""
    neuron = {"leaky-subtract": lambda: snn.Leaky(beta=0.5, init_hidden=True),
              "synaptic-subtract": lambda: snn.Synaptic(alpha=0.5, beta=0.75, init_hidden=True),
              "synaptic-zero": lambda: snn.Synaptic(alpha=0.5, beta=0.75, init_hidden=True,
                                                    reset_mechanism="zero")}[kind]()
    q = from_snntorch(nn.Sequential(neuron), input_shape=(40,))
    back = from_nir(to_nir(q, path=tmp_path / "m.nir") and tmp_path / "m.nir")
    g = torch.Generator().manual_seed(0)
    for x in (torch.rand(16, 16, 40, generator=g) * 1.5 - 0.2,
              torch.randint(-2, 6, (16, 16, 40), generator=g).float() * 0.25):  # ties on the threshold
        with torch.no_grad():
            assert torch.equal(back(x), q(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.nir"]  # no temporary file left


def _on_threshold_at_step_two(retain):
    """``[T=2, B=1, 4096]`` inputs whose second step puts a membrane of retention ``retain(v)`` exactly on theta = 1:
    ``x2 = 1 - retain(x1)`` (the rule's own rounding decides the tie)."""
    x1 = torch.rand(4096, generator=torch.Generator().manual_seed(0)) * 0.9
    return torch.stack([x1, 1.0 - retain(x1)])[:, None, :]


@pytest.mark.parametrize("kind", ["snntorch-leaky-zero", "spikingjelly-lif-no-decay-input", "qnoise-lif"])
def test_leaky_rules_survive_a_nir_round_trip_on_the_threshold(kind):
    """NIR's LIF is one formula; a rule written in another form (snnTorch's ``beta v + x`` with a reset to zero,
    SpikingJelly's ``v - v/tau + x``, qnoise's LIF) came back as NIR's ``v + (r x - v)/tau``: the same dynamics,
    other rounding, and 88-636 of 8192 spikes on the threshold flipped. `to_nir` now writes the rule
    (``qnoise.charge``) and `from_nir` rebuilds it: every spike is the source library's."""
    from qnoise.models.graph import GraphNet
    from qnoise.neurons import LIF

    if kind == "snntorch-leaky-zero":
        net = nn.Sequential(snn.Leaky(beta=0.8, init_hidden=True, reset_mechanism="zero"))
        x = _on_threshold_at_step_two(lambda v: torch.tensor(0.8) * v)
        q = from_snntorch(net, input_shape=(4096,))
        with torch.no_grad():
            ref = torch.stack([net(x[t]) for t in range(2)])
    elif kind == "spikingjelly-lif-no-decay-input":
        net = nn.Sequential(sj_neuron.LIFNode(tau=3.0, decay_input=False, v_reset=None, step_mode="m"))
        x = _on_threshold_at_step_two(lambda v: v - v / 3.0)
        q = from_spikingjelly(net, input_shape=(4096,))
        sf.reset_net(net)
        with torch.no_grad():
            ref = net(x)
    else:
        q = GraphNet({"n": LIF(threshold=1.0, beta=0.8)}, [], [4096], None, {}).eval()
        x = _on_threshold_at_step_two(lambda v: torch.tensor(0.8) * v)
        with torch.no_grad():
            ref = q(x)
    graph = to_nir(q)
    with torch.no_grad():
        assert torch.equal(q(x), ref)
        assert torch.equal(from_nir(graph)(x), ref)
        for node in graph.nodes.values():  # without the rule's name: NIR's own form, which flips ties
            (getattr(node, "metadata", None) or {}).pop("qnoise.charge", None)
        assert not torch.equal(from_nir(graph)(x), ref)


def test_per_neuron_beta_exports_finite_or_is_refused():
    """A beta of 1 among others (snnTorch clamps a learned beta to 1) wrote tau = inf, a file `from_nir` refused;
    now `to_nir` refuses it by name. A beta of 0 among others (tau = dt) round-trips, either reset (it was refused
    as "beta 0 with a reset by subtraction" even for a reset to zero)."""
    with pytest.raises(ValueError, match=r"node 'n0' \(Leaky\) has beta = 1 \(no leak\) for some neurons"):
        to_nir(from_snntorch(nn.Sequential(snn.Leaky(beta=torch.tensor([0.5, 0.9, 1.0, 0.7]), init_hidden=True)),
                             input_shape=(4,)))
    x = torch.rand(6, 3, 4, generator=torch.Generator().manual_seed(1)) * 1.5
    for reset in ("zero", "subtract"):
        net = nn.Sequential(snn.Leaky(beta=torch.tensor([0.5, 0.0, 0.9, 0.7]), init_hidden=True,
                                      reset_mechanism=reset))
        q = from_snntorch(net, input_shape=(4,))
        with torch.no_grad():
            assert torch.equal(from_nir(to_nir(q))(x), q(x))


def test_a_fixed_point_membrane_survives_a_nir_round_trip():
    from qnoise.models.graph import GraphNet
    from qnoise.neuron_kinds import CUBA, Leaky

    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 16, 40, generator=g) * 1.5 - 0.2
    for m, scale in ((Leaky(1.0, "beta", beta=1.0, state_bits=4, fire=">", spike_value="one"), 1.0),
                     (CUBA.loihi(64.0, 1024, 512, state_bits=24), 50.0)):
        q = GraphNet({"n": m}, [], [40], None, {}).eval()
        back = from_nir(to_nir(q))
        assert back.n.state_bits == m.state_bits
        with torch.no_grad():
            assert torch.equal(back(x * scale), q(x * scale))
    no_leak = GraphNet({"n": CUBA(1.0, alpha=0.0, beta=1.0)}, [], [40], None, {}).eval()
    with pytest.raises(ValueError, match="node 'n' \\(CUBA\\) has a decay of 1"):
        to_nir(no_leak)


def test_to_nir_exports_quantized_weights():
    from qnoise.quant import quantize_weights

    net = nn.Sequential(layer.Flatten(), layer.Linear(128, 10), sj_neuron.IFNode(v_reset=0.0))
    sf.set_step_mode(net, "m")
    q = from_spikingjelly(net, input_shape=(2, 8, 8))
    quantize_weights(q, 3)
    w = to_nir(q).nodes["n1"].weight
    assert len(np.unique(np.abs(w))) <= 4  # 3 bits: levels 0..3 steps in magnitude
    assert np.array_equal(w, q.n1.body.weight.detach().double().numpy())


def test_to_nir_exports_quantized_thresholds_spike_for_spike():
    """Thresholds quantized by `apply_quantization` (torch's ``ParametrizedIF``) were refused ("ParametrizedIF is
    not a graph node"): the node is an IF with its quantized threshold, and the round trip spikes as it did."""
    from qnoise.models import apply_quantization, build_model

    torch.manual_seed(0)
    q = build_model("mlp", (40,), 5, hidden=[16, 12], batchnorm=False, neuron={"v_init": "zero"}).eval()
    for i, (_, n) in enumerate(qnoise.spiking_neurons(q)):
        n.set_threshold(0.61 + 0.3 * i)
    apply_quantization(q, {"weights": {"bits": 4}, "thresholds": {"bits": 3}})
    graph = to_nir(q, input_shape=(40,))
    for name, n in qnoise.spiking_neurons(q):
        assert np.allclose(graph.nodes[name].v_threshold, float(n.threshold))
    assert float(qnoise.spiking_neurons(q)[0][1].threshold) != pytest.approx(0.61)  # on the 3-bit grid
    back = from_nir(graph)
    x = torch.rand(8, 6, 40, generator=torch.Generator().manual_seed(1)) * 2
    with torch.no_grad():
        assert torch.equal(back(x), q(x))


def test_imported_checkpoint_saves_loads_and_analyses(tmp_path):
    net, x = _sj_cnn(), _events(B=12)
    q = from_spikingjelly(net, input_shape=(2, 8, 8))
    save_checkpoint(q, tmp_path / "ck", timesteps=8)
    m = load_checkpoint(tmp_path / "ck")
    assert torch.equal(m(x), q(x))
    y = torch.arange(12) % 10
    df = qnoise.analyze(m, (x.transpose(0, 1), y), reference="snn", weight_bits=4, progress=False)
    rows = df[(df.t == df.timesteps) & (df["mode"] == "propagated")]
    assert {"err_own_mse", "err_prop_mse", "firing_rate"} <= set(rows.metric)
    first = rows[(rows.layer == "n1") & (rows.metric == "err_prop_mse")].value
    assert float(first.iloc[0]) == 0.0  # nothing is inherited by the first layer


def test_qnoise_import_command(tmp_path):
    net = _sj_cnn()
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    nir.write(str(tmp_path / "m.nir"), export_to_nir(net, _events()[:, :1], dt=1e-4))
    cli = [sys.executable, "-m", "qnoise.cli", "import", str(tmp_path / "m.nir"), "--out", str(tmp_path / "ck"),
           "--timesteps", "8"]
    r = subprocess.run(cli, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = load_checkpoint(tmp_path / "ck")
    assert m.qnoise_checkpoint["model"]["source"]["dt"] == 1e-4
    assert m.qnoise_checkpoint["model"]["source"]["reset"] == "zero"
    assert torch.equal(m(_events()), _sj_out(net, _events()))


def test_what_cannot_map_is_named():
    bad = nn.Sequential(nn.Flatten(), nn.Linear(128, 10), nn.MaxPool1d(2), snn.Leaky(beta=0.9, init_hidden=True))
    with pytest.raises(ValueError, match=r"module '2' \(MaxPool1d\).*not an affine"):
        from_snntorch(bad)
    with pytest.raises(ValueError, match="reset_mechanism='none'"):
        from_snntorch(nn.Sequential(nn.Linear(4, 2), snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="none")))
    with pytest.raises(ValueError, match="resets to v_reset=-0.5"):
        from_spikingjelly(nn.Sequential(layer.Linear(4, 2), sj_neuron.IFNode(v_reset=-0.5)))
    g = nir.NIRGraph.from_list(nir.Input(np.array([4])), nir.Linear(np.ones((2, 4))),
                               nir.LIF(tau=np.ones(2) * 2e-4, r=np.ones(2), v_leak=np.zeros(2),
                                       v_threshold=np.ones(2), v_reset=np.full(2, 0.3)),
                               nir.Output(np.array([2])))
    with pytest.raises(NIRImportError, match=r"NIR node '.*' \(LIF\) resets to v_reset != 0"):
        from_nir(g)


def test_from_state_dict_safetensors_and_torch_file(tmp_path):
    from safetensors.torch import save_file

    net = _sj_cnn(3)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    torch.save(net.state_dict(), tmp_path / "w.pt")
    fresh = _sj_cnn(4)
    q = from_state_dict(fresh, tmp_path / "w.safetensors", input_shape=(2, 8, 8))
    x = _events()
    assert torch.equal(q(x), _sj_out(net, x))
    q2 = from_state_dict(_sj_cnn(5), tmp_path / "w.pt", input_shape=(2, 8, 8))
    assert torch.equal(q2(x), q(x))
    with pytest.raises(ValueError, match="does not fit"):
        from_state_dict(nn.Sequential(layer.Linear(3, 2), sj_neuron.IFNode()), tmp_path / "w.safetensors")


def test_from_norse_says_what_to_do_without_norse():
    import importlib.util

    from qnoise.interop import from_norse

    if importlib.util.find_spec("norse") is not None:
        pytest.skip("Norse is installed here")
    with pytest.raises(ImportError, match="from_nir"):
        from_norse(nn.Linear(2, 2), torch.zeros(1, 2))


def test_refusals_name_the_module_or_node():
    with pytest.raises(ValueError, match="snnTorch module '1' \\(Leaky\\): threshold must be > 0"):
        from_snntorch(nn.Sequential(nn.Linear(4, 3), snn.Leaky(0.5, threshold=-1.0, init_hidden=True)))
    conv = nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect")
    with pytest.raises(ValueError, match="graph node 'n0'.*padding_mode='reflect'"):
        from_snntorch(nn.Sequential(conv, snn.Leaky(0.5, init_hidden=True)), input_shape=(2, 8, 8))
    graph = nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([3])}),
                                "cells": nir.IF(r=np.ones(3), v_threshold=np.zeros(3), v_reset=np.zeros(3)),
                                "out": nir.Output(output_type={"output": np.array([3])})},
                         edges=[("in", "cells"), ("cells", "out")])
    with pytest.raises(NIRImportError, match="NIR node 'cells' \\(IF\\): threshold must be > 0"):
        from_nir(graph)


def test_spikingjelly_dropout_is_dropped_at_inference():
    torch.manual_seed(0)
    net = nn.Sequential(layer.Flatten(), layer.Linear(128, 10), layer.Dropout(0.5), sj_neuron.IFNode(v_reset=0.0))
    sf.set_step_mode(net, "m")
    net.eval()
    q = from_spikingjelly(net, input_shape=(2, 8, 8))
    x = _events(5)
    assert torch.equal(q(x), _sj_out(net, x))


@pytest.mark.parametrize("arch,shape,options", [("mlp", (1, 8, 8), {"hidden": [16]}),
                                                ("cnn", (2, 12, 12), {"channels": [4, 6], "hidden": 16})])
def test_qnoise_reference_networks_export_to_nir_and_back(arch, shape, options):
    """Their blocks hold several ops in one MultiStep (Flatten + Linear): one NIR node each. Batch norm (NIR has
    none) is folded into the conv or linear node before it: the round trip spikes as the model did (it was
    refused); a BatchNorm that cannot fold (its input feeds another node too) is refused naming the node."""
    from qnoise.models import build_model

    torch.manual_seed(0)
    x = (torch.rand(5, 3, *shape, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    for batchnorm in (False, True):
        model = build_model(arch, shape, 10, batchnorm=batchnorm, **options)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):  # statistics far from the identity
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.3, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.4)
        model.eval()
        graph = to_nir(model)
        assert not any("BatchNorm" in type(n).__name__ for n in graph.nodes.values())
        with torch.no_grad():
            back, out = from_nir(graph)(x), model(x)
        assert torch.allclose(back, out, atol=1e-5), batchnorm  # a flipped spike moves it by a whole weight
        assert out.abs().sum() > 0
    from qnoise import IF, MultiStep
    from qnoise.models.graph import GraphNet

    nodes = {"conv": MultiStep(nn.Conv2d(2, 4, 3, padding=1)), "bn": MultiStep(nn.BatchNorm2d(4)), "n": IF()}
    shared = GraphNet(nodes, [("conv", "bn"), ("bn", "n"), ("conv", "n")], (2, 6, 6)).eval()  # conv feeds two
    with pytest.raises(ValueError, match=r"node 'bn' \(BatchNorm2d\) has no NIR counterpart and cannot be folded"):
        to_nir(shared)
