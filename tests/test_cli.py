"""Command-line arguments a careless user gives (issue 12): each is refused before any work with a message
naming the flag and what it expects (exit status 2, no traceback); strict JSON out of ``evaluate --json``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from qnoise.cli import main
from qnoise.io import save_checkpoint
from qnoise.models import build_model

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


@pytest.fixture(scope="module")
def snn(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, hidden=[16], neuron={"v_init": "half"})
    path = tmp_path_factory.mktemp("cli") / "snn"
    return str(save_checkpoint(model, path, dataset={"name": "digits", "timesteps": 4, "options": {}}, timesteps=4))


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a command gets as far as loading data, analysing or training."""
    import qnoise.probe
    import qnoise.sweep
    from qnoise.train import convert_run, evaluation, run

    def stop(*_a, **_k):
        pytest.fail("the command started working before refusing its arguments")
    for module, name in ((run, "load_split"), (evaluation, "load_split"), (convert_run, "load_checkpoint"),
                         (qnoise.probe, "analyze"), (qnoise.sweep, "sweep")):
        monkeypatch.setattr(module, name, stop)


PARSE_ERRORS = [
    # argv (the checkpoint is filled in), words of the message
    (["evaluate", "--timesteps", "0"], "--timesteps: 0 is out of range; expected a number of timesteps in 1..65535"),
    (["evaluate", "--timesteps", "-3"], "--timesteps"),
    (["evaluate", "--timesteps", "100000"], "in 1..65535"),
    (["evaluate", "--timesteps", "four"], "'four' is not an integer"),
    (["evaluate", "--weight-bits", "0"], "--weight-bits: 0 is out of range; expected a bit width in 1..32"),
    (["evaluate", "--weight-bits", "33"], "--weight-bits"),
    (["evaluate", "--threshold-bits", "0"], "--threshold-bits"),
    (["evaluate", "--state-bits", "1"], "--state-bits: 1 is out of range; expected a membrane bit width in 2..32"),
    (["analyze", "--timesteps", "0"], "--timesteps: 0 is out of range"),
    (["analyze", "--weight-bits", "2,8"], "'2,8' is a list; this command takes one value (run `qnoise sweep`"),
    (["analyze", "--weight-bits", "0"], "bit width in 1..32"),
    (["analyze", "--state-bits", "4,8"], "is a list"),
    (["analyze", "--batch-size", "0"], "--batch-size: 0 is out of range; expected a batch size"),
    (["analyze", "--batch-size", "1000000"], "in 1..65536"),
    (["analyze", "--limit", "0"], "--limit"),
    (["sweep", "--workers", "0"], "--workers: 0 is out of range; expected a number of worker processes"),
    (["sweep", "--timesteps", "0,4"], "--timesteps: 0 is out of range"),
    (["sweep", "--timesteps", "4,8,4"], "4 is given twice in '4,8,4'"),
    (["sweep", "--weight-bits", "2,4,2"], "2 is given twice"),
    (["sweep", "--weight-bits", "2,,4"], "empty entry"),
    (["sweep", "--weight-bits", "0,4"], "bit width in 1..32"),
    (["sweep", "--rounding", "nearest,sideways"], "'sideways' is not one of nearest, truncate, stochastic"),
    (["sweep", "--rounding", "nearest,nearest"], "nearest is given twice"),
    (["sweep", "--neuron", "if,lif"], "'lif' is not one of if, signed, model"),
    (["sweep", "--state-bits", "1"], "membrane bit width"),
    (["sweep", "--batch-size", "-1"], "--batch-size"),
    (["train", "--epochs", "0"], "--epochs: 0 is out of range; expected a number of epochs in 1..1000000 (0 epochs "
                                 "would save an untrained model)"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--timesteps", "0"], "--timesteps"),
    (["train", "--weight-bits", "0"], "--weight-bits: 0 is out of range"),
    (["train", "--threshold-bits", "-2"], "--threshold-bits"),
    (["train", "--threshold", "0"], "--threshold: 0 is out of range; expected a threshold, finite and > 0"),
    (["train", "--threshold", "nan"], "--threshold"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--act-alpha", "-1"], "--act-alpha"),
    (["convert", "--finetune-epochs", "-1"], "--finetune-epochs"),
    (["convert", "--finetune-lr", "inf"], "--finetune-lr"),
    (["dashboard", "--port", "0"], "--port"),
]


@pytest.mark.parametrize("argv,words", PARSE_ERRORS, ids=[" ".join(a) for a, _ in PARSE_ERRORS])
def test_bad_arguments_are_refused_while_parsing(argv, words, snn, tmp_path, capsys, no_work):
    extra = {"evaluate": ["--checkpoint", snn], "analyze": ["--checkpoint", snn],
             "sweep": ["--checkpoint", snn, "--out", str(tmp_path / "s")], "train": ["--out", str(tmp_path / "t")],
             "convert": ["--checkpoint", snn, "--out", str(tmp_path / "c")], "dashboard": []}[argv[0]]
    with pytest.raises(SystemExit) as exit_:
        main(argv + extra)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"qnoise {argv[0]}: error: argument" in err and words in err, err
    assert "Traceback" not in err


def run_cli(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("options,words", [
    ('{"hidden": "abc"}', "--model / --model-options: mlp option hidden must be a list"),
    ('{"hidden": [0]}', "hidden entries must be an integer >= 1, got 0"),
    ('{"width": 3}', "unknown mlp option(s) ['width']"),
    ('{"batchnorm": "yes"}', "batchnorm must be true or false"),
])
def test_bad_model_options_before_the_data(options, words, tmp_path, capsys, no_work):
    code, _, err = run_cli(["train", "--model", "mlp", "--model-options", options, "--out", str(tmp_path / "t")],
                           capsys)
    assert code == 2 and words in err, err


@pytest.mark.parametrize("options,words", [
    ('{"download": true}', "data_options: 'download' is not allowed"), ('{"root": "/"}', "'root' is not allowed"),
    ('{"cache_dir": "/x"}', "'cache_dir'"), ('{"timesteps": 3}', "unknown option 'timesteps'"),
])
def test_bad_data_options_before_the_data(options, words, tmp_path, capsys, no_work):
    code, _, err = run_cli(["train", "--data-options", options, "--out", str(tmp_path / "t")], capsys)
    assert code == 2 and words in err, err


def test_train_out_naming_a_file(tmp_path, capsys, no_work):
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run_cli(["train", "--out", str(tmp_path / "notes.txt"), "--no-progress"], capsys)
    assert code == 2 and "is an existing file" in err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_convert_out_naming_a_file_or_its_source(snn, tmp_path, capsys, no_work):
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run_cli(["convert", "--checkpoint", snn, "--out", str(tmp_path / "notes.txt")], capsys)
    assert code == 2 and "is an existing file" in err
    code, _, err = run_cli(["convert", "--checkpoint", snn, "--out", snn], capsys)
    assert code == 2 and "is the checkpoint being read" in err


def test_analyze_out_refuses_an_unrelated_file(snn, tmp_path, capsys, no_work):
    notes = tmp_path / "notes.parquet"
    notes.write_text("not a table")
    code, _, err = run_cli(["analyze", "--checkpoint", snn, "--out", str(notes)], capsys)
    assert code == 2 and "is not a qnoise results table; pass --force" in err
    assert notes.read_text() == "not a table"


def test_analyze_huge_timesteps_is_refused_before_the_analysis(snn, capsys, no_work):
    code, _, err = run_cli(["analyze", "--checkpoint", snn, "--timesteps", "65535"], capsys)
    assert code == 2 and "lower --batch-size or --timesteps" in err and "GiB" in err


def test_inputs_an_audit_found_unnamed_are_refused_by_name(snn, tmp_path, capsys):
    """A parquet file that is not a qnoise table gave KeyError: 'layer'; an unknown --reference said "checkpoint
    bogus is not a directory" without the references; evaluating no samples said "torch.cat(): expected a
    non-empty list of Tensors"."""
    import pandas as pd

    from qnoise.io import load_checkpoint
    from qnoise.train.loop import evaluate

    pd.DataFrame({"a": [1, 2]}).to_parquet(tmp_path / "other.parquet")
    code, _, err = run_cli(["report", str(tmp_path / "other.parquet"), "--out", str(tmp_path / "rep")], capsys)
    assert code == 2 and "other.parquet is not a qnoise results table: it has no layer, t, metric, value" in err
    code, _, err = run_cli(["analyze", "--checkpoint", snn, "--reference", "bogus", "--limit", "4"], capsys)
    assert code == 2 and "reference='bogus' is neither one of ann, ann-quantized, source, snn, none" in err
    with pytest.raises(ValueError, match="the data holds no samples"):
        evaluate(load_checkpoint(snn), [])
    assert "Traceback" not in err


def test_sweep_huge_timesteps_is_refused_before_the_sweep(snn, tmp_path, capsys, no_work):
    code, _, err = run_cli(["sweep", "--checkpoint", snn, "--timesteps", "4,60000", "--out", str(tmp_path / "s")],
                           capsys)
    assert code == 2 and "T = 60000" in err


def test_evaluate_refuses_a_nan_checkpoint_and_json_stays_valid(snn, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from qnoise.io import save_tensors

    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(snn, bad)
    tensors = load_file(bad / "model.safetensors")
    tensors["readout.body.0.weight"][0, 0] = math.nan
    save_file(tensors, bad / "model.safetensors")
    doc = json.loads((bad / "config.json").read_text())
    doc["tensors"]["sha256"] = save_tensors(bad / "model.safetensors", tensors)
    (bad / "config.json").write_text(json.dumps(doc))
    code, _, err = run_cli(["evaluate", "--checkpoint", str(bad), "--json", "--device", "cpu"], capsys)
    assert code == 2 and "'readout.body.0.weight' holds 1 non-finite value(s)" in err and "--allow-nonfinite" in err
    with pytest.warns(UserWarning, match="allow_nonfinite"):
        code, out, _ = run_cli(["evaluate", "--checkpoint", str(bad), "--json", "--allow-nonfinite", "--device",
                                "cpu"], capsys)
    assert code == 0
    r = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in the JSON output"))
    assert r["loss"] is None and 0 <= r["accuracy"] <= 1 and r["samples"] == 359


def test_evaluate_weight_bits_one_is_binary(snn, capsys):
    code, out, err = run_cli(["evaluate", "--checkpoint", snn, "--json", "--weight-bits", "1", "--device", "cpu"],
                             capsys)
    assert code == 0, err
    assert json.loads(out)["post_training_quantization"]["weights"]["method"] == "binary"


@pytest.mark.parametrize("command", [["sweep", "--timesteps", "3", "--weight-bits", "4"], ["report", "RUN"],
                                     ["search", "--memory-kib", "40"]])
def test_folder_outputs_naming_a_file_are_refused_before_the_work(command, snn, tmp_path, capsys, no_work):
    """They ended in FileExistsError / NotADirectoryError tracebacks (the search's after all its evaluations)."""
    afile = tmp_path / "afile"
    afile.write_text("mine")
    argv = [a if a != "RUN" else str(tmp_path / "run") for a in command]
    for out in (afile, afile / "sub"):
        extra = [] if command[0] == "report" else ["--checkpoint", snn]
        code, _, err = run_cli([*argv, *extra, "--out", str(out)], capsys)
        assert code == 2 and str(afile) in err and "Traceback" not in err, err
    assert afile.read_text() == "mine"


def test_search_checks_where_it_saves_the_choice_first(snn, tmp_path, capsys, no_work, monkeypatch):
    import qnoise.search

    monkeypatch.setattr(qnoise.search, "search", lambda *a, **k: pytest.fail("searched before refusing"))
    (tmp_path / "afile").write_text("mine")
    code, _, err = run_cli(["search", "--checkpoint", snn, "--memory-kib", "40", "--out", str(tmp_path / "s"),
                            "--save-checkpoint", str(tmp_path / "afile")], capsys)
    assert code == 2 and "--save-checkpoint" in err


def test_a_sweep_refuses_a_folder_of_other_files_and_a_failed_start_blocks_nothing(snn, tmp_path, capsys):
    other = tmp_path / "ck"
    other.mkdir()
    (other / "config.json").write_text("{}")
    code, _, err = run_cli(["sweep", "--checkpoint", snn, "--timesteps", "2", "--weight-bits", "4", "--limit", "8",
                            "--out", str(other)], capsys)
    assert code == 2 and "holds other files (config.json) and no sweep" in err
    assert {p.name for p in other.iterdir()} - {".lock"} == {"config.json"}  # nothing written beside it
    out = str(tmp_path / "s")
    base = ["sweep", "--checkpoint", snn, "--timesteps", "2", "--weight-bits", "4", "--limit", "8", "--no-progress",
            "--out", out]
    code, _, err = run_cli([*base, "--reference", "bogus"], capsys)
    assert code == 2 and "bogus" in err
    code, _, err = run_cli(base, capsys)  # the corrected call: not refused as "a sweep of different options"
    assert code == 0, err
