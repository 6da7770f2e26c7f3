"""Layer figures: layer x timestep heatmaps (on a shared scale, and the difference of two configurations),
the error terms per layer, per-layer quantities, per-layer sensitivity and configurations side by side."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import (
    ERROR_COLORS,
    ERROR_NAMES,
    ERROR_PARTS,
    OUTPUT,
    _base,
    check_frame,
    final_t,
    integer_axis,
    label,
    layers_in_order,
)


def layer_time_grid(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Layer x timestep table of a per-layer metric (propagated rows), layers in network order."""
    check_frame(df, metrics=[metric], what=f"layer x timestep heatmap of {metric}")
    part = df[(df["metric"] == metric) & (df["layer"] != OUTPUT) & (df["t"] > 0)]
    if "mode" in part.columns:
        part = part[part["mode"] != "isolated"]
    if part.empty:
        raise ValueError(f"no per-layer rows of metric {metric!r}")
    return part.pivot_table(index="layer", columns="t", values="value", aggfunc="mean").reindex(
        layers_in_order(part))


def value_range(*grids: pd.DataFrame, diverging: bool = False) -> tuple[float, float] | None:
    """One colour range for several grids (finite values only): so equal colours mean equal numbers."""
    vals = np.concatenate([g.to_numpy(dtype=float).ravel() for g in grids]) if grids else np.array([])
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return None
    if diverging:
        m = float(np.abs(vals).max()) or 1.0
        return (-m, m)
    lo, hi = float(vals.min()), float(vals.max())
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def _heatmap(grid: pd.DataFrame, title_metric: str, zrange, diverging: bool, colorscale: str,
             title: str, subject: str | None) -> go.Figure:
    z = grid.to_numpy(dtype=float)
    shown = np.where(np.isposinf(z), np.nan, z)  # +inf (no noise at all) has no colour; hover says so
    text = [["no noise" if np.isposinf(v) else ("" if np.isnan(v) else f"{v:.4g}") for v in row] for row in z]
    layers = list(grid.index)
    fig = go.Figure(go.Heatmap(
        z=shown, x=[int(c) for c in grid.columns], y=layers, colorscale=colorscale,
        zmid=0 if diverging else None, zmin=None if zrange is None else zrange[0],
        zmax=None if zrange is None else zrange[1], text=text,
        colorbar=dict(title=title_metric), hovertemplate="layer %{y}<br>t=%{x}<br>%{text}<extra></extra>"))
    integer_axis(fig, grid.columns, "timestep t")
    fig.update_yaxes(title="layer", autorange="reversed", type="category")
    return _base(fig, title, height=max(320, 80 + 40 * len(layers)), subject=subject)


def layer_time_heatmap(df: pd.DataFrame, metric: str = "sqnr_db", zrange: tuple[float, float] | None = None,
                       subject: str | None = None) -> go.Figure:
    """Layer x timestep heatmap of a per-layer metric for one configuration. ``zrange`` fixes the colour
    range (`value_range` of several configurations: a shared scale); signed errors get a diverging scale."""
    grid = layer_time_grid(df, metric)
    diverging = metric.endswith("_mean")
    if zrange is None and diverging:
        zrange = value_range(grid, diverging=True)
    return _heatmap(grid, label(metric), zrange, diverging, "RdBu" if diverging else "Viridis",
                    f"{label(metric)} per layer and timestep", subject)


def difference_heatmap(a: pd.DataFrame, b: pd.DataFrame, metric: str = "sqnr_db", names=("A", "B"),
                       subject: str | None = None) -> go.Figure:
    """``B - A`` of a per-layer metric, per layer and timestep, on a diverging scale centred on 0 (the layers
    and timesteps both configurations have)."""
    ga, gb = layer_time_grid(a, metric), layer_time_grid(b, metric)
    layers = [x for x in ga.index if x in gb.index]
    steps = [t for t in ga.columns if t in gb.columns]
    if not layers or not steps:
        raise ValueError("the two configurations share no layer and timestep to compare")
    with np.errstate(invalid="ignore"):
        diff = gb.loc[layers, steps] - ga.loc[layers, steps]
    diff = diff.where(np.isfinite(diff.to_numpy(dtype=float)))  # inf - inf, inf - x: no number
    return _heatmap(diff, f"Δ {label(metric)}", value_range(diff, diverging=True), True, "RdBu",
                    f"Difference {names[1]} − {names[0]}: {label(metric)}", subject)


def error_decomposition(df: pd.DataFrame, t: int | None = None, kind: str = "contrib",
                        subject: str | None = None, yrange: tuple[float, float] | None = None) -> go.Figure:
    """Per-layer stacked bars of the error terms at timestep ``t`` (default: the last): their contributions
    ``err_k_contrib`` (``kind="contrib"``: each term's share of the squared error; they add up to the total
    MSE, drawn as a marker) or their signed means (``kind="mean"``; they add up to the total mean). The
    terms' own MSEs do not add up, so they are never stacked. ``yrange``: a shared axis range."""
    if kind not in ("contrib", "mean"):
        raise ValueError(f"kind must be 'contrib' or 'mean', got {kind!r}")
    check_frame(df, metrics=[f"err_{p}_{kind}" for p in ERROR_PARTS], what="error decomposition")
    present = [p for p in ERROR_PARTS if (df["metric"] == f"err_{p}_{kind}").any()]
    names = [f"err_{p}_{kind}" for p in present]
    total = "err_total_mse" if kind == "contrib" else "err_total_mean"
    part = df[df["metric"].isin([*names, total]) & (df["layer"] != OUTPUT)]
    if "mode" in part.columns:
        part = part[part["mode"] != "isolated"]
    part = final_t(part) if t is None else part[part["t"] == t]
    if part.empty:
        raise ValueError(f"no error-decomposition rows at t={t}")
    layers = layers_in_order(part)
    wide = part.pivot_table(index="layer", columns="metric", values="value", aggfunc="mean").reindex(layers)
    fig = go.Figure()
    for p, name in zip(present, names, strict=True):
        fig.add_trace(go.Bar(x=layers, y=wide[name], name=ERROR_NAMES[p], marker_color=ERROR_COLORS[p]))
    if total in wide:
        fig.add_trace(go.Scatter(x=layers, y=wide[total], mode="markers", name="total",
                                 marker=dict(symbol="diamond", size=11, color="black")))
    fig.update_layout(barmode="relative")
    fig.update_xaxes(title="layer", type="category")
    fig.update_yaxes(title="signed mean error" if kind == "mean" else "share of the squared error (sums to the MSE)",
                     range=list(yrange) if yrange else None)
    when = "last timestep" if t is None else f"t = {t}"
    return _base(fig, f"Error terms per layer ({'signed means' if kind == 'mean' else 'contributions'}), {when}",
                 subject=subject)


def per_layer_bars(df: pd.DataFrame, metric: str = "weight_sqnr_db", subject: str | None = None) -> go.Figure:
    """One bar per layer of a per-layer metric (weight SQNR, parameters, synops, ...). A weight SQNR of +inf
    (the layer's weights are float: no weight noise) is labelled "float", not drawn as a number; when every
    layer is float the figure says so once."""
    check_frame(df, metrics=[metric], what=f"per-layer {metric}")
    part = final_t(df[(df["metric"] == metric) & (df["layer"] != OUTPUT)])
    if "mode" in part.columns:
        part = part[part["mode"] != "isolated"]
    if part.empty:
        raise ValueError(f"no per-layer rows of metric {metric!r}")
    layers = layers_in_order(part)
    vals = part.groupby("layer")["value"].mean().reindex(layers).to_numpy(dtype=float)
    exact = np.isposinf(vals)
    shown = np.where(np.isfinite(vals), vals, np.nan)
    word = "float" if metric == "weight_sqnr_db" else "exact"
    text = [word if e else f"{v:.3g}" for v, e in zip(vals, exact, strict=True)]
    fig = go.Figure(go.Bar(x=layers, y=shown, marker_color="#72B7B2", name=label(metric),
                           hovertemplate="%{x}<br>%{customdata}<extra></extra>", customdata=text))
    top = float(np.nanmax(shown)) if np.isfinite(shown).any() else 1.0
    for layer, v, t, e in zip(layers, shown, text, exact, strict=True):  # labels as annotations: inf has no bar
        fig.add_annotation(x=layer, y=0 if e else v, text=t, showarrow=False, yshift=10,
                           font=dict(size=12, color="#4C78A8" if e else "#333"))
    if exact.all():
        fig.add_annotation(x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font=dict(size=14),
                           text="every layer's weights are float: no weight noise" if metric == "weight_sqnr_db"
                           else "every layer is exact")
    fig.update_xaxes(title="layer", type="category")
    fig.update_yaxes(title=label(metric), range=[0, top * 1.18] if top > 0 else None)
    return _base(fig, f"{label(metric)} per layer", subject=subject)


def sensitivity_bars(df: pd.DataFrame, metric: str = "accuracy", subject: str | None = None) -> go.Figure:
    """Per-layer sensitivity (`qnoise.sensitivity`) as the accuracy lost, in points, against nothing
    quantized (``layer="<all>"``, ``variant="none"``): one layer's quantizer on alone (``"only"``) and every
    quantizer on but this layer's (``"all_but"``); the drop with all quantized is a dotted line. One panel per
    ``quantity``, stacked (titles never overlap), each naming what was quantized: the weight bits, or the
    rates over T steps."""
    check_frame(df, columns=("layer", "metric", "value", "variant"), metrics=[metric], what="sensitivity")
    part = df[df["metric"] == metric]
    quantities = list(pd.unique(part["quantity"])) if "quantity" in part.columns else [None]

    def heading(q, sub):
        if q == "weights" and "weight_bits" in sub:
            return f"Weights quantized to {int(sub['weight_bits'].iloc[0])} bits (everything else float)"
        if q == "timesteps" and "timesteps" in sub:
            return f"Rates quantized in time: T = {int(sub['timesteps'].iloc[0])} steps (float weights)"
        return f"{q} quantized" if q is not None else ""

    subs = [part if q is None else part[part["quantity"] == q] for q in quantities]
    fig = make_subplots(rows=len(quantities), cols=1, vertical_spacing=0.22,
                        subplot_titles=[heading(q, s) for q, s in zip(quantities, subs, strict=True)])
    palette = {"only": "#4C78A8", "all_but": "#E45756"}
    names = {"only": "only this layer quantized", "all_but": "all layers but this one quantized"}
    top = 0.0
    for row, sub in enumerate(subs, start=1):
        none = sub[(sub["layer"] == "<all>") & (sub["variant"] == "none")]["value"]
        if none.empty:
            raise ValueError("sensitivity needs the unquantized baseline (layer '<all>', variant 'none')")
        base = float(none.iloc[0])
        per_layer = sub[~sub["layer"].isin([OUTPUT, "<all>"])]
        layers = layers_in_order(per_layer)
        for variant in pd.unique(per_layer["variant"]):
            v = per_layer[per_layer["variant"] == variant].groupby("layer")["value"].mean().reindex(layers)
            drop = 100 * (base - v.to_numpy(dtype=float))
            top = max(top, float(np.nanmax(np.abs(drop))) if drop.size else 0.0)
            fig.add_trace(go.Bar(x=layers, y=drop, name=names.get(variant, str(variant)),
                                 marker_color=palette.get(variant, "#9D9D9D"), showlegend=row == 1,
                                 legendgroup=str(variant), text=[f"{d:+.1f}" for d in drop], textposition="outside",
                                 hovertemplate="%{x}<br>accuracy drop %{y:.2f} points<extra></extra>"), row, 1)
        allq = sub[(sub["layer"] == "<all>") & (sub["variant"] == "all")]["value"]
        if len(allq) and layers:
            d = 100 * (base - float(allq.iloc[0]))
            top = max(top, abs(d))
            fig.add_trace(go.Scatter(x=[layers[0], layers[-1]], y=[d, d], mode="lines", legendgroup="all",
                                     name="every layer quantized", showlegend=row == 1,
                                     line=dict(color="black", dash="dot")), row, 1)
        fig.update_xaxes(title="layer", type="category", row=row, col=1)
        fig.update_yaxes(title="accuracy drop (points)", row=row, col=1)
    fig.update_yaxes(range=[min(0.0, -0.1 * top) - 0.5, top * 1.25 + 0.5])
    fig.update_layout(barmode="group", legend=dict(orientation="h", yanchor="top", y=-0.12, x=0))
    return _base(fig, "Per-layer sensitivity: accuracy lost against no quantization", height=300 + 260 * len(subs),
                 subject=subject)


def config_comparison(frames: Mapping[str, pd.DataFrame], metric: str = "sqnr_db",
                      subject: str | None = None) -> go.Figure:
    """A per-layer metric at the last timestep for several configurations (or runs), side by side."""
    if not frames:
        raise ValueError("config comparison needs at least one table")
    fig = go.Figure()
    for name, df in frames.items():
        check_frame(df, metrics=[metric], what=f"comparison ({name})")
        part = final_t(df[(df["metric"] == metric) & (df["layer"] != OUTPUT)])
        if "mode" in part.columns:
            part = part[part["mode"] != "isolated"]
        layers = layers_in_order(part)
        vals = part.groupby("layer")["value"].mean().reindex(layers).to_numpy(dtype=float)
        fig.add_trace(go.Bar(x=layers, y=np.where(np.isfinite(vals), vals, np.nan), name=str(name)))
    fig.update_layout(barmode="group", legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))
    fig.update_xaxes(title="layer", type="category")
    fig.update_yaxes(title=label(metric))
    return _base(fig, f"{label(metric)} per layer, last timestep", subject=subject)
