"""The dashboard's plot builders: plain functions of qnoise's tidy tables, tested without Streamlit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from dashboard_fixtures import LAYERS, analysis_frame, sensitivity_frame, sweep_frame

from dashboard import figures as F


@pytest.fixture(scope="module")
def one():
    return analysis_frame(weight_bits=4, timesteps=6)


@pytest.fixture(scope="module")
def grid():
    return sweep_frame()


def names(fig: go.Figure) -> list[str]:
    return [t.name for t in fig.data]


def test_accuracy_vs_timesteps_over_a_sweep(grid):
    fig = F.accuracy_vs_timesteps(grid)
    assert isinstance(fig, go.Figure)
    assert names(fig) == ["SNN, 2-bit weights", "SNN, 4-bit weights", "SNN, 8-bit weights", "ANN twin"]
    first = fig.data[0]
    assert list(first.x) == [2, 4, 8]  # one point per T, the accuracy after all T steps
    want = grid[(grid.metric == "accuracy") & (grid.weight_bits == 2) & (grid.t == grid.timesteps)]
    assert np.allclose(first.y, want.sort_values("timesteps")["value"])
    assert fig.layout.xaxis.title.text == "timesteps T" and fig.layout.xaxis.type == "log"


def test_accuracy_vs_timesteps_single_run_uses_t(one):
    fig = F.accuracy_vs_timesteps(one)
    assert list(fig.data[0].x) == list(range(1, 7))
    assert fig.layout.xaxis.title.text == "timestep t"
    assert fig.data[-1].name == "ANN twin" and len(set(fig.data[-1].y)) == 1  # t = 0: one ANN value


def test_metric_heatmap(grid):
    fig = F.metric_heatmap(grid, "accuracy")
    (hm,) = fig.data
    assert hm.type == "heatmap"
    assert list(hm.y) == ["2-bit", "4-bit", "8-bit"] and list(hm.x) == ["2", "4", "8"]
    assert np.asarray(hm.z).shape == (3, 3)
    assert F.metric_heatmap(grid, "agreement").data[0].z is not None


def test_cost_comparison(grid):
    fig = F.cost_comparison(grid)
    assert names(fig) == ["SNN energy", "ANN energy", "memory (KiB)"]
    assert len(fig.data[0].x) == 9  # one bar per configuration


def test_layer_time_heatmap(one):
    fig = F.layer_time_heatmap(one, "sqnr_db")
    (hm,) = fig.data
    assert list(hm.y) == list(LAYERS)  # network order, no run-level rows
    assert list(hm.x) == list(range(1, 7))
    assert fig.layout.yaxis.autorange == "reversed"
    signed = F.layer_time_heatmap(one, "err_seq_mean").data[0]
    assert signed.zmid == 0  # a diverging scale for signed errors


def test_error_decomposition_stacks_contributions_never_mses(one):
    """Issue 9, item 5: the bars stack each term's contribution (they add up to the total MSE, the marker),
    or the signed means; the terms' own MSEs, which do not add up, are never stacked."""
    fig = F.error_decomposition(one)
    assert names(fig) == ["weight", "propagated", "quantization", "sequential", "total"]
    assert fig.layout.barmode == "relative"
    last = one[(one.t == 6) & (one.layer == "act2")].set_index("metric")["value"]
    assert fig.data[3].y[1] == pytest.approx(last["err_seq_contrib"])
    assert fig.data[4].y[1] == pytest.approx(last["err_total_mse"])
    assert sum(fig.data[i].y[1] for i in range(4)) == pytest.approx(fig.data[4].y[1])
    assert sum(last[f"err_{k}_mse"] for k in ("weight", "prop", "quant", "seq")) != pytest.approx(last["err_total_mse"])
    at2 = F.error_decomposition(one, t=2, kind="mean")
    first = one[(one.t == 2) & (one.layer == "act1")].set_index("metric")["value"]
    assert at2.data[2].y[0] == pytest.approx(first["err_quant_mean"])
    # the signed means stack to the total
    assert sum(at2.data[i].y[0] for i in range(4)) == pytest.approx(at2.data[4].y[0])
    with pytest.raises(ValueError, match="kind"):
        F.error_decomposition(one, kind="mse")


def test_per_layer_bars_include_the_readout(one):
    fig = F.per_layer_bars(one, "weight_sqnr_db")
    assert list(fig.data[0].x) == [*LAYERS, "readout"]


def test_sensitivity_bars():
    fig = F.sensitivity_bars(sensitivity_frame())
    assert len(fig.data) == 4  # two variants x two quantities
    assert list(fig.data[0].x) == list(LAYERS)  # "<all>" baselines are lines, not bars
    assert len(fig.layout.shapes) == 4


def test_firing_rate_and_spikes(one):
    fig = F.firing_rate_lines(one)
    assert names(fig) == list(LAYERS)
    spikes = np.zeros((5, 4))
    spikes[0, 1] = spikes[3, 2] = 1
    spikes[4, 2] = -1
    r = F.spike_raster(spikes)
    (img,) = r.data
    assert img.type == "heatmap" and list(img.x) == [1, 2, 3, 4, 5]
    z = np.asarray(img.z)  # neuron x timestep
    assert z.shape == (4, 5) and z[1, 0] == 1 and z[2, 3] == 1 and z[2, 4] == -1
    assert img.zmin == -1  # signed spikes get their own colour


def test_membrane_figures():
    v = np.linspace(0, 1.5, 12).reshape(6, 2)
    fig = F.membrane_traces(v, 1.0, spikes=(v >= 1).astype(float))
    assert len(fig.layout.shapes) == 1 and fig.layout.shapes[0].y0 == 1.0
    hist = F.membrane_histogram(v, levels=np.arange(-8, 8) * 0.25)
    assert hist.data[0].type == "histogram" and len(hist.layout.shapes) > 0


def test_activation_scatter_and_drop_profile(one):
    fig = F.activation_scatter(np.arange(10.0), np.arange(10.0) + 0.1, "act1")
    assert fig.data[0].type == "scattergl" and fig.data[1].name == "SNN = ANN"
    prof = F.drop_profile(one, born="act2")
    assert names(prof) == ["SQNR (dB), propagated", "cosine, propagated"]
    both = pd.concat([one, analysis_frame(weight_bits=4, timesteps=6, mode="isolated")])
    assert names(F.drop_profile(both)) == ["SQNR (dB), propagated", "SQNR (dB), isolated", "cosine, propagated"]
    assert len(prof.layout.shapes) == 1


def test_config_comparison(one):
    fig = F.config_comparison({"A": one, "B": analysis_frame(weight_bits=2, timesteps=6)}, "sqnr_db")
    assert names(fig) == ["A", "B"] and fig.layout.barmode == "group"


def test_pareto_scatter(grid):
    from qnoise.insights import config_table, pareto_front, smallest_within

    points = config_table(grid)
    front = pareto_front(points, "memory_bits")
    fig = F.pareto_scatter(points, "memory_bits", front, smallest_within(points, 0.01, "memory_bits"))
    assert names(fig) == ["configurations", "Pareto front", "smallest within tolerance"]
    assert len(fig.data[0].x) == 9


def test_learn_figures():
    from qnoise import teaching

    tr = teaching.neuron_trace(0.4, 1.0, 7)
    fig = F.neuron_figure(tr["input"], tr["membrane"], tr["spikes"], 1.0, out=tr["out"])
    assert names(fig) == ["input", "membrane", "spike"]
    sc = teaching.rate_staircase(np.linspace(0, 1, 11), 1.0, 4)
    assert len(F.staircase_figure(sc["x"], sc["rate"], sc["relu"], 4, point=0.4).data) == 2
    c = teaching.sigmoid_sum_curves(np.linspace(-1, 1, 21), [1, 10], "binary")
    assert names(F.sigmoid_sum_figure(c["x"], c["curves"], c["hard"])) == ["T = 1", "T = 10", "inference (step)"]


def test_html_export_is_offline(one):
    html = F.to_html(F.layer_time_heatmap(one)).decode()
    assert "<script src" not in html and len(html) > 1_000_000  # plotly.js inlined, nothing fetched


@pytest.mark.parametrize("builder, args", [
    (F.accuracy_vs_timesteps, ()), (F.metric_heatmap, ("accuracy",)), (F.cost_comparison, ()),
    (F.layer_time_heatmap, ("sqnr_db",)), (F.error_decomposition, ()), (F.per_layer_bars, ()),
    (F.firing_rate_lines, ()), (F.drop_profile, ()), (F.sensitivity_bars, ()),
])
def test_bad_frames_raise_clear_errors(builder, args, one):
    with pytest.raises(ValueError, match="DataFrame"):
        builder([1, 2, 3], *args)
    with pytest.raises(ValueError, match="column"):
        builder(pd.DataFrame({"x": [1]}), *args)
    with pytest.raises(ValueError, match="empty|metric"):
        builder(one.iloc[0:0], *args)
    with pytest.raises(ValueError, match="metric"):
        builder(one[one.metric == "params"].assign(variant="only"), *args)


def test_bad_arrays_raise_clear_errors():
    with pytest.raises(ValueError, match="kind"):
        F.error_decomposition(analysis_frame(), kind="rms")
    with pytest.raises(ValueError, match="T, N"):
        F.spike_raster(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="equal"):
        F.activation_scatter([1, 2], [1])
    with pytest.raises(ValueError, match="at least one"):
        F.config_comparison({})


def test_png_export_when_kaleido_is_installed(one):
    pytest.importorskip("streamlit")
    from dashboard import state

    ok, why = state.png_export_available()
    if not ok:
        assert "camera icon" in why  # the page says how to get a PNG instead
        pytest.skip(f"no server-side PNG here: {why}")
    png = state.figure_png(F.per_layer_bars(one))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
