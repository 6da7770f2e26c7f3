"""Spike figures: raster, firing rates, membrane traces, and histograms of weights, membrane potentials and
input currents with the quantization grid, the clipping range and the threshold drawn on them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .common import OUTPUT, _base, check_frame, integer_axis, layers_in_order

MAX_LEVELS_DRAWN = 48  # more grid lines than this fill the plot with colour: they are described instead


def _as_2d(values, what: str) -> np.ndarray:
    arr = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{what} needs a non-empty [T, N] array, got shape {arr.shape}")
    return arr


def spike_raster(spikes, title: str = "Spike raster", max_neurons: int = 512, subject: str | None = None) -> go.Figure:
    """Raster of a ``[T, N]`` spike array (values in {-1, 0, 1}) drawn as a neuron x timestep image: dark =
    spike, red = negative spike (signed IF), white = silent. At most ``max_neurons`` neurons are drawn (the
    first ones); the title says so when that is a subset."""
    full = _as_2d(spikes, "spike raster")
    s = full[:, :max_neurons]
    signed = bool((s < 0).any())
    scale = [[0.0, "#E45756"], [0.5, "#ffffff"], [1.0, "#1f2d3d"]] if signed else [[0.0, "#ffffff"], [1.0, "#1f2d3d"]]
    fig = go.Figure(go.Heatmap(z=s.T, x=np.arange(1, s.shape[0] + 1), y=np.arange(s.shape[1]), colorscale=scale,
                               zmin=-1 if signed else 0, zmax=1, showscale=False, xgap=1 if s.shape[0] <= 64 else 0,
                               name="spikes", hovertemplate="t=%{x}<br>neuron %{y}<br>spike %{z}<extra></extra>"))
    integer_axis(fig, range(1, s.shape[0] + 1), "timestep t")
    shown = (f"first {s.shape[1]} of {full.shape[1]} neurons shown" if s.shape[1] < full.shape[1]
             else f"all {full.shape[1]} neurons")
    fig.update_yaxes(title=f"neuron ({shown})", autorange="reversed")
    rate = float(np.abs(full).mean())
    return _base(fig, f"{title}: {rate:.1%} of neuron-steps spike", height=460, subject=subject)


def firing_rate_lines(df: pd.DataFrame, subject: str | None = None) -> go.Figure:
    """Firing rate per layer over timesteps; hover shows the sparsity (share of silent neuron-steps)."""
    check_frame(df, metrics=["firing_rate"], what="firing rate")
    part = df[(df["metric"] == "firing_rate") & (df["layer"] != OUTPUT)]
    if "mode" in part.columns:
        part = part[part["mode"] != "isolated"]
    fig = go.Figure()
    for layer in layers_in_order(part):
        p = part[part["layer"] == layer].groupby("t", as_index=False)["value"].mean().sort_values("t")
        fig.add_trace(go.Scatter(x=p["t"], y=p["value"], mode="lines+markers", name=layer,
                                 customdata=1 - p["value"],
                                 hovertemplate=f"{layer}<br>t=%{{x}}<br>rate %{{y:.3f}}<br>sparsity "
                                               f"%{{customdata:.1%}}<extra></extra>"))
    integer_axis(fig, part["t"], "timestep t")
    fig.update_yaxes(title="firing rate (spikes per neuron per step)", rangemode="tozero")
    return _base(fig, "Firing rate per layer (sparsity = 1 - rate)", subject=subject)


def membrane_traces(membrane, threshold, spikes=None, title: str = "Membrane potential",
                    names: Sequence | None = None, subject: str | None = None) -> go.Figure:
    """Membrane of a few neurons (``[T, k]``) over timesteps with the threshold; spikes marked."""
    v = _as_2d(membrane, "membrane traces")
    names = [f"neuron {n}" for n in (names if names is not None else range(v.shape[1]))]
    theta = np.broadcast_to(np.asarray(threshold, dtype=float).reshape(-1)[: v.shape[1]]
                            if np.size(threshold) > 1 else float(np.asarray(threshold).reshape(-1)[0]),
                            (v.shape[1],))
    s = _as_2d(spikes, "spikes") if spikes is not None else None
    t = np.arange(1, v.shape[0] + 1)
    fig = go.Figure()
    for i in range(v.shape[1]):
        fig.add_trace(go.Scatter(x=t, y=v[:, i], mode="lines+markers", name=names[i], line_shape="linear"))
        if s is not None:
            fired = s[:, i] != 0
            fig.add_trace(go.Scatter(x=t[fired], y=v[fired, i], mode="markers", showlegend=False,
                                     marker=dict(symbol="star", size=11, color="#E45756"), name="spike"))
    for th in np.unique(theta):
        fig.add_hline(y=float(th), line_dash="dash", line_color="black", annotation_text=f"θ = {th:.3g}")
    integer_axis(fig, t, "timestep t")
    fig.update_yaxes(title="membrane v (after charging)")
    return _base(fig, title, subject=subject)


def value_histogram(values, title: str, x_title: str, levels=None, clip: tuple[float, float] | None = None,
                    threshold: float | None = None, max_levels: int = MAX_LEVELS_DRAWN, bins: int = 80,
                    subject: str | None = None, level_name: str = "quantization grid") -> go.Figure:
    """Histogram of values with what quantizes them: the grid ``levels`` (drawn as lines only when at most
    ``max_levels`` fall in view; otherwise the legend names their number and step instead of filling the plot),
    the clipping range ``clip`` (values outside it saturate) and the ``threshold``."""
    v = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("a histogram needs at least one finite value")
    fig = go.Figure(go.Histogram(x=v, nbinsx=bins, name="values", marker_color="#4C78A8", opacity=0.85))
    lo, hi = float(v.min()), float(v.max())
    pad = (hi - lo) * 0.05 or 0.5
    if levels is not None:
        lv = np.unique(np.asarray(levels, dtype=float).ravel())
        shown = lv[(lv >= lo - pad) & (lv <= hi + pad)]
        step = float(np.min(np.diff(lv))) if lv.size > 1 else float("nan")
        if 0 < shown.size <= max_levels:
            for x in shown:
                fig.add_vline(x=float(x), line_color="rgba(228,87,86,0.55)", line_width=1)
            name = f"{level_name}: {lv.size} levels, step {step:.3g}"
        else:
            name = (f"{level_name}: {lv.size} levels, step {step:.3g} ({shown.size} in view: too dense to draw)"
                    if shown.size else f"{level_name}: {lv.size} levels, none in view")
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(color="#E45756"), name=name))
    if clip is not None:
        for edge, side in ((clip[0], "low"), (clip[1], "high")):
            fig.add_vline(x=float(edge), line_color="#F58518", line_width=2, line_dash="dot")
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(color="#F58518", dash="dot"),
                                 name=f"clipping range [{clip[0]:.3g}, {clip[1]:.3g}]"))
    if threshold is not None:
        fig.add_vline(x=float(threshold), line_color="black", line_width=2, line_dash="dash")
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(color="black", dash="dash"),
                                 name=f"threshold θ = {threshold:.3g}"))
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title="count")
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.22, x=0), bargap=0.02)
    return _base(fig, title, height=440, subject=subject)


def membrane_histogram(values, levels=None, title: str = "Membrane potential histogram", threshold=None,
                       clip=None, subject: str | None = None) -> go.Figure:
    """`value_histogram` of membrane values with the state bits' levels."""
    return value_histogram(values, title, "membrane v", levels=levels, clip=clip, threshold=threshold,
                           subject=subject, level_name="membrane levels")
