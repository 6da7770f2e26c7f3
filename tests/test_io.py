"""Checkpoints (bit-exact round trip, quantized models, explained mismatches) and atomic results tables."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from qnoise.io import load_checkpoint, read_checkpoint_config, save_checkpoint
from qnoise.models import build_model
from qnoise.neurons import spiking_neurons
from qnoise.quant import set_temperature
from qnoise.table_files import read_parquet, sidecar_path, write_parquet_atomic

X = torch.rand(4, 3, 1, 8, 8)


def _trained_like(model):
    """Give BN running stats and parameters non-default values, as training would."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(X if model.qnoise_config["kind"] == "snn" else X[:1])
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("kind,kwargs", [
    ("snn", {"neuron": {"learn_threshold": True, "v_init": "half"}}),
    ("ann", {"act_bits": 3}),
    ("snn", {"neuron": "lif", "quantization": {"weights": {"bits": 1, "method": "sigmoid", "keep_first_last": True},
                                               "thresholds": {"bits": 4}, "membrane": {"bits": 8}}}),
    ("snn", {"quantization": {"weights": {"bits": 4, "method": "uniform", "rounding": "stochastic"}}}),
    ("snn", {"quantization": {"weights": {"bits": 3, "method": "sigmoid", "levels": "data"}}}),
])
@pytest.mark.parametrize("arch", ["cnn", "resnet"])
def test_round_trip_is_bit_exact(tmp_path, arch, kind, kwargs):
    model = _trained_like(build_model(arch, (1, 8, 8), 10, kind=kind, **kwargs))
    set_temperature(model, 7.0)
    if kwargs.get("quantization", {}).get("weights", {}).get("rounding") == "stochastic":
        model.eval()  # stochastic rounding draws anew each call: compare under one seed
    torch.manual_seed(1)
    x = X if kind == "snn" else X[:1]
    expected = model(x)
    save_checkpoint(model, tmp_path / "ck", dataset={"name": "digits"}, timesteps=4, metrics={"acc": 0.5},
                    history=[{"epoch": 1}])
    loaded = load_checkpoint(tmp_path / "ck")
    torch.manual_seed(1)
    assert torch.equal(loaded(x), expected)
    assert loaded.qnoise_config == model.qnoise_config
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    doc = loaded.qnoise_checkpoint
    assert doc["timesteps"] == 4 and doc["metrics"] == {"acc": 0.5} and doc["history"] == [{"epoch": 1}]
    assert set(doc["versions"]) >= {"torch", "qnoise", "python"}


def test_files_and_no_pickle(tmp_path):
    save_checkpoint(build_model("mlp", (1, 8, 8), 10), tmp_path / "ck")
    files = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert files == ["config.json", "model.safetensors"]  # no temporary leftovers
    assert (tmp_path / "ck" / "model.safetensors").read_bytes()[8:9] == b"{"  # safetensors header, not a pickle


def test_config_mismatch_names_file_and_key(tmp_path):
    save_checkpoint(build_model("cnn", (1, 8, 8), 10), tmp_path / "ck")
    cfg_file = tmp_path / "ck" / "config.json"
    doc = json.loads(cfg_file.read_text())
    doc["model"]["channels"] = [16, 64]
    cfg_file.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"key 'conv1.body.0.weight' has shape \(32, 1, 3, 3\) in model.safetensors "
                                         r"but config.json builds \(16, 1, 3, 3\)"):
        load_checkpoint(tmp_path / "ck")


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    save_checkpoint(build_model("mlp", (1, 8, 8), 10, batchnorm=False), tmp_path / "ck")
    cfg_file = tmp_path / "ck" / "config.json"
    doc = json.loads(cfg_file.read_text())
    doc["model"]["batchnorm"] = True
    cfg_file.write_text(json.dumps(doc))
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path / "ck")
    msg = str(err.value)
    assert "key 'fc1.body.2.running_mean' is missing from model.safetensors" in msg
    assert "key 'fc1.body.1.bias' in model.safetensors (shape (256,)) is not part of the model" in msg


def test_invalid_model_config_is_explained(tmp_path):
    save_checkpoint(build_model("mlp", (1, 8, 8), 10), tmp_path / "ck")
    cfg_file = tmp_path / "ck" / "config.json"
    doc = json.loads(cfg_file.read_text())
    doc["model"]["arch"] = "transformer"
    cfg_file.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"config.json: 'model' does not describe a qnoise model: unknown arch"):
        load_checkpoint(tmp_path / "ck")


def test_tampered_or_cut_off_tensors_are_detected(tmp_path):
    save_checkpoint(build_model("mlp", (1, 8, 8), 10), tmp_path / "ck")
    f = tmp_path / "ck" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(ValueError, match="model.safetensors does not match the SHA-256"):
        load_checkpoint(tmp_path / "ck")


@pytest.mark.parametrize("content,match", [
    (None, "does not exist"),
    ("{not json", "is not valid JSON"),
    ('{"format": "other"}', "'format' is 'other'"),
    ('{"format": "qnoise-checkpoint", "version": 99}', "version 99 is not supported"),
])
def test_bad_config_files(tmp_path, content, match):
    (tmp_path / "ck").mkdir()
    if content is not None:
        (tmp_path / "ck" / "config.json").write_text(content)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        read_checkpoint_config(tmp_path / "ck")


def test_not_a_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_checkpoint(tmp_path / "nowhere")


def test_only_qnoise_models_can_be_saved(tmp_path):
    with pytest.raises(ValueError, match="no qnoise_config"):
        save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "ck")


def test_saving_twice_overwrites_atomically(tmp_path):
    model = build_model("mlp", (1, 8, 8), 10)
    save_checkpoint(model, tmp_path / "ck")
    with torch.no_grad():
        model.readout.body[0].bias.fill_(3.0)
    save_checkpoint(model, tmp_path / "ck")
    assert float(load_checkpoint(tmp_path / "ck").readout.body[0].bias.detach()[0]) == 3.0
    assert len(list((tmp_path / "ck").iterdir())) == 2


def test_thresholds_survive_the_round_trip(tmp_path):
    model = build_model("mlp", (1, 8, 8), 10, neuron={"learn_threshold": True})
    for i, (_, m) in enumerate(spiking_neurons(model)):
        m.set_threshold(0.25 * (i + 1))
    save_checkpoint(model, tmp_path / "ck")
    got = [float(m.threshold.detach()) for _, m in spiking_neurons(load_checkpoint(tmp_path / "ck"))]
    assert got == [0.25, 0.5]


def test_parquet_with_sidecar(tmp_path):
    df = pd.DataFrame({"layer": ["act1", "<output>"], "t": [1, 4], "metric": ["sqnr_db", "accuracy"],
                       "value": [12.5, 0.97]})
    path = write_parquet_atomic(df, tmp_path / "res" / "results.parquet", {"seed": 3, "config": {"bits": 2}})
    back, side = read_parquet(path)
    pd.testing.assert_frame_equal(back, df)
    assert side["seed"] == 3 and side["config"] == {"bits": 2} and "torch" in side["versions"]
    assert sidecar_path(path) == Path(str(path) + ".json")
    import pyarrow.parquet as pq

    assert json.loads(pq.read_schema(path).metadata[b"qnoise"])["seed"] == 3
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.parquet", "results.parquet.json"]


def test_a_table_and_its_sidecar_read_as_one_even_after_a_crash_between_the_writes(tmp_path, monkeypatch):
    """The table is replaced, then the process dies before its JSON copy is: the new table comes back with the
    metadata written inside it, not the old run's."""
    import qnoise.table_files as tf

    path = write_parquet_atomic(pd.DataFrame({"value": [1.0]}), tmp_path / "r.parquet", {"run": "old"})

    def crash(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(tf, "atomic_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        write_parquet_atomic(pd.DataFrame({"value": [9.0, 9.0]}), path, {"run": "new"})
    back, side = read_parquet(path)
    assert back["value"].tolist() == [9.0, 9.0] and side["run"] == "new"


# ---------------------------------------------------------------- hardening (issue 12)

def test_dumps_json_writes_null_for_non_finite_floats():
    from qnoise.files import dumps_json, json_safe

    obj = {"a": float("nan"), "b": [1.5, float("inf"), (float("-inf"), 2)], "c": "NaN", "d": 3}
    assert json_safe(obj) == {"a": None, "b": [1.5, None, [None, 2]], "c": "NaN", "d": 3}
    text = dumps_json(obj, sort_keys=True)
    assert "NaN" not in text.replace('"NaN"', "") and "Infinity" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(c))


def test_tensor_header_reads_no_tensor_data(tmp_path):
    from qnoise.io import save_tensors, tensor_header

    save_tensors(tmp_path / "t.safetensors", {"w": torch.zeros(3, 4), "n": torch.zeros(2, dtype=torch.int64)})
    assert tensor_header(tmp_path / "t.safetensors") == {"w": ((3, 4), torch.float32), "n": ((2,), torch.int64)}
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(ValueError, match="bad.safetensors is not a readable safetensors file"):
        tensor_header(tmp_path / "bad.safetensors")


def test_check_header_compares_plain_and_parametrized_names(tmp_path):
    from qnoise.io import check_header

    model = build_model("mlp", (1, 8, 8), 10, hidden=[16], quantization={"weights": {"bits": 4}})
    save_checkpoint(model, tmp_path / "ck")
    doc = read_checkpoint_config(tmp_path / "ck")
    header = check_header(tmp_path / "ck" / "config.json", doc["model"], tmp_path / "ck" / "model.safetensors")
    assert "fc1.body.1.parametrizations.weight.original" in header
    wider = {**doc["model"], "hidden": [17]}
    with pytest.raises(ValueError, match=r"'fc1.body.1.parametrizations.weight.original' has shape \(16, 64\)"):
        check_header(tmp_path / "ck" / "config.json", wider, tmp_path / "ck" / "model.safetensors")


def test_file_inside_gives_one_message_for_missing_and_outside(tmp_path):
    from qnoise.files import file_inside

    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"x")
    (tmp_path / "outside.bin").write_bytes(b"x")
    assert file_inside(tmp_path / "ck", "model.safetensors", "tensors.file") == tmp_path / "ck" / "model.safetensors"
    for name in ("../outside.bin", str(tmp_path / "outside.bin"), "missing.bin", "../missing.bin", None, 3, "."):
        with pytest.raises(FileNotFoundError) as err:
            file_inside(tmp_path / "ck", name, "tensors.file")
        assert str(err.value) == f"tensors.file {name!r} is not a file inside {tmp_path / 'ck'}"


def test_a_cut_off_file_is_reported_by_its_sha_before_its_header(tmp_path):
    save_checkpoint(build_model("mlp", (1, 8, 8), 10), tmp_path / "ck")
    f = tmp_path / "ck" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:100])  # the header itself is cut off
    with pytest.raises(ValueError, match="does not match the SHA-256"):
        load_checkpoint(tmp_path / "ck")


def test_is_results_table(tmp_path):
    from qnoise.table_files import is_results_table

    write_parquet_atomic(pd.DataFrame({"value": [1.0]}), tmp_path / "mine.parquet")
    pd.DataFrame({"value": [1.0]}).to_parquet(tmp_path / "theirs.parquet")
    (tmp_path / "text.parquet").write_text("hello")
    assert is_results_table(tmp_path / "mine.parquet")
    assert not is_results_table(tmp_path / "theirs.parquet") and not is_results_table(tmp_path / "text.parquet")
    assert not is_results_table(tmp_path / "missing.parquet")


def test_a_model_its_config_does_not_rebuild_is_refused_before_saving(tmp_path):
    """Weights quantized with quantize_weights (not recorded in the model's config) were saved, and load_checkpoint
    then refused the files ('parametrizations.weight.original' is not part of the model config.json builds)."""
    from qnoise.models import apply_quantization, build_model
    from qnoise.quant import quantize_weights

    model = build_model("mlp", (1, 8, 8), 10, hidden=[16])
    quantize_weights(model, 4)
    with pytest.raises(ValueError, match=r"qnoise_config does not rebuild it .*parametrizations.weight.original.*"
                                         r"apply_quantization"):
        save_checkpoint(model, tmp_path / "ck", timesteps=2)
    assert not (tmp_path / "ck").exists()  # nothing written
    recorded = build_model("mlp", (1, 8, 8), 10, hidden=[16])
    apply_quantization(recorded, {"weights": {"bits": 4}})
    save_checkpoint(recorded, tmp_path / "ok", timesteps=2)
    load_checkpoint(tmp_path / "ok")
