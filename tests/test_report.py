"""qnoise.report: the sweep report's figures say what they show (issue 13: accuracy vs T drew each weight width
as vertical spikes on a linear axis ticked at 1.5, 2.5...; the cost scatters crowded every point into a corner
of an unlabelled log axis; the tables printed 1.755e+06 where nJ and KiB would do) and every page names its
model, data, configuration and qnoise version."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dashboard_fixtures import sweep_frame

from qnoise import __version__
from qnoise import report as R


@pytest.fixture(scope="module")
def sweep():
    df = sweep_frame(model="digits-snn-3bit", weight_bits=(2, 4, 32), timesteps=(1, 3, 7))
    df.loc[df.metric == "energy_pj", "value"] *= 20  # micro-joule scale energies, as a real CNN's
    return df.sample(frac=1.0, random_state=0)  # row order must not matter


def fig_named(figs, start):
    return next(f for t, f in figs if t.startswith(start))


def test_accuracy_vs_timesteps_is_one_line_per_width_on_a_log_axis_ticked_at_t(sweep):
    figs = R.figures(sweep)
    fig = fig_named(figs, "Accuracy vs timesteps")
    lines = [t for t in fig.data if t.name.endswith("weights")]
    assert [t.name for t in lines] == ["2-bit weights", "4-bit weights", "float weights"]
    runs = R.run_table(sweep)
    for t in lines:
        assert list(t.x) == [1, 3, 7]  # one point per T, in order: no vertical spikes
        bits = {"2-bit weights": 2, "4-bit weights": 4, "float weights": 32}[t.name]
        want = runs[runs.weight_bits == bits].sort_values("timesteps")["accuracy"]
        assert np.allclose(t.y, want)
    assert fig.layout.xaxis.type == "log" and list(fig.layout.xaxis.tickvals) == [1, 3, 7]
    assert len({(t.line.dash, t.marker.symbol) for t in lines}) == 3
    assert all("digits-snn-3bit" in title for title, _ in figs)  # every figure names its model


def test_cost_scatters_use_readable_units_and_label_points(sweep):
    figs = R.figures(sweep)
    runs = R.run_table(sweep)
    energy = next(f for t, f in figs if t.startswith("Accuracy vs energy"))
    div, unit = R.energy_unit(runs["energy_pj"])
    assert unit in ("nJ", "µJ") and energy.layout.xaxis.title.text == f"energy per sample ({unit})"
    xs = np.concatenate([np.asarray(t.x, dtype=float) for t in energy.data])
    assert np.allclose(np.sort(xs), np.sort(runs["energy_pj"] / div))
    lo, hi = energy.layout.xaxis.range  # the axis spans the points, not the ANN far away
    assert 10 ** lo < xs.min() and xs.max() < 10 ** hi and hi - lo < np.log10(xs.max() / xs.min()) + 0.5
    labels = [s for t in energy.data for s in t.text]
    assert "W2 T7" in labels and "W float T1" in labels
    memory = next(f for t, f in figs if t.startswith("Accuracy vs memory"))
    assert memory.layout.xaxis.title.text == "memory (KiB)"
    mx = np.concatenate([np.asarray(t.x, dtype=float) for t in memory.data])
    assert np.allclose(np.sort(mx), np.sort(runs["memory_bits"] / 8192))


def test_report_page_names_what_it_shows_and_its_tables_read_in_units(sweep, tmp_path):
    path, tables = R.write_report(sweep, tmp_path, title="qnoise report: run")
    page = path.read_text()
    assert "Layer SQNR over time (digits-snn-3bit, float weights, T = 7)" in page  # names the configuration
    for fact in ("digits-snn-3bit", "digits", "qnoise version", __version__, "2-bit, 4-bit, float", "1, 3, 7"):
        assert fact in page
    assert "e+0" not in page.split("<h2>Runs")[1]  # no 1.755e+06 in the runs table
    assert "(KiB)" in page and ("(nJ)" in page or "(µJ)" in page)
    assert page.count("Plotly.newPlot") >= 6 and page.count("<script type=\"text/javascript\">/**") <= 1
    runs = pd.read_csv(tmp_path / "tables" / "runs.csv")
    assert np.allclose(runs["memory_kib"], runs["memory_bits"] / 8192)
    acc = pd.read_csv(tmp_path / "tables" / "accuracy.csv")
    assert list(acc.columns) == ["weight_bits", "T=1", "T=3", "T=7"]


def test_configurations_are_never_averaged_into_one_accuracy(sweep, tmp_path):
    """Two membrane widths with accuracies 0.9 and 0.1: the accuracy figure draws each its own line and
    heatmap (no 0.5 mean, no 0.9 max), as the accuracy table keeps each its own row."""
    runs = []
    for state_bits, acc in ((32, 0.9), (4, 0.1)):
        part = sweep.copy()
        part["state_bits"] = state_bits
        part.loc[(part.layer == R.OUTPUT) & (part.metric == "accuracy"), "value"] = acc
        runs.append(part)
    df = pd.concat(runs, ignore_index=True)
    table = R.accuracy_table(df)
    assert sorted(set(table.to_numpy().ravel())) == [0.1, 0.9]
    figs = R.figures(df)
    lines = fig_named(figs, "Accuracy vs timesteps").data
    accuracy_lines = [t for t in lines if "weights" in t.name]
    assert len(accuracy_lines) == 3 * 2
    for t in accuracy_lines:
        assert set(t.y) == ({0.1} if "state_bits=4" in t.name else {0.9})
    heats = [f for title, f in figs if title.startswith("Accuracy: weight bits x timesteps")]
    titles = [title for title, _ in figs if title.startswith("Accuracy: weight bits x timesteps")]
    assert len(heats) == 2 and any("state_bits=4" in t for t in titles)
    assert sorted(float(np.unique(h.data[0].z)[0]) for h in heats) == [0.1, 0.9]


def test_unlabelled_data_reports_agreement_by_its_name(sweep, tmp_path):
    """Without labels there is no accuracy: the report shows and writes the agreement with the reference,
    under that name, not in the accuracy table."""
    df = sweep[~sweep.metric.isin(["accuracy", "ann_accuracy", "samples"])]
    assert R.accuracy_table(df).empty
    path, tables = R.write_report(df, tmp_path)
    page = path.read_text()
    assert "Accuracy after T steps" not in page and "Agreement with the reference after T steps" in page
    assert not (tmp_path / "tables" / "accuracy.csv").exists()
    agreement = pd.read_csv(tmp_path / "tables" / "agreement.csv")
    want = R.run_table(df).pivot_table(index="weight_bits", columns="timesteps", values="agreement")
    assert np.allclose(agreement[["T=1", "T=3", "T=7"]].to_numpy(), want.to_numpy())


def test_readable_tables():
    t = pd.DataFrame({"weight_bits": [4, 32], "accuracy": [0.9, 0.95], "energy_pj": [2.5e6, 1.0e6],
                      "memory_bits": [8192 * 3, 8192 * 12]})
    r = R.readable(t)
    assert list(r.columns) == ["weight_bits", "accuracy (%)", "energy (µJ)", "memory (KiB)"]
    assert list(r["weight_bits"]) == ["4-bit", "float"]
    assert r["energy (µJ)"].tolist() == [2.5, 1.0] and r["memory (KiB)"].tolist() == [3.0, 12.0]


def test_html_page_is_standalone():
    import plotly.graph_objects as go

    page = R.html_page("t", {"model": "m"}, [("a figure", go.Figure(go.Bar(x=[1], y=[2]))),
                                            ("a table", pd.DataFrame({"x": [1.5]})), ("words", "hello")])
    assert "<script src=\"http" not in page and "Plotly.newPlot" in page
    assert "<th>model</th><td>m</td>" in page and __version__ in page and "hello" in page


def test_agreement_keeps_one_row_per_reference(sweep):
    """Agreement is with a reference: a table holding two (ann 0.70, snn 0.99) shows both, not the first."""
    unlabelled = sweep[~sweep.metric.isin(["accuracy", "ann_accuracy", "samples"])]
    ann, snn = unlabelled.copy(), unlabelled.copy()
    snn["reference"] = "snn"
    ann.loc[ann.metric == "agreement", "value"] = 0.70
    snn.loc[snn.metric == "agreement", "value"] = 0.99
    table = R.accuracy_table(pd.concat([ann, snn], ignore_index=True), "agreement")
    assert "reference" in table.index.names
    assert set(table.xs("ann", level="reference").to_numpy().ravel()) == {0.70}
    assert set(table.xs("snn", level="reference").to_numpy().ravel()) == {0.99}
