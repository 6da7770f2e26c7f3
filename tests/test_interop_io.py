"""Module-graph checkpoints (issue 11): any qnoise model, imported ones included, saves as safetensors + a JSON module
graph and loads back to the same outputs; loading keeps every check (config against the header, values, files
inside the folder)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from qnoise.io import load_checkpoint, save_checkpoint
from qnoise.layer_kinds import Delay, Integrator, LeakyIntegrator, Scale
from qnoise.layers import MultiStep
from qnoise.models.graph import GraphNet
from qnoise.neuron_kinds import CUBA, Leaky
from qnoise.neurons import IF, LIF
from qnoise.quant import quantize_weights


def _sequential() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(MultiStep(nn.Flatten()), MultiStep(nn.Linear(32, 16)), IF(threshold=0.5, v_init="half"),
                         Delay(1), MultiStep(nn.Linear(16, 12)), LIF(beta=0.8, threshold=0.4),
                         MultiStep(nn.Linear(12, 8)), Leaky(torch.linspace(0.2, 0.9, 8), "tau", tau=3.0, fire=">"),
                         Scale(2.0), MultiStep(nn.Linear(8, 6)), CUBA.loihi(3, du=512, dv=1024, state_bits=16),
                         MultiStep(nn.Linear(6, 4)), LeakyIntegrator(tau=torch.full((4,), 2.0)), Integrator(0.5))


def test_any_qnoise_sequential_saves_and_loads(tmp_path):
    model = _sequential()
    x = torch.rand(6, 3, 2, 4, 4) * 3
    save_checkpoint(model, tmp_path / "ck", input_shape=(2, 4, 4), timesteps=6)
    doc = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert doc["model"]["arch"] == "graph"
    nodes = doc["model"]["graph"]["nodes"]
    assert [nodes[f"n{i}"]["op"] for i in range(4)] == ["flatten", "linear", "if", "delay"]
    loaded = load_checkpoint(tmp_path / "ck")
    assert isinstance(loaded, GraphNet)
    assert [n for n, _ in loaded.named_children()] == [f"n{i}" for i in range(14)]  # execution order, not n0, n1, n10
    assert torch.equal(loaded(x), model(x))


def test_quantized_graph_is_saved_at_its_quantized_values(tmp_path):
    model = _sequential()
    graph = save_checkpoint(model, tmp_path / "plain", input_shape=(2, 4, 4))
    g = load_checkpoint(graph)
    quantize_weights(g, 3)
    x = torch.rand(5, 2, 2, 4, 4) * 3
    save_checkpoint(g, tmp_path / "q")
    back = load_checkpoint(tmp_path / "q")
    assert torch.equal(back(x), g(x))
    assert len(torch.unique(back.get_submodule("n1").body.weight.abs())) <= 4


def test_graph_checkpoints_keep_the_loading_checks(tmp_path):
    save_checkpoint(_sequential(), tmp_path / "ck", input_shape=(2, 4, 4))
    cfg_path = tmp_path / "ck" / "config.json"
    good = json.loads(cfg_path.read_text())

    def broken(change) -> str:
        doc = json.loads(json.dumps(good))
        change(doc)
        cfg_path.write_text(json.dumps(doc))
        with pytest.raises((ValueError, FileNotFoundError)) as err:
            load_checkpoint(tmp_path / "ck")
        return str(err.value)

    assert "shape" in broken(lambda d: d["model"]["graph"]["nodes"]["n1"].update(out_features=17))
    assert "is not one of" in broken(lambda d: d["model"]["graph"]["nodes"]["n1"].update(op="pickle"))
    assert "not a file inside" in broken(lambda d: d["tensors"].update(file="../../etc/passwd"))
    assert "names a node" in broken(lambda d: d["model"]["graph"]["edges"].append(["n1", "nowhere"]))
    cfg_path.write_text(json.dumps(good))
    load_checkpoint(tmp_path / "ck")


def test_nonpositive_threshold_of_an_imported_neuron_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    save_checkpoint(_sequential(), tmp_path / "ck", input_shape=(2, 4, 4))
    tensors = load_file(str(tmp_path / "ck" / "model.safetensors"))
    tensors["n7.raw_threshold"][0] = -1.0
    save_file(tensors, str(tmp_path / "ck" / "model.safetensors"))
    doc = json.loads((tmp_path / "ck" / "config.json").read_text())
    doc["tensors"]["sha256"] = None
    (tmp_path / "ck" / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"threshold 'n7.raw_threshold' holds 1 value\(s\) <= 0"):
        load_checkpoint(tmp_path / "ck")


def test_models_without_a_graph_are_refused_by_name():
    class Custom(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="Custom has no qnoise_config"):
        save_checkpoint(Custom(), "unused")


def test_cli_weight_step_needs_weight_bits():
    r = subprocess.run([sys.executable, "-m", "qnoise.cli", "analyze", "--weight-step", "2"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "weight_step needs weight_bits" in r.stderr
