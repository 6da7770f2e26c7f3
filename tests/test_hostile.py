"""Hostile and careless inputs (issue 12), built on the fly: checkpoints with non-finite or impossible values,
tensors of another dtype, configs asking for huge models, paths escaping the checkpoint folder, data options
that would download or write elsewhere, pickles, training edge cases and the dashboard's folder rules.
Each case must end in a clear refusal (naming the file, tensor or option) or in the right result, never in
a silent wrong number, a traceback or an allocation the input did not pay for."""

from __future__ import annotations

import gc
import json
import math
import os
import pickle
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from qnoise.io import load_checkpoint, read_checkpoint_config, save_checkpoint
from qnoise.layers import MultiStep
from qnoise.models import build_model

# ------------------------------------------------------------------------------------------------ helpers


def snn_checkpoint(path: Path, **kwargs) -> Path:
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, hidden=[16], **kwargs)
    return save_checkpoint(model, path, dataset={"name": "digits", "timesteps": 4, "options": {}}, timesteps=4)


def ann_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, kind="ann", act_bits=2, hidden=[16])
    return save_checkpoint(model, path, dataset={"name": "digits", "timesteps": 1, "options": {}}, timesteps=1)


def rewrite(ck: Path, change=None, config=None) -> Path:
    """Change the tensors (``change(dict)`` in place) and/or the config (``config(doc)``), keeping the
    recorded SHA-256 consistent: what a careless or hostile hand-edit produces."""
    from qnoise.io import CONFIG_FILE, MODEL_FILE

    doc = json.loads((ck / CONFIG_FILE).read_text())
    if change is not None:
        tensors = load_file(ck / MODEL_FILE)
        change(tensors)
        save_file(tensors, ck / MODEL_FILE)
        import hashlib

        doc["tensors"]["sha256"] = hashlib.sha256((ck / MODEL_FILE).read_bytes()).hexdigest()
    if config is not None:
        config(doc)
    (ck / CONFIG_FILE).write_text(json.dumps(doc))
    return ck


def setter(key: str, index, value: float):
    def change(t):
        t[key].view(-1)[index] = value
    return change


# ------------------------------------------------------------------------------ non-finite and impossible values

VALUE_CASES = [
    # (kind, tensor key, index, value, words the message must hold)
    ("snn", "fc1.body.1.weight", 0, math.nan, ["fc1.body.1.weight", "1 non-finite"]),
    ("snn", "fc1.body.1.weight", 5, math.inf, ["fc1.body.1.weight", "1 non-finite"]),
    ("snn", "readout.body.0.bias", 0, -math.inf, ["readout.body.0.bias", "1 non-finite"]),
    ("snn", "act1.raw_threshold", 0, math.nan, ["act1.raw_threshold", "non-finite"]),
    ("snn", "act1.raw_threshold", 0, 0.0, ["act1.raw_threshold", "<= 0"]),
    ("snn", "act1.raw_threshold", 0, -1.0, ["act1.raw_threshold", "<= 0"]),
    ("snn", "fc1.body.2.running_var", 3, -0.5, ["fc1.body.2.running_var", "negative"]),
    ("snn", "fc1.body.2.running_mean", 0, math.nan, ["fc1.body.2.running_mean", "non-finite"]),
    ("ann", "act1.alpha", 0, math.nan, ["act1.alpha", "non-finite"]),
    ("ann", "act1.alpha", 0, 0.0, ["act1.alpha", "<= 0"]),
    ("ann", "act1.alpha", 0, -2.0, ["act1.alpha", "<= 0"]),
    ("quantized", "fc1.body.1.parametrizations.weight.original", 2, math.nan,
     ["fc1.body.1.parametrizations.weight.original", "non-finite"]),
    ("quantized", "act1.parametrizations.raw_threshold.original", 0, -0.25,
     ["act1.parametrizations.raw_threshold.original", "<= 0"]),
]


def make(kind: str, path: Path) -> Path:
    if kind == "ann":
        return ann_checkpoint(path)
    if kind == "quantized":
        return snn_checkpoint(path, quantization={"weights": {"bits": 4}, "thresholds": {"bits": 4}})
    return snn_checkpoint(path)


@pytest.mark.parametrize("kind,key,index,value,words", VALUE_CASES)
def test_bad_values_are_refused_naming_tensor_and_count(tmp_path, kind, key, index, value, words):
    ck = rewrite(make(kind, tmp_path / "ck"), setter(key, index, value))
    with pytest.raises(ValueError) as err:
        load_checkpoint(ck)
    for word in words:
        assert word in str(err.value)
    assert "allow_nonfinite" in str(err.value)
    with pytest.warns(UserWarning, match=key.replace(".", r"\.")):  # forensics: loads when asked to
        model = load_checkpoint(ck, allow_nonfinite=True)
    got = model.state_dict()[key].view(-1)[index]
    assert (math.isnan(value) and torch.isnan(got)) or float(got) == value


def test_every_nonfinite_value_is_counted(tmp_path):
    def change(t):
        t["fc1.body.1.weight"][:3, :2] = math.nan
    ck = rewrite(snn_checkpoint(tmp_path / "ck"), change)
    with pytest.raises(ValueError, match=r"'fc1.body.1.weight' holds 6 non-finite value\(s\) \(NaN or Inf\) of 1024"):
        load_checkpoint(ck)


def test_convert_refuses_an_ann_with_a_nan_weight_or_alpha(tmp_path):
    from qnoise.train import convert_checkpoint

    for key in ("fc1.body.1.weight", "act1.alpha"):
        ann = rewrite(ann_checkpoint(tmp_path / f"ann-{key}"), setter(key, 0, math.nan))
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            convert_checkpoint(ann, tmp_path / f"snn-{key}", device="cpu", progress=False)
        assert not (tmp_path / f"snn-{key}" / "config.json").exists()


# ------------------------------------------------------------------------------------------------ dtypes

@pytest.mark.parametrize("dtype,ok", [(torch.int8, False), (torch.int64, False), (torch.uint8, False),
                                      (torch.bool, False), (torch.float64, False), (torch.float16, True),
                                      (torch.bfloat16, True)])
def test_only_exact_casts(tmp_path, dtype, ok):
    def change(t):
        t["fc1.body.1.weight"] = (t["fc1.body.1.weight"] * 4).round().to(dtype)
    ck = rewrite(snn_checkpoint(tmp_path / "ck"), change)
    if ok:
        model = load_checkpoint(ck)
        assert model.state_dict()["fc1.body.1.weight"].dtype == torch.float32
        return
    with pytest.raises(ValueError, match=r"'fc1.body.1.weight' is .* but the model holds float32"):
        load_checkpoint(ck)


# ------------------------------------------------------------------------------------------- oversized configs

@pytest.fixture
def no_build(monkeypatch):
    """Fail if a checkpoint's model is built for real (the config must be checked before that)."""
    import qnoise.models

    def refuse(*_a, **_k):
        raise AssertionError("the model was built before its config was checked against the tensor file")
    monkeypatch.setattr(qnoise.models, "model_from_config", refuse)


@pytest.mark.parametrize("field,value,match", [
    ("hidden", [10**7], "shape"),                  # 2.4 KB of config asking for ~10 GB
    ("hidden", [16, 10**6], "missing"),
    ("num_classes", 10**6, "shape"),
    ("input_shape", [1, 800, 800], "shape"),
])
def test_a_config_larger_than_its_tensors_is_refused_before_building(tmp_path, no_build, field, value, match):
    ck = rewrite(snn_checkpoint(tmp_path / "ck"), config=lambda d: d["model"].update({field: value}))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        load_checkpoint(ck)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("field,value", [
    ("hidden", "abc"), ("hidden", [0]), ("hidden", [16.5]), ("hidden", [1] * 1000), ("batchnorm", "yes"),
    ("input_shape", [0, 8, 8]), ("input_shape", "1,8,8"), ("input_shape", [10**5, 10**5]), ("num_classes", 0),
    ("num_classes", "10"), ("act_alpha", math.nan), ("quantization", {"weights": 5}),
    ("quantization", {"weights": {"bits": "4"}}), ("neuron", {"threshold": "high"}), ("neuron", 7), ("arch", 3),
    ("unknown_option", 1),
])
def test_bad_model_configs_are_explained_not_tracebacks(tmp_path, field, value):
    ck = rewrite(snn_checkpoint(tmp_path / "ck"), config=lambda d: d["model"].update({field: value}))
    with pytest.raises(ValueError, match="config.json"):
        load_checkpoint(ck)


def _graph_checkpoint(path: Path) -> Path:
    """An imported model (a GraphNet: conv, batch norm, neuron, pooling, flatten, linear) saved as a checkpoint."""
    from qnoise.models.graph import GraphNet
    from qnoise.neuron_kinds import Leaky
    from qnoise.pooling import AvgPool2d

    nodes = {"conv": MultiStep(nn.Conv2d(2, 4, 3, padding=1)), "bn": MultiStep(nn.BatchNorm2d(4)),
             "act": Leaky(1.0, "beta", beta=0.5), "pool": MultiStep(AvgPool2d(2)), "flat": MultiStep(nn.Flatten()),
             "fc": MultiStep(nn.Linear(64, 10))}
    names = list(nodes)
    net = GraphNet(nodes, list(zip(names[:-1], names[1:])), [2, 8, 8], 10, {"library": "test"}).eval()
    return save_checkpoint(net, path, timesteps=2)


@pytest.mark.parametrize("node,field,value,words", [
    ("fc", "in_features", -1, ["'fc'", "in_features", "-1"]),
    ("conv", "stride", [0, 0], ["'conv'", "stride", "[0, 0]"]),
    ("conv", "padding", -1, ["'conv'", "padding"]),
    ("pool", "kernel_size", -1, ["'pool'", "kernel_size"]),
    ("bn", "eps", "x", ["'bn'", "eps", "'x'"]),
    ("bn", "eps", -1.0, ["'bn'", "eps"]),
    ("bn", "momentum", 2.0, ["'bn'", "momentum"]),
    ("flat", "start_dim", "a", ["'flat'", "start_dim"]),
    ("fc", "bias", "yes", ["'fc'", "bias"]),
])
def test_bad_layer_fields_of_an_imported_model_are_named_at_load(tmp_path, node, field, value, words):
    """Each would load and fail at the first forward with torch's message (or a bare RuntimeError), naming
    neither the file nor the field."""
    ck = rewrite(_graph_checkpoint(tmp_path / "ck"),
                 config=lambda d: d["model"]["graph"]["nodes"][node].update({field: value}))
    with pytest.raises(ValueError, match="config.json") as err:
        load_checkpoint(ck)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_build_model_refuses_a_model_over_the_memory_budget(monkeypatch):
    monkeypatch.setenv("QNOISE_MAX_GIB", "0.01")
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"parameters.*MiB.*QNOISE_MAX_GIB"):
        build_model("mlp", (2, 34, 34), 10, hidden=[4096, 4096])
    assert time.perf_counter() - start < 2
    build_model("mlp", (1, 8, 8), 10, hidden=[16])  # a small one still builds


# ---------------------------------------------------------------------------------- paths outside the folder

def _escape_cases(tmp_path: Path) -> dict[str, str]:
    other = snn_checkpoint(tmp_path / "other")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    return {"parent": "../other/model.safetensors", "absolute": str(other / "model.safetensors"),
            "system": "/etc/passwd", "secret": str(secret), "missing": "nothing.safetensors",
            "missing-outside": "../nowhere/model.safetensors", "empty": "", "nul": "a\x00b"}


def test_tensors_file_cannot_leave_the_checkpoint_folder(tmp_path):
    messages = {}
    for name, target in _escape_cases(tmp_path).items():
        ck = rewrite(snn_checkpoint(tmp_path / f"ck-{name}"), config=lambda d, t=target: d["tensors"].update(file=t))
        with pytest.raises(FileNotFoundError) as err:
            load_checkpoint(ck)
        messages[name] = str(err.value).replace(repr(target), "<name>").replace(str(ck), "<ck>")
    assert len(set(messages.values())) == 1, messages  # the same words for missing and existing: nothing leaks
    assert "is not a file inside" in next(iter(messages.values()))


def test_a_symlinked_tensor_file_pointing_outside_is_refused(tmp_path):
    other = snn_checkpoint(tmp_path / "other")
    ck = snn_checkpoint(tmp_path / "ck")
    (ck / "model.safetensors").unlink()
    (ck / "model.safetensors").symlink_to(other / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="is not a file inside"):
        load_checkpoint(ck)


def test_resume_reads_its_optimizer_file_only_inside_last(tmp_path):
    from qnoise.train import TrainConfig, train

    cfg = TrainConfig(model="mlp", model_options={"hidden": [16]}, mode="ann", timesteps=1, epochs=1,
                      progress=False, device="cpu", val_split=None, test_split=None, data_options={"limit": 40})
    out = tmp_path / "run"
    train(cfg, out)
    rewrite(out / "last", config=lambda d: d["optimizer"].update(file="/etc/passwd"))
    with pytest.raises(FileNotFoundError, match="optimizer.file"):
        train(cfg.replace(epochs=2), out)


# ------------------------------------------------------------------------------------------------ data options

@pytest.mark.parametrize("options,match", [
    ({"download": True}, "'download' is not allowed"), ({"root": "/"}, "'root' is not allowed"),
    ({"cache_dir": "/tmp/elsewhere"}, "'cache_dir' is not allowed"), ({"bogus": 1}, "unknown option 'bogus'"),
    ({"downsample": "2"}, "downsample='2' must be int"), ({"clip": [1]}, "clip"), ("download", "JSON object"),
])
def test_checkpoint_data_options_are_an_allow_list(tmp_path, monkeypatch, options, match):
    import qnoise.data

    monkeypatch.setattr(qnoise.data, "tonic_download", lambda *a, **k: pytest.fail("a checkpoint started a download"))
    ck = rewrite(snn_checkpoint(tmp_path / "ck"), config=lambda d: d["dataset"].update(options=options))
    with pytest.raises(ValueError, match=match):
        read_checkpoint_config(ck)
    with pytest.raises(ValueError, match="dataset.options"):
        load_checkpoint(ck)


@pytest.mark.parametrize("key", ["root", "data_root", "download", "cache_dir"])
def test_dataset_record_cannot_name_where_data_comes_from(tmp_path, key):
    ck = rewrite(snn_checkpoint(tmp_path / "ck"), config=lambda d: d["dataset"].update({key: "/etc"}))
    with pytest.raises(ValueError, match=f"dataset.{key} is not allowed"):
        load_checkpoint(ck)


@pytest.mark.parametrize("where,value", [("timesteps", 0), ("timesteps", -4), ("timesteps", 10**6),
                                         ("timesteps", "8"), ("dataset.timesteps", 0),
                                         ("dataset.input_mode", "mean"), ("dataset.name", 5)])
def test_recorded_timesteps_and_modes_are_checked(tmp_path, where, value):
    def edit(d):
        if where.startswith("dataset."):
            d["dataset"][where.split(".")[1]] = value
        else:
            d[where] = value
    ck = rewrite(snn_checkpoint(tmp_path / "ck"), config=edit)
    with pytest.raises(ValueError, match=where.split(".")[-1]):
        load_checkpoint(ck)


def test_training_data_options_are_checked_up_front():
    from qnoise.train import TrainConfig

    for options, match in (({"download": True}, "download"), ({"root": "/data"}, "root"),
                           ({"timesteps": 3}, "unknown option")):
        with pytest.raises(ValueError, match=match):
            TrainConfig(data_options=options)


# ------------------------------------------------------------------------------------------------ pickles

@pytest.mark.parametrize("payload", ["pickle", "torch.save", "pickle-in-config"])
def test_pickles_are_never_loaded(tmp_path, payload):
    ck = snn_checkpoint(tmp_path / "ck")
    if payload == "pickle":
        (ck / "model.safetensors").write_bytes(pickle.dumps({"x": 1}))
    elif payload == "torch.save":
        torch.save(build_model("mlp", (1, 8, 8), 10, hidden=[16]).state_dict(), ck / "model.safetensors")
    else:
        (ck / "config.json").write_bytes(pickle.dumps({"format": "qnoise-checkpoint"}))
    with pytest.raises(ValueError):
        load_checkpoint(ck)


# ------------------------------------------------------------------------------------------------ strict JSON

def test_json_is_never_written_with_nan(tmp_path):
    from qnoise.files import atomic_write_json
    from qnoise.table_files import write_parquet_atomic

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))

    atomic_write_json(tmp_path / "a.json", {"loss": math.nan, "list": [math.inf, 1.0], "nested": {"x": -math.inf}})
    assert strict((tmp_path / "a.json").read_text()) == {"loss": None, "list": [None, 1.0], "nested": {"x": None}}
    import pandas as pd

    write_parquet_atomic(pd.DataFrame({"value": [1.0]}), tmp_path / "t.parquet", {"score": math.nan})
    assert strict((tmp_path / "t.parquet.json").read_text())["score"] is None


def test_a_checkpoint_whose_metrics_hold_nan_still_saves_strict_json(tmp_path):
    model = build_model("mlp", (1, 8, 8), 10, hidden=[16])
    save_checkpoint(model, tmp_path / "ck", metrics={"loss": math.nan}, history=[{"loss": math.inf}])
    doc = json.loads((tmp_path / "ck" / "config.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert doc["metrics"]["loss"] is None and doc["history"][0]["loss"] is None


# ------------------------------------------------------------------------------------------------ timesteps

@pytest.mark.parametrize("timesteps", [0, -1, 10**5, 2.5, True])
def test_timesteps_zero_or_absurd_is_refused_not_replaced(timesteps):
    from qnoise.train.evaluation import data_plan

    with pytest.raises(ValueError, match="timesteps"):
        data_plan({"timesteps": 3, "dataset": {"name": "digits", "timesteps": 3}}, timesteps, None)


def test_evaluate_model_refuses_timesteps_zero(tmp_path):
    from qnoise.train.evaluation import evaluate_model

    model = load_checkpoint(snn_checkpoint(tmp_path / "ck"))
    with pytest.raises(ValueError, match="timesteps"):
        evaluate_model(model, "digits", "test", timesteps=0)


def test_evaluation_batches_shrink_to_fit_the_budget(tmp_path, monkeypatch):
    from qnoise.train.budget import fit_batch

    model = load_checkpoint(snn_checkpoint(tmp_path / "ck"))
    assert fit_batch(model, 8, 256) == 256
    monkeypatch.setenv("QNOISE_MAX_GIB", str(2**-20))  # 1 KiB
    with pytest.raises(ValueError, match="one sample over T = 1000"):
        fit_batch(model, 1000, 256)
    monkeypatch.setenv("QNOISE_MAX_GIB", str(64 * 4 * 4 * 8 * 10 / 2**30))
    assert 1 <= fit_batch(model, 8, 256) < 256


def test_a_split_too_large_for_memory_is_refused_before_its_frames_are_made(monkeypatch):
    from qnoise.train.splits import load_split

    monkeypatch.setenv("QNOISE_MAX_GIB", "0.001")
    with pytest.raises(ValueError, match=r"digits/train in memory .* needs 280.8 MiB, more than the 1.0 MiB allowed.*QNOISE_MAX_GIB"):
        load_split("digits", "train", 1000)


# ------------------------------------------------------------------------------------------------ training

def test_a_last_batch_of_one_sample_joins_the_previous_batch():
    from qnoise.train import Batches

    b = Batches(torch.zeros(65, 2, 3), torch.arange(65), 64, shuffle=True)
    sizes = [len(y) for _, y in b]
    assert sizes == [65] and len(b) == 1
    assert sorted(torch.cat([y for _, y in b]).tolist()) == list(range(65))
    assert [len(y) for _, y in Batches(torch.zeros(129, 1), torch.arange(129), 64)] == [64, 65]
    assert [len(y) for _, y in Batches(torch.zeros(66, 1), torch.arange(66), 64)] == [64, 2]
    assert [len(y) for _, y in Batches(torch.zeros(1, 1), torch.arange(1), 64)] == [1]


def test_training_with_a_last_batch_of_one_sample(tmp_path):
    from qnoise.train import TrainConfig, train

    cfg = TrainConfig(model="mlp", model_options={"hidden": [16]}, mode="direct", timesteps=2, epochs=1,
                      batch_size=32, progress=False, device="cpu", val_split=None, test_split=None,
                      data_options={"limit": 65})  # 65 = 2 x 32 + 1
    model = train(cfg, tmp_path / "run")
    assert model.qnoise_checkpoint["history"][0]["loss"] > 0


def test_batch_size_one_with_batchnorm1d_is_refused_up_front(tmp_path):
    from qnoise.train import TrainConfig, train

    cfg = TrainConfig(model="mlp", model_options={"hidden": [16]}, timesteps=2, epochs=1, batch_size=1,
                      progress=False, device="cpu", val_split=None, test_split=None, data_options={"limit": 20})
    with pytest.raises(ValueError, match="BatchNorm1d.*batch_size >= 2"):
        train(cfg, tmp_path / "run")


@pytest.mark.parametrize("kwargs,match", [
    ({"epochs": 0}, "epochs must be an integer >= 1, got 0"), ({"timesteps": 10**6}, "timesteps"),
    ({"batch_size": 0}, "batch_size"), ({"weight_bits": 0}, "weight_bits"), ({"state_bits": 64}, "state_bits"),
    ({"model_options": "wide"}, "model_options"),
])
def test_training_options_refused_up_front(kwargs, match):
    from qnoise.train import TrainConfig

    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_training_memory_is_checked_before_training(tmp_path, monkeypatch):
    from qnoise.train import TrainConfig, run, train

    monkeypatch.setattr(run, "train_epoch", lambda *a, **k: pytest.fail("training started"))
    monkeypatch.setenv("QNOISE_MAX_GIB", "0.001")
    cfg = TrainConfig(model="mlp", model_options={"hidden": [256]}, timesteps=16, epochs=1, batch_size=4096,
                      progress=False, device="cpu", val_split=None, test_split=None, data_options={"limit": 20})
    with pytest.raises(ValueError, match="training batch"):
        train(cfg, tmp_path / "run")


# ------------------------------------------------------------------------------------------------ outputs

def _prepare_out(tmp_path: Path, what: str) -> Path:
    out = tmp_path / "out"
    if what == "file":
        out.write_text("my notes")
    elif what == "folder with files":
        out.mkdir()
        (out / "thesis.tex").write_text("...")
    elif what == "foreign config":
        out.mkdir()
        (out / "config.json").write_text('{"format": "something else"}')
    elif what == "config is a folder":
        (out / "config.json").mkdir(parents=True)
    elif what == "under a file":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "out"
    return out


OUT_CASES = ["file", "folder with files", "foreign config", "config is a folder", "under a file"]


@pytest.mark.parametrize("what", OUT_CASES)
def test_train_checks_its_output_before_any_work(tmp_path, monkeypatch, what):
    from qnoise.train import TrainConfig, run

    monkeypatch.setattr(run, "load_split", lambda *a, **k: pytest.fail("data was loaded before --out was checked"))
    out = _prepare_out(tmp_path, what)
    with pytest.raises(ValueError, match="out"):
        run.train(TrainConfig(progress=False, epochs=1), out)


@pytest.mark.parametrize("what", [*OUT_CASES, "the source itself"])
def test_convert_checks_its_output_before_any_work(tmp_path, monkeypatch, what):
    from qnoise.train import convert_run

    ann = ann_checkpoint(tmp_path / "ann")
    monkeypatch.setattr(convert_run, "load_checkpoint", lambda *a, **k: pytest.fail("work started"))
    out = ann if what == "the source itself" else _prepare_out(tmp_path, what)
    with pytest.raises(ValueError, match="out"):
        convert_run.convert_checkpoint(ann, out, device="cpu", progress=False)


def test_an_existing_checkpoint_folder_may_be_replaced(tmp_path):
    from qnoise.io import check_output_folder

    ck = snn_checkpoint(tmp_path / "ck")
    (ck / ".model.safetensors.abc.tmp").write_text("left by a killed save")
    assert check_output_folder(ck) == ck
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"


def test_results_table_output_refuses_foreign_files_unless_forced(tmp_path):
    import pandas as pd

    from qnoise.table_files import check_table_output, write_parquet_atomic

    mine = write_parquet_atomic(pd.DataFrame({"value": [1.0]}), tmp_path / "mine.parquet")
    assert check_table_output(mine) == mine
    foreign = tmp_path / "data.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(foreign)
    notes = tmp_path / "notes.txt"
    notes.write_text("precious")
    for path in (foreign, notes):
        with pytest.raises(ValueError, match="not a qnoise results table; pass --force"):
            check_table_output(path)
        assert check_table_output(path, force=True) == path
    (tmp_path / "lonely.parquet.json").write_text("{}")
    with pytest.raises(ValueError, match="would be overwritten"):
        check_table_output(tmp_path / "lonely.parquet")
    with pytest.raises(ValueError, match="is a folder"):
        check_table_output(tmp_path)


# ------------------------------------------------------------------------------------------------ dashboard

@pytest.fixture
def dash(tmp_path, monkeypatch):
    """A sample folder with a good checkpoint, and a folder outside it."""
    sample = tmp_path / "sample"
    snn_checkpoint(sample / "good")
    outside = tmp_path / "outside"
    snn_checkpoint(outside / "other")
    monkeypatch.setenv("QNOISE_SAMPLE_DIR", str(sample))
    monkeypatch.delenv("QNOISE_DASHBOARD_DATA", raising=False)
    return sample, outside


def test_dashboard_opens_only_allowed_folders(dash, tmp_path, monkeypatch):
    from dashboard import sources

    sample, outside = dash
    assert sources.scan(sample).checkpoints
    messages = set()
    for path in (outside, tmp_path / "missing", sample / ".." / "outside", "/etc", sample / "../../.."):
        with pytest.raises(ValueError) as err:
            sources.scan(path)
        assert "outside the folders this dashboard may open" in str(err.value)
        messages.add(str(err.value).replace(str(path), "<path>"))
        assert sources.stamp(path) == 0.0
    assert len(messages) == 1  # the same message whether the folder exists or not
    with pytest.raises(ValueError, match="outside"):
        sources.read_results(outside)
    monkeypatch.setenv("QNOISE_DASHBOARD_DATA", os.pathsep.join([str(outside), str(tmp_path / "more")]))
    assert "other" in sources.scan(outside).checkpoints  # named at start-up: allowed


def test_dashboard_does_not_follow_links_out(dash):
    from dashboard import sources

    sample, outside = dash
    (sample / "link").symlink_to(outside / "other")
    assert list(sources.scan(sample).checkpoints) == ["good"]
    with pytest.raises(ValueError, match="outside"):
        sources.scan(sample / "link")


def test_dashboard_command_passes_the_allowed_folders(tmp_path, monkeypatch):
    from qnoise.cli import build_parser
    from qnoise.commands import dashboard

    calls = []
    monkeypatch.setattr(dashboard.subprocess, "call", lambda cmd, env: calls.append((cmd, env)) or 0)
    (tmp_path / "a").mkdir()
    args = build_parser().parse_args(["dashboard", "--data", str(tmp_path / "a"), "--data", str(tmp_path)])
    assert args.func(args) == 0
    cmd, env = calls[0]
    assert env["QNOISE_DASHBOARD_DATA"].split(os.pathsep) == [str(tmp_path / "a"), str(tmp_path)]
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == "128"  # a file a bit over 64 MiB reaches the app
    args = build_parser().parse_args(["dashboard", "--data", str(tmp_path / "missing")])
    with pytest.raises(FileNotFoundError, match="--data"):
        args.func(args)


def test_uploads_are_deleted_when_their_session_ends(dash, tmp_path):
    from dashboard import sources

    sample, _ = dash
    good = {n: (sample / "good" / n).read_bytes() for n in sources.UPLOAD_NAMES}

    class Session:  # stands for Streamlit's SessionState: the upload lives as long as it does
        pass

    session, other = Session(), Session()
    folder = sources.save_upload(good, parent=tmp_path, owner=session)
    assert folder.is_dir() and sources.session_uploads(session) == [folder]
    assert sources.session_uploads(other) == []
    del session
    gc.collect()
    assert not folder.exists()


def test_uploads_of_an_apptest_session_are_deleted_with_it(dash, tmp_path):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    sample, _ = dash
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py"), default_timeout=120)
    at.switch_page("views/learn.py")
    at.run()
    at.sidebar.file_uploader(key="upload_files").set_value(
        [("config.json", (sample / "good" / "config.json").read_bytes(), "application/json"),
         ("model.safetensors", (sample / "good" / "model.safetensors").read_bytes(), "application/octet-stream")]).run()
    at.sidebar.button(key="upload_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    folder = Path(at.session_state["uploads"]["1"])
    assert folder.is_dir()
    del at
    gc.collect()
    assert not folder.exists()


def test_upload_size_is_explained_in_mib(dash, tmp_path):
    from dashboard import sources

    sample, _ = dash
    good = {n: (sample / "good" / n).read_bytes() for n in sources.UPLOAD_NAMES}
    big = {**good, "model.safetensors": b"\0" * (2 * 2**20 + 1)}
    with pytest.raises(ValueError, match=r"model.safetensors is 2.0 MiB; the limit is 1 MiB"):
        sources.save_upload(big, max_bytes=2**20, parent=tmp_path)
    with pytest.raises(ValueError, match=r"missing \['model.safetensors'\].*over the 64 MiB limit"):
        sources.save_upload({"config.json": good["config.json"]}, parent=tmp_path)


@pytest.mark.parametrize("broken", ["no config", "config not JSON", "config a list", "garbage tensors",
                                    "tensors escape", "nan weight"])
def test_a_broken_checkpoint_beside_a_good_one(dash, broken):
    from dashboard import sources

    sample, outside = dash
    bad = sample / "a-broken"  # sorts before "good"
    if broken == "nan weight":
        rewrite(snn_checkpoint(bad), setter("fc1.body.1.weight", 0, math.nan))
    else:
        bad.mkdir()
        (bad / "model.safetensors").write_bytes((sample / "good" / "model.safetensors").read_bytes())
        config = (sample / "good" / "config.json").read_text()
        if broken == "config not JSON":
            (bad / "config.json").write_text("{")
        elif broken == "config a list":
            (bad / "config.json").write_text("[1, 2]")
        elif broken == "garbage tensors":
            (bad / "config.json").write_text(config)
            (bad / "model.safetensors").write_bytes(b"garbage")
        elif broken == "tensors escape":
            doc = json.loads(config)
            doc["tensors"]["file"] = str(outside / "other" / "model.safetensors")
            (bad / "config.json").write_text(json.dumps(doc))
    cat = sources.scan(sample)
    assert not cat.eval_batches  # a checkpoint's tensors are never taken for an evaluation batch
    assert next(iter(cat.checkpoints)) in ("good", "a-broken") and "good" in cat.checkpoints
    if broken in ("garbage tensors", "tensors escape"):
        assert list(cat.checkpoints)[0] == "good"  # the one that loads is the default choice
    load_checkpoint(cat.checkpoints["good"])


def test_a_results_table_deleted_after_opening(dash):
    import pandas as pd

    from dashboard import sources
    from qnoise.table_files import write_parquet_atomic

    sample, _ = dash
    table = write_parquet_atomic(pd.DataFrame({c: [1] for c in sources.RESULT_COLUMNS}), sample / "t.parquet")
    os.utime(table, (1e9, 1e9))  # older than the checkpoint: the newest file does not change when it goes
    before = sources.stamp(sample)
    assert "t.parquet" in sources.scan(sample).results
    table.unlink()
    assert sources.stamp(sample) != before  # the cached catalog is refreshed
    with pytest.raises(FileNotFoundError, match="no longer exists"):
        sources.read_results(table)
