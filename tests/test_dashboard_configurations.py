"""Numbers the dashboard draws stand for one configuration and the samples they were measured on (an audit of
the pages against the table's definitions): the ANN twin line of each weight width, a run overlaid against t,
the Layer noise rows of one reference, the sample count of a table, the Budget's exported neuron and labels."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from dashboard_fixtures import analysis_frame, sweep_frame, write_sweep_dir

pytest.importorskip("streamlit")
from dashboard import figures as F  # noqa: E402
from dashboard import grids, state, ui  # noqa: E402

from qnoise.choice import neuron_setting, save_configuration, setting_of, with_intervals  # noqa: E402
from qnoise.insights import config_table  # noqa: E402


def _set(df: pd.DataFrame, metric: str, value: float, mask=None) -> None:
    rows = (df["layer"] == "<output>") & (df["metric"] == metric)
    df.loc[rows if mask is None else rows & mask, "value"] = value


def test_each_weight_width_has_its_own_twin_line_when_the_twins_differ():
    df = sweep_frame(weight_bits=(2, 8), timesteps=(2, 4, 8))
    df["reference"] = "ann-quantized"  # the twin takes the SNN's quantized weights: one twin per width
    _set(df, "ann_accuracy", 0.30, df["weight_bits"] == 2)
    _set(df, "ann_accuracy", 0.95, df["weight_bits"] == 8)
    twins = {t.name: set(t.y) for t in F.accuracy_vs_timesteps(df).data if t.name.startswith("ANN twin")}
    assert twins == {"ANN twin, 2-bit weights": {0.30}, "ANN twin, 8-bit weights": {0.95}}
    one = sweep_frame(weight_bits=(2, 8), timesteps=(2, 4, 8))  # float twin: the same for every width
    assert [t.name for t in F.accuracy_vs_timesteps(one).data if t.name.startswith("ANN twin")] == ["ANN twin"]


def test_the_twin_line_follows_t_where_each_t_has_a_twin_of_its_own():
    """Frames binned for each T (or a cumulative twin) give each T its own twin: the Overview drew the first row's
    accuracy across every T, and the report the largest over all configurations."""
    from qnoise.report import figures

    df = sweep_frame(weight_bits=(4, 32), timesteps=(1, 4, 16))
    for T, acc in ((1, 0.785), (4, 0.957), (16, 0.977)):
        _set(df, "ann_accuracy", acc, df["timesteps"] == T)
    want = [0.785, 0.957, 0.977]
    twin = next(t for t in F.accuracy_vs_timesteps(df).data if t.name == "ANN twin")
    assert list(twin.x) == [1, 4, 16] and list(twin.y) == want
    fig = next(f for title, f in figures(df) if title.startswith("Accuracy vs timesteps"))
    twin = next(t for t in fig.data if t.name == "ANN twin")
    assert list(twin.x) == [1, 4, 16] and list(twin.y) == want


def test_a_sweep_overlaid_against_t_shows_its_longest_run_not_a_mean():
    one = analysis_frame(4, 8)
    sweep = sweep_frame(weight_bits=(4,), timesteps=(2, 8))
    _set(sweep, "accuracy", 0.10, sweep["timesteps"] == 2)
    _set(sweep, "accuracy", 0.90, sweep["timesteps"] == 8)
    fig = F.runs_overlay({"A": one, "B": sweep}, "accuracy", {"A": 100, "B": 100})
    trace = next(t for t in fig.data if t.name.startswith("B:"))
    assert list(trace.x) == list(range(1, 9)) and set(trace.y) == {0.90}


def test_layer_noise_rows_from_a_table_are_one_reference_of_one_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv("QNOISE_SAMPLE_DIR", str(tmp_path))  # a folder the dashboard may open
    ann = sweep_frame(model="tiny-mlp", weight_bits=(4,), timesteps=(4,))
    snn = ann.copy()
    snn["reference"] = "snn"
    snn.loc[snn["metric"] == "sqnr_db", "value"] += 100.0
    table = tmp_path / "mixed.parquet"
    pd.concat([ann, snn], ignore_index=True).to_parquet(table, index=False)
    ctx = ui.Context(folder=tmp_path, checkpoint=Path("/nonexistent/tiny-mlp"), results_path=table)
    rows, _ = grids.config_frame(ctx, state.Config(weight_bits=4, state_bits=32, timesteps=4))
    assert set(rows["reference"]) == {"ann"}
    drawn = F.layer_time_grid(rows, "sqnr_db").loc["act1", 4]
    want = ann[(ann["metric"] == "sqnr_db") & (ann["layer"] == "act1") & (ann["t"] == 4)]["value"].item()
    assert drawn == pytest.approx(want)


def test_a_tables_own_sample_count_wins_over_the_sweeps_limit(tmp_path, monkeypatch):
    """``qnoise sweep --limit 1000`` on a 100-sample split evaluates 100: the bars use 100."""
    import json

    monkeypatch.setenv("QNOISE_SAMPLE_DIR", str(tmp_path))

    df = sweep_frame(model="tiny-mlp", weight_bits=(4, 8), timesteps=(4, 8))
    cells = df.drop_duplicates(["weight_bits", "timesteps"])[
        ["model", "dataset", "weight_bits", "state_bits", "timesteps", "rounding", "neuron", "reference", "mode"]]
    df = pd.concat([df, cells.assign(layer="<output>", t=0, metric="samples", value=100.0)], ignore_index=True)
    folder = write_sweep_dir(tmp_path / "sweep", df)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["identity"] = {"data": {"name": "digits", "split": "test", "limit": 1000}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    ctx = ui.Context(folder=tmp_path, checkpoint=Path("/nonexistent/tiny-mlp"), results_path=folder)
    assert grids.grid_results(ctx, "t").samples == 100
    differing = df.copy()
    differing.loc[(differing["metric"] == "samples") & (differing["weight_bits"] == 8), "value"] = 50.0
    assert grids.table_samples(differing) is None  # no one count: no bars, rather than wrong ones


def test_the_budget_keeps_the_neuron_a_row_was_measured_with(tmp_path):
    assert [neuron_setting(v) for v in ("IF", "LIF", "signed IF", "signed LIF", "mixed", "if", "signed")] == \
        ["if", "if", "signed", "signed", None, "if", "signed"]
    row = pd.Series({"weight_bits": 4, "timesteps": 4, "state_bits": 32, "rounding": "nearest",
                     "neuron": "signed IF"})
    setting = setting_of(row)
    assert setting["neuron"] == "signed"
    from qnoise.io import load_checkpoint
    from qnoise.models import build_model
    from qnoise.neurons import spiking_neurons

    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, hidden=[16])
    path = save_configuration(model, setting, tmp_path / "chosen")
    loaded = load_checkpoint(path)
    assert all(n.signed for _, n in spiking_neurons(loaded))


def test_budget_labels_tell_datasets_apart():
    a = sweep_frame(weight_bits=(4,), timesteps=(4,))
    b = sweep_frame(weight_bits=(4,), timesteps=(4,))
    b["dataset"] = "nmnist"
    _set(a, "accuracy", 0.10)
    _set(b, "accuracy", 0.90)
    points = with_intervals(config_table(pd.concat([a, b], ignore_index=True)), 500)
    fig = F.pareto_scatter(points, "memory_bits")
    labels = [str(v) for t in fig.data for v in (t.customdata if t.customdata is not None else [])]
    assert any("nmnist" in v for v in labels) and any("digits" in v for v in labels)


def test_a_picked_configuration_brings_its_own_sample_count():
    """Two membrane widths measured on 100 and 50 samples: the whole table has no one count, the configuration
    picked has its own."""
    frames = []
    for state_bits, n in ((None, 100.0), (4, 50.0)):
        part = sweep_frame(weight_bits=(4,), timesteps=(4,), state_bits=state_bits)
        cfg = part.iloc[:1].assign(layer="<output>", t=0, metric="samples", value=n)
        frames += [part, cfg]
    df = pd.concat(frames, ignore_index=True)
    assert grids.table_samples(df) is None
    picked = grids.one_grid(grids.Grid(df, None, "test"), "t_one")
    assert picked.frame["state_bits"].nunique() == 1
    assert picked.samples == (100 if picked.frame["state_bits"].iloc[0] == 32 else 50)
