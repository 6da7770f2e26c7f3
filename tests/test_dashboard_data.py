"""The dashboard's data layer without pages: the shipped grids (same numbers as a live analysis, for the very
tensors they name), a first Overview that needs no analysis, progress reported as batches finish, the memo, a
sweep's recorded checkpoint, and the weight histograms' grid."""

from __future__ import annotations

import json
import threading
import time


import numpy as np

import pytest
import torch
from test_dashboard_app import REPO, SAMPLE, assert_clean, make_checkpoint, open_app, specs
from test_dashboard_app import _env, grid_cache  # noqa: F401  (autouse: each test sets its own folder)

from dashboard import analyses, sources, state, stored
from dashboard.memo import Memo

HAS_SAMPLE = (SAMPLE / "grids" / "index.json").is_file()
needs_sample = pytest.mark.skipif(not HAS_SAMPLE, reason="sample_data/grids not written (`qnoise sample-data "
                                                         "--grids-only`)")


@needs_sample
def test_shipped_grids_name_their_tensors_and_cells():
    from qnoise.io import read_checkpoint_config
    from qnoise.table_files import read_parquet
    from qnoise.train.sample_data import GRID_FORMAT, grid_cells

    index = json.loads((SAMPLE / "grids" / "index.json").read_text())
    assert index["format"] == GRID_FORMAT == sources.GRID_FORMAT
    snns = [e["path"] for e in json.loads((SAMPLE / "index.json").read_text())["models"] if e["kind"] == "snn"]
    assert sorted(index["models"]) == sorted(snns)
    total = 0
    for name, file in index["models"].items():
        df, record = read_parquet(SAMPLE / "grids" / file)
        doc = read_checkpoint_config(SAMPLE / name)
        assert record["sha256"] == doc["tensors"]["sha256"] and record["samples"] == 256
        cells = [tuple(c) for c in record["cells"]]
        assert cells == grid_cells(doc)
        assert doc["timesteps"] in {t for _, t in cells}  # the model's own T is in its grid
        got = set(zip(df["weight_bits"], df["timesteps"]))
        assert len(got) == len(cells)
        total += (SAMPLE / "grids" / file).stat().st_size
    assert total < 10 * 2**20


@needs_sample
def test_a_shipped_grid_cell_equals_a_live_analysis():
    """The dashboard's own analysis of a grid cell gives the shipped numbers: the grid is the same thing, stored."""
    ckpt = SAMPLE / "digits-snn-2bit"
    batch = str(SAMPLE / "digits-test-256.safetensors")
    df, _ = stored.shipped_grid(ckpt, batch)
    live, _ = analyses.analysis(ckpt, state.Config(weight_bits=4, timesteps=3), batch)
    cell = df[(df.weight_bits == 4) & (df.timesteps == 3)]
    key = ["layer", "t", "metric"]
    both = cell.merge(live[live["mode"] == "propagated"], on=key, suffixes=("_grid", "_live"))
    assert len(both) == len(cell) > 100
    assert np.allclose(both["value_grid"], both["value_live"], rtol=1e-9, atol=1e-12, equal_nan=True)


@needs_sample
def test_a_grid_for_other_tensors_is_not_used(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("QNOISE_SAMPLE_DIR", str(tmp_path))
    shutil.copytree(SAMPLE / "digits-snn-2bit", tmp_path / "digits-snn-2bit")
    shutil.copytree(SAMPLE / "grids", tmp_path / "grids")
    batch = str(tmp_path / "digits-test-256.safetensors")
    assert stored.shipped_grid(tmp_path / "digits-snn-2bit", batch) is not None
    assert stored.shipped_grid(tmp_path / "digits-snn-2bit", str(tmp_path / "other-batch.safetensors")) is None
    cfg = json.loads((tmp_path / "digits-snn-2bit" / "config.json").read_text())
    cfg["tensors"]["sha256"] = "0" * 64  # as if the model had been retrained
    (tmp_path / "digits-snn-2bit" / "config.json").write_text(json.dumps(cfg))
    assert stored.shipped_grid(tmp_path / "digits-snn-2bit", batch) is None


@needs_sample
def test_the_first_overview_needs_no_analysis(monkeypatch):
    """Issue 13: on a busy machine the first Overview figure took 77 s (a 20-configuration grid analysed first).
    The sample ships its grids: the Overview draws them without a single analysis."""
    def boom(*a, **k):
        raise AssertionError("the first Overview ran an analysis")

    monkeypatch.setattr(analyses, "_compute_analysis", boom)
    analyses.ANALYSES.clear()
    monkeypatch.delenv("QNOISE_SAMPLE_DIR", raising=False)
    at = open_app(REPO / "sample_data") if SAMPLE == REPO / "sample_data" else open_app(SAMPLE)
    assert_clean(at)
    titles = [json.loads(s)["layout"]["title"]["text"] for s in specs(at)]
    assert any(t.startswith("Accuracy vs timesteps") for t in titles)
    assert any("weight bits x timesteps" in t for t in titles)
    assert any("grid shipped with the sample" in c.value for c in at.caption)


@needs_sample
def test_the_sample_lists_no_grid_as_a_results_table():
    cat = sources.scan(SAMPLE)
    assert not cat.results and "digits-snn-3bit" in cat.checkpoints


def test_progress_is_reported_as_batches_finish(tmp_path, monkeypatch):
    monkeypatch.setenv("QNOISE_SAMPLE_DIR", str(tmp_path))
    ckpt = make_checkpoint(tmp_path / "m")
    x = np.random.default_rng(0).random((150, 1, 1, 8, 8)).astype("float32")
    y = np.arange(150) % 10
    monkeypatch.setattr(analyses, "eval_data", lambda *a, **k: (x, y))
    seen = []
    cfg = state.Config(weight_bits=4, timesteps=3, samples=150)
    df, _ = analyses.analysis(ckpt, cfg, progress=lambda f, text: seen.append((f, text)))
    assert [round(f, 3) for f, _ in seen] == [0.0, round(64 / 150, 3), round(128 / 150, 3), 1.0]
    assert seen[-1][1] == "analysed 150 of 150 samples" and df.attrs["samples"] == 150
    again = []
    analyses.analysis(ckpt, cfg, progress=lambda f, text: again.append(f))
    assert again == [] and analyses.has_analysis(ckpt, cfg)  # cached: instant, no bar
    # the batches are the probe's own: the same table as the plain tensor pair
    import torch

    import qnoise

    plain = qnoise.analyze(str(ckpt), (torch.from_numpy(x), torch.from_numpy(y)), timesteps=3, weight_bits=4,
                           isolate=False, progress=False, device="cpu", model_name="m", dataset_name="digits")
    assert np.allclose(plain["value"].to_numpy(), df["value"].to_numpy(), equal_nan=True)
    sens = []
    analyses.sensitivity(ckpt, cfg, bits=2, progress=lambda f, text: sens.append(f))
    assert sens and sens[-1] == pytest.approx(1.0) and all(b >= a for a, b in zip(sens, sens[1:]))


def test_memo_computes_once_for_concurrent_sessions():
    memo, calls = Memo(4), []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return len(calls)

    out = []
    threads = [threading.Thread(target=lambda: out.append(memo.get("k", slow))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [1, 1, 1, 1] and len(calls) == 1 and "k" in memo
    for i in range(5):
        memo.get(i, lambda i=i: i)
    assert "k" not in memo  # least recently used, evicted


def test_sweep_checkpoint_inside_and_outside(tmp_path, monkeypatch):
    monkeypatch.setenv("QNOISE_SAMPLE_DIR", str(tmp_path / "data"))
    ckpt = make_checkpoint(tmp_path / "data" / "m")
    run = tmp_path / "data" / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"format": "qnoise-sweep", "identity": {
        "model": {"checkpoint": str(ckpt)}}, "cells": []}))
    assert stored.sweep_checkpoint(run) == (ckpt, None)
    outside = make_checkpoint(tmp_path / "elsewhere" / "m")
    (run / "manifest.json").write_text(json.dumps({"identity": {"model": {"checkpoint": str(outside)}}}))
    path, why = stored.sweep_checkpoint(run)
    assert path is None and "outside the folders" in why and "--data" in why
    assert stored.sweep_checkpoint(tmp_path / "data" / "m") == (None, None)  # not a sweep


def test_weight_distribution_grid_and_clip(tmp_path):
    from qnoise.io import load_checkpoint
    from qnoise.teaching import weight_distribution

    model = load_checkpoint(make_checkpoint(tmp_path / "m"))
    d = weight_distribution(model, _first_layer(model), weight_bits=4)
    assert d["bits"] == 4 and len(d["grid"]) == 15  # +-7 steps: -8 steps is below -max|w|, never an output
    step = d["grid"][1] - d["grid"][0]
    assert np.allclose(np.diff(d["grid"]), step)
    assert d["clip"] == (pytest.approx(-7 * step), pytest.approx(7 * step))
    assert np.abs(d["float"]).max() == pytest.approx(7 * step)  # max|w| lands on the top level
    assert np.isin(np.round(d["quantized"] / step), np.arange(-7, 8)).all()
    f = weight_distribution(model, _first_layer(model), weight_bits=32)
    assert f["bits"] == 32 and f["grid"] is None and f["clip"] is None
    assert not any(type(m).__name__ == "ParametrizationList" for m in model.modules())  # the model is untouched


def _first_layer(model) -> str:
    from qnoise.quant import weight_layers

    return weight_layers(model)[0][0]


def test_every_page_module_is_small():
    for f in (REPO / "dashboard").rglob("*.py"):
        assert len(f.read_text().splitlines()) <= 400, f"{f} is over 400 lines"


def test_a_weight_histogram_leaves_the_models_own_quantizer_alone(tmp_path):
    """The private copy's quantizer is removed for other bits; a deep copy shared torch's Parametrized class with
    the (cached) model, whose ``weight`` then disappeared and every later forward failed."""
    from qnoise.models import build_model
    from qnoise.quant import quantize_weights, weight_layers
    from qnoise.teaching import weight_distribution

    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, hidden=[16]).eval()
    quantize_weights(model, 1, "binary")
    x = torch.rand(3, 2, 1, 8, 8)
    with torch.no_grad():
        before = model(x)
    layer = weight_layers(model)[0][0]
    for bits in (4, 32):
        weight_distribution(model, layer, weight_bits=bits)
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_the_learn_pages_k_bit_quantizer_has_its_levels():
    from qnoise.teaching import sigmoid_sum_curves

    r = sigmoid_sum_curves(np.linspace(-1.5, 1.5, 601), [1.0, 2000.0], 3, scale_from=1.0)
    assert len(np.unique(np.round(r["hard"], 6))) == 7  # 3 bits: levels -3..3 (it drew 4 before)
