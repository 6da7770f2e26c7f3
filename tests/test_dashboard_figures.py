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
    assert fig.layout.xaxis.title.text.startswith("timesteps T") and fig.layout.xaxis.type == "log"
    assert list(fig.layout.xaxis.tickvals) == [2, 4, 8]  # ticks at the real T values, not 1.5, 2.5, ...


def test_accuracy_vs_timesteps_no_line_hides_another():
    """Issue 13: the 8-bit line hid under the float one. Float is drawn first (underneath), wide and pale;
    every other width has its own dash and marker; float is called "float", never "32"."""
    grid = sweep_frame(weight_bits=(2, 4, 8, 32), timesteps=(1, 2, 4, 8))
    fig = F.accuracy_vs_timesteps(grid, samples=256)
    assert names(fig)[0] == "SNN, float weights" and "32" not in " ".join(names(fig))
    looks = [(t.line.dash, t.marker.symbol, t.line.width) for t in fig.data if t.name.startswith("SNN")]
    assert len(set(looks)) == len(looks)
    assert fig.data[0].line.width > max(t.line.width for t in fig.data[1:4])  # float underneath, visible around
    eight = next(t for t in fig.data if t.name == "SNN, 8-bit weights")
    assert eight.line.dash != fig.data[0].line.dash and eight.marker.symbol != fig.data[0].marker.symbol
    err = eight.error_y  # each accuracy with its 95% Wilson interval on 256 samples
    from qnoise.accuracy import accuracy_interval
    lo, hi = accuracy_interval(eight.y[0], 256)
    assert err.array[0] == pytest.approx(hi - eight.y[0]) and err.arrayminus[0] == pytest.approx(eight.y[0] - lo)
    assert "256 samples" in fig.layout.yaxis.title.text


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
    with_float = F.metric_heatmap(sweep_frame(weight_bits=(2, 32), timesteps=(2, 4)), "accuracy")
    assert list(with_float.data[0].y) == ["2-bit", "float"]
    energy = F.metric_heatmap(grid, "energy_pj")
    assert "(nJ)" in energy.layout.title.text or "(µJ)" in energy.layout.title.text


def test_energy_and_memory_units():
    assert F.energy_unit([5.2e6]) == (1e6, "µJ") and F.energy_unit([3.0e4, 1e3]) == (1e3, "nJ")
    assert F.energy_unit([12.0]) == (1.0, "pJ")
    assert F.kib(8192 * 3) == 3.0


def test_cost_comparison(grid):
    fig = F.cost_comparison(grid)
    assert names(fig) == ["SNN energy", "ANN energy", "memory (KiB)"]
    assert len(fig.data[0].x) == 9  # one bar per configuration
    div, unit = F.energy_unit(grid[grid.metric.isin(["energy_pj", "ann_energy_pj"])]["value"])
    assert unit != "pJ" and f"({unit})" in fig.layout.yaxis.title.text  # "5M pJ" no more: nJ or µJ, named
    run = F.final_t(grid[(grid.layer == "<output>") & (grid.metric == "energy_pj")])
    assert max(fig.data[0].y) == pytest.approx(run["value"].max() / div)
    floats = F.cost_comparison(sweep_frame(weight_bits=(4, 32), timesteps=(2,)))
    assert list(floats.data[0].x) == ["W4 T2", "W float T2"]  # never "W32"


def test_layer_time_heatmap(one):
    fig = F.layer_time_heatmap(one, "sqnr_db")
    (hm,) = fig.data
    assert list(hm.y) == list(LAYERS)  # network order, no run-level rows
    assert list(hm.x) == list(range(1, 7))
    assert fig.layout.yaxis.autorange == "reversed"
    signed = F.layer_time_heatmap(one, "err_seq_mean").data[0]
    assert signed.zmid == 0  # a diverging scale for signed errors
    assert list(F.layer_time_heatmap(one).layout.xaxis.tickvals) == list(range(1, 7))  # whole timesteps


def test_shared_scale_and_difference():
    """Issue 13: Explore gave each side its own colour scale, so a 2-bit configuration at -1.5..1 dB looked as
    bright as a healthy one at 5..20 dB. One range for both, and a third panel with B - A."""
    a, b = analysis_frame(weight_bits=8, timesteps=4), analysis_frame(weight_bits=2, timesteps=4)
    ga, gb = F.layer_time_grid(a, "sqnr_db"), F.layer_time_grid(b, "sqnr_db")
    zr = F.value_range(ga, gb)
    assert zr == (min(ga.min().min(), gb.min().min()), max(ga.max().max(), gb.max().max()))
    fa, fb = F.layer_time_heatmap(a, "sqnr_db", zrange=zr), F.layer_time_heatmap(b, "sqnr_db", zrange=zr)
    assert (fa.data[0].zmin, fa.data[0].zmax) == (fb.data[0].zmin, fb.data[0].zmax) == zr
    d = F.difference_heatmap(a, b, "sqnr_db", names=("A", "B")).data[0]
    assert np.allclose(np.asarray(d.z, dtype=float), (gb - ga).to_numpy())
    assert d.zmid == 0 and d.zmin == -d.zmax and d.colorscale[0][1] != d.colorscale[-1][1]


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


def test_float_weights_read_float_not_inf():
    """Issue 13: float weights showed a row of "inf" weight SQNRs; they say "float"."""
    df = analysis_frame(weight_bits=32, timesteps=3)
    df.loc[df.metric == "weight_sqnr_db", "value"] = np.inf
    fig = F.per_layer_bars(df, "weight_sqnr_db")
    assert all(np.isnan(v) for v in fig.data[0].y)  # no bar pretends to a number
    texts = [a.text for a in fig.layout.annotations]
    assert texts == ["float"] * 4 + ["every layer's weights are float: no weight noise"]
    assert "inf" not in " ".join(texts)


def test_sensitivity_bars_show_the_drop_in_points_and_name_the_bits():
    """Issue 13: bars were all about 1 on a 0-1 axis under overlapping titles and never said which bits."""
    sens = sensitivity_frame().assign(weight_bits=[4 if q == "weights" else 32 for q in
                                                   sensitivity_frame()["quantity"]], timesteps=7)
    fig = F.sensitivity_bars(sens)
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 4 and list(bars[0].x) == list(LAYERS)
    assert bars[0].y[0] == pytest.approx(100 * (0.98 - 0.97))  # points lost against nothing quantized
    assert bars[1].y[2] == pytest.approx(100 * (0.98 - 0.94))
    assert "accuracy drop (points)" == fig.layout.yaxis.title.text
    titles = [a.text for a in fig.layout.annotations]
    assert any("4 bits" in t for t in titles) and any("T = 7" in t for t in titles)
    (d1, d2) = (fig.layout.yaxis.domain, fig.layout.yaxis2.domain)  # stacked: no two titles on one line
    assert d1[0] > d2[1] or d2[0] > d1[1]
    assert not fig.layout.shapes  # the "all quantized" drop is a legend line, not an overlapping annotation


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
    assert list(r.layout.xaxis.tickvals) == [1, 2, 3, 4, 5]  # whole timesteps
    assert r.layout.yaxis.title.text == "neuron (all 4 neurons)"
    big = F.spike_raster(np.zeros((3, 2048)), max_neurons=512)
    assert "first 512 of 2048 neurons shown" in big.layout.yaxis.title.text  # says when it shows a subset
    assert list(fig.layout.xaxis.tickvals) == list(range(1, 7))


def test_membrane_figures():
    v = np.linspace(0, 1.5, 12).reshape(6, 2)
    fig = F.membrane_traces(v, 1.0, spikes=(v >= 1).astype(float))
    assert len(fig.layout.shapes) == 1 and fig.layout.shapes[0].y0 == 1.0
    hist = F.membrane_histogram(v, levels=np.arange(-8, 8) * 0.25)
    assert hist.data[0].type == "histogram" and len(hist.layout.shapes) > 0


def test_histograms_draw_the_grid_only_when_it_is_sparse():
    """Issue 13: at 8 state bits the levels filled the plot with a red block: drawn only when few, else named."""
    v = np.random.default_rng(0).normal(0, 1, 500)
    few = F.value_histogram(v, "h", "v", levels=np.arange(-8, 8) * 0.5, clip=(-4.0, 3.5), threshold=1.0)
    grid_lines = [s for s in few.layout.shapes if "228,87,86" in str(s.line.color)]
    assert 0 < len(grid_lines) <= 16
    assert any("clipping range [-4, 3.5]" == t.name for t in few.data)
    assert any("threshold θ = 1" == t.name for t in few.data)
    dense = F.value_histogram(v, "h", "v", levels=np.arange(-128, 128) * 0.03)
    assert not [s for s in dense.layout.shapes if "228,87,86" in str(s.line.color)]
    assert any("too dense to draw" in (t.name or "") for t in dense.data)


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
    assert names(fig) == ["configurations", "Pareto front", "chosen"]
    assert len(fig.data[0].x) == 9
    # issue 13: memory in KiB (not "4.654e+05 bits"), every point labelled
    assert fig.layout.xaxis.title.text == "memory (KiB)"
    assert np.allclose(fig.data[0].x, points["memory_bits"] / 8192)
    assert list(fig.data[0].customdata) == [F.config_label(r) for _, r in points.iterrows()]  # hover: each point
    labels = [t for t in fig.data[0].text if t]  # points at one memory and accuracy share one label, no overlap
    assert labels == ["W2 T2–8", "W4 T2–8", "W8 T2–8"]  # memory does not depend on T: one label per width
    assert list(fig.layout.xaxis.ticktext)[:1] and all("e" not in t for t in fig.layout.xaxis.ticktext)
    assert "textposition" in fig.data[0] and fig.data[0].mode == "markers+text"
    with_ci = points.assign(ci_low=points["accuracy"] - 0.02, ci_high=points["accuracy"] + 0.01)
    ci = F.pareto_scatter(with_ci, "energy_pj", limit=float(points["energy_pj"].median())).data[0].error_y
    assert np.allclose(ci.array, 0.01) and np.allclose(ci.arrayminus, 0.02)
    assert "nJ" in F.pareto_scatter(points, "energy_pj").layout.xaxis.title.text


def test_learn_figures():
    from qnoise import teaching

    tr = teaching.neuron_trace(0.4, 1.0, 7)
    fig = F.neuron_figure(tr["input"], tr["membrane"], tr["spikes"], 1.0, out=tr["out"])
    assert names(fig) == ["input", "membrane", "spike"]
    sc = teaching.rate_staircase(np.linspace(0, 1, 11), 1.0, 4)
    assert len(F.staircase_figure(sc["x"], sc["rate"], sc["relu"], 4, point=0.4).data) == 2
    c = teaching.sigmoid_sum_curves(np.linspace(-1, 1, 21), [1, 10], "binary")
    # issue 13: the sigmoid's temperature is "temperature", never "T" (which is the timesteps)
    assert names(F.sigmoid_sum_figure(c["x"], c["curves"], c["hard"])) == ["temperature 1", "temperature 10",
                                                                          "inference (step)"]


def test_class_accuracy_bars():
    from qnoise.accuracy import class_accuracy

    table = class_accuracy([0, 0, 1, 1, 2, 2, 2], [0, 1, 1, 1, 2, 2, 0], classes=3)
    fig = F.class_accuracy_bars(table)
    bars = fig.data[0]
    assert list(bars.x) == ["0", "1", "2"] and list(bars.text) == ["n=2", "n=3", "n=2"]
    per = table.set_index("class")
    assert bars.error_y.array[0] == pytest.approx(per.loc["0", "high"] - per.loc["0", "accuracy"])
    assert "5/7" in fig.data[1].name  # the overall accuracy names its count


def test_runs_overlay():
    a = sweep_frame(model="a", weight_bits=(2, 8), timesteps=(2, 4))
    b = sweep_frame(model="b", weight_bits=(4,), timesteps=(2, 4, 8))
    fig = F.runs_overlay({"SNN": a, "fine-tuned": b}, samples={"SNN": 128, "fine-tuned": None})
    assert names(fig) == ["SNN: 2-bit weights", "SNN: 8-bit weights", "fine-tuned: 4-bit weights"]
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color  # a colour per run
    assert fig.data[0].error_y.array is not None and fig.data[2].error_y.array is None
    assert list(fig.layout.xaxis.tickvals) == [2, 4, 8]


def test_html_export_is_offline(one):
    html = F.to_html(F.layer_time_heatmap(one)).decode()
    assert "<script src" not in html and len(html) > 1_000_000  # plotly.js inlined, nothing fetched


@pytest.mark.parametrize("builder, args", [
    (F.accuracy_vs_timesteps, ()), (F.metric_heatmap, ("accuracy",)), (F.cost_comparison, ()),
    (F.layer_time_heatmap, ("sqnr_db",)), (F.error_decomposition, ()), (F.per_layer_bars, ()),
    (F.firing_rate_lines, ()), (F.drop_profile, ()), (F.sensitivity_bars, ()),
    (F.layer_time_grid, ("sqnr_db",)),
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
