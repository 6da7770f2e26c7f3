"""Overview figures: accuracy against timesteps and bits (with Wilson intervals), the bits x T heatmap, energy
and memory beside the ANN, per-class accuracy, and several runs overlaid on one set of axes."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from qnoise.accuracy import accuracy_interval

from .common import (
    FRACTIONS,
    OUTPUT,
    _base,
    bits_mask,
    bits_name,
    check_frame,
    config_label,
    energy_unit,
    final_t,
    integer_axis,
    is_missing,
    kib,
    label,
    sorted_bits,
)

# one look per weight width, so no line hides another: float is drawn first, wide and pale, under the rest
STYLES = [("solid", "circle"), ("dash", "square"), ("dot", "diamond"), ("dashdot", "triangle-up"),
          ("longdash", "x"), ("longdashdot", "star")]
COLORS = ["#4C78A8", "#E45756", "#54A24B", "#F58518", "#B279A2", "#72B7B2"]
FLOAT_STYLE = dict(color="#9D9D9D", width=6, dash="solid")


def _error_bars(values, samples: int | None) -> dict | None:
    """``error_y`` of Wilson intervals for accuracies measured on ``samples`` samples (None: not known)."""
    if not samples:
        return None
    lo_hi = [accuracy_interval(v, samples) for v in values]
    plus = [hi - v for v, (_, hi) in zip(values, lo_hi, strict=True)]
    minus = [v - lo for v, (lo, _) in zip(values, lo_hi, strict=True)]
    return dict(type="data", symmetric=False, array=plus, arrayminus=minus, thickness=1.2, width=4)


def accuracy_vs_timesteps(df: pd.DataFrame, show_ann: bool = True, samples: int | None = None,
                          subject: str | None = None) -> go.Figure:
    """SNN accuracy against timesteps, one line per weight bit width (float wide and pale underneath, every
    other width with its own dash and marker), the ANN twin dashed black; with ``samples`` each point has its
    95% Wilson interval.

    Over a sweep (several ``timesteps`` values) each configuration contributes its accuracy after all of
    its T steps, on a log T axis ticked at the T values; for a single run (one ``timesteps``) the x axis is
    the timestep t (accuracy so far)."""
    check_frame(df, columns=("weight_bits", "timesteps", "layer", "t", "metric", "value"), metrics=["accuracy"],
                what="accuracy vs timesteps")
    run = df[df["layer"] == OUTPUT]
    acc = run[run["metric"] == "accuracy"]
    if acc.empty:
        raise ValueError("accuracy vs timesteps needs run-level rows (layer='<output>') of metric 'accuracy'")
    sweep = acc["timesteps"].nunique() > 1
    xcol = "timesteps" if sweep else "t"
    fig = go.Figure()
    order = sorted_bits(acc["weight_bits"])
    floats = [b for b in order if bits_name(b) == "float"]
    for i, bits in enumerate(floats + [b for b in order if bits_name(b) != "float"]):
        part = acc[bits_mask(acc["weight_bits"], bits)]
        part = final_t(part) if sweep else part[part["t"] > 0]
        part = part.groupby(xcol, as_index=False)["value"].mean().sort_values(xcol)
        if bits_name(bits) == "float":
            line, marker = FLOAT_STYLE, dict(symbol="circle-open", size=11, color="#7f7f7f")
        else:
            k = (i - len(floats)) % len(STYLES)
            line = dict(color=COLORS[k], width=2.5, dash=STYLES[k][0])
            marker = dict(symbol=STYLES[k][1], size=9, color=COLORS[k])
        fig.add_trace(go.Scatter(x=part[xcol], y=part["value"], mode="lines+markers", line=line, marker=marker,
                                 name=f"SNN, {bits_name(bits)} weights", error_y=_error_bars(part["value"], samples),
                                 hovertemplate="T=%{x}<br>accuracy %{y:.2%}<extra>%{fullData.name}</extra>"))
    ann = run[run["metric"] == "ann_accuracy"]
    if show_ann and not ann.empty:
        xs = sorted(acc[xcol].unique())
        # one twin, or (reference "ann-quantized") one per weight width: a line each, never their maximum
        twins = [(None, ann)] if ann.groupby("weight_bits")["value"].agg(tuple).nunique() <= 1 else \
            [(bits, ann[bits_mask(ann["weight_bits"], bits)]) for bits in sorted_bits(ann["weight_bits"])]
        for bits, rows in twins:
            per_t = rows[rows["t"] > 0] if not sweep else rows
            if sweep:  # the twin after each run's T steps (t = 0: its one value), per T: frames binned for
                # each T, or a cumulative twin, give each T a twin of its own
                ends = rows[(rows["t"] == rows["timesteps"]) | (rows["t"] == 0)]
                ends = ends.groupby("timesteps", as_index=False)["value"].first().sort_values("timesteps")
                x, y = (ends["timesteps"], ends["value"]) if len(ends) > 1 else ([xs[0], xs[-1]],
                                                                                   [ends["value"].iloc[0]] * 2)
            elif per_t.empty:  # one ANN accuracy (t = 0: it does not depend on T)
                x, y = [xs[0], xs[-1]], [rows["value"].iloc[0]] * 2
            else:
                per_t = per_t.groupby(xcol, as_index=False)["value"].first().sort_values(xcol)
                x, y = per_t[xcol], per_t["value"]
            name = "ANN twin" if bits is None else f"ANN twin, {bits_name(bits)} weights"
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name, line=dict(dash="dash", color="black")))
    if sweep:
        ticks = sorted(int(v) for v in acc[xcol].unique())
        fig.update_xaxes(title="timesteps T (log scale)", type="log", tickmode="array", tickvals=ticks,
                         ticktext=[str(v) for v in ticks])
    else:
        integer_axis(fig, acc[acc["t"] > 0]["t"], "timestep t")
    fig.update_yaxes(title="accuracy" + (f" (bars: 95% interval, {samples} samples)" if samples else ""),
                     tickformat=".0%")
    return _base(fig, "Accuracy vs timesteps", subject=subject)


def metric_heatmap(df: pd.DataFrame, metric: str = "accuracy", layer: str = OUTPUT,
                   subject: str | None = None) -> go.Figure:
    """Weight bits x timesteps heatmap of a metric after all T steps (default: accuracy); energy in nJ/µJ,
    memory in KiB."""
    check_frame(df, columns=("weight_bits", "timesteps", "layer", "t", "metric", "value"), metrics=[metric],
                what=f"bits x timesteps heatmap of {metric}")
    part = final_t(df[(df["metric"] == metric) & (df["layer"] == layer)])
    if part.empty:
        raise ValueError(f"no rows of metric {metric!r} for layer {layer!r}")
    part = part.assign(bits=part["weight_bits"].map(bits_name))
    grid = part.pivot_table(index="bits", columns="timesteps", values="value", aggfunc="mean")
    order = list(dict.fromkeys(bits_name(b) for b in sorted_bits(part["weight_bits"])))
    grid = grid.reindex(index=order).sort_index(axis=1)
    z, title = grid.to_numpy(dtype=float), label(metric)
    if metric.endswith("energy_pj"):
        div, unit = energy_unit(z)
        z, title = z / div, f"{label(metric).replace(' (pJ)', '')} ({unit})"
    elif metric == "memory_bits":
        z, title = kib(z), "memory (KiB)"
    fmt = ".1%" if metric in FRACTIONS else ".3g"
    text = [[("" if pd.isna(v) else format(v, fmt)) for v in row] for row in z]
    fig = go.Figure(go.Heatmap(z=z, x=[str(c) for c in grid.columns], y=list(grid.index),
                               text=text, texttemplate="%{text}", colorscale="Viridis",
                               zmin=0 if metric in FRACTIONS else None, zmax=1 if metric in FRACTIONS else None,
                               colorbar=dict(title=title, tickformat=".0%" if metric in FRACTIONS else None),
                               hovertemplate="T=%{x}<br>weights %{y}<br>%{text}<extra></extra>"))
    fig.update_xaxes(title="timesteps T", type="category")
    fig.update_yaxes(title="weight bits", type="category")
    return _base(fig, f"{title}: weight bits x timesteps", subject=subject)


def cost_comparison(df: pd.DataFrame, subject: str | None = None) -> go.Figure:
    """Energy per sample (SNN beside the ANN, in nJ or µJ) and memory (KiB) per configuration, after all T
    steps."""
    check_frame(df, columns=("weight_bits", "timesteps", "layer", "t", "metric", "value"),
                metrics=["energy_pj", "memory_bits"], what="memory and energy")
    run = final_t(df[df["layer"] == OUTPUT])
    keys = ["weight_bits", "timesteps"] + (["state_bits"] if run["state_bits"].nunique() > 1 else []) \
        if "state_bits" in run.columns else ["weight_bits", "timesteps"]
    wide = run.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean", dropna=False).reset_index()
    wide = wide.dropna(subset=[c for c in ("energy_pj", "memory_bits") if c in wide.columns], how="all")
    if wide.empty:
        raise ValueError("memory and energy needs run-level rows (layer='<output>') of energy_pj or memory_bits")
    order = {bits_name(b): i for i, b in enumerate(sorted_bits(wide["weight_bits"]))}
    wide = wide.assign(_o=wide["weight_bits"].map(lambda b: order[bits_name(b)])).sort_values(["_o", "timesteps"])
    names = [config_label(r, keys) for _, r in wide.iterrows()]
    div, unit = energy_unit(pd.concat([wide.get("energy_pj", pd.Series(dtype=float)),
                                       wide.get("ann_energy_pj", pd.Series(dtype=float))]))
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.2,
                        subplot_titles=(f"Energy per sample ({unit})", "Memory (KiB)"))
    if "energy_pj" in wide:
        fig.add_trace(go.Bar(x=names, y=wide["energy_pj"] / div, name="SNN energy", marker_color="#4C78A8",
                             hovertemplate=f"%{{x}}<br>%{{y:.3g}} {unit}<extra>SNN</extra>"), 1, 1)
    if "ann_energy_pj" in wide:
        fig.add_trace(go.Bar(x=names, y=wide["ann_energy_pj"] / div, name="ANN energy", marker_color="#9D9D9D",
                             hovertemplate=f"%{{x}}<br>%{{y:.3g}} {unit}<extra>ANN</extra>"), 1, 1)
    if "memory_bits" in wide:
        fig.add_trace(go.Bar(x=names, y=kib(wide["memory_bits"]), name="memory (KiB)", marker_color="#E45756",
                             hovertemplate="%{x}<br>%{y:.4g} KiB<extra>memory</extra>"), 2, 1)
    fig.update_yaxes(title=f"energy ({unit})", row=1, col=1)
    fig.update_yaxes(title="memory (KiB)", row=2, col=1)
    fig.update_xaxes(type="category", tickangle=-45)
    fig.update_layout(barmode="group", legend=dict(orientation="h", yanchor="bottom", y=1.04, x=1, xanchor="right"))
    fig = _base(fig, "Energy and memory beside the ANN", height=620, subject=subject)
    fig.update_layout(margin=dict(t=110))
    return fig


def class_accuracy_bars(table: pd.DataFrame, subject: str | None = None) -> go.Figure:
    """Per-class accuracy (`qnoise.accuracy.class_accuracy`: ``class, samples, correct, accuracy, low,
    high``) as bars with their 95% Wilson intervals and sample counts; the overall accuracy (row ``"all"``)
    as a line with its interval as a band."""
    check_frame(table, columns=("class", "samples", "accuracy", "low", "high"), what="per-class accuracy")
    per = table[table["class"].astype(str) != "all"]
    per = per[per["samples"] > 0]
    fig = go.Figure(go.Bar(
        x=per["class"].astype(str), y=per["accuracy"], name="class accuracy", marker_color="#4C78A8",
        error_y=dict(type="data", symmetric=False, array=per["high"] - per["accuracy"],
                     arrayminus=per["accuracy"] - per["low"], thickness=1.2, width=5),
        text=[f"n={int(n)}" for n in per["samples"]], textposition="inside", insidetextanchor="start",
        customdata=np.stack([per["correct"], per["samples"], per["low"], per["high"]], axis=-1),
        hovertemplate="class %{x}<br>%{customdata[0]} of %{customdata[1]} correct: %{y:.1%}<br>"
                      "95% interval %{customdata[2]:.1%} – %{customdata[3]:.1%}<extra></extra>"))
    overall = table[table["class"].astype(str) == "all"]
    if len(overall):
        o = overall.iloc[0]
        fig.add_hrect(y0=float(o["low"]), y1=float(o["high"]), fillcolor="#E45756", opacity=0.12, line_width=0)
        fig.add_trace(go.Scatter(x=[per["class"].astype(str).iloc[0], per["class"].astype(str).iloc[-1]],
                                 y=[o["accuracy"]] * 2, mode="lines", line=dict(color="#E45756", dash="dash"),
                                 name=f"all classes: {o['accuracy']:.1%} ({int(o['correct'])}/{int(o['samples'])}),"
                                      f" 95% {o['low']:.1%} – {o['high']:.1%}"))
    fig.update_xaxes(title="class", type="category")
    lo = float(np.nanmin(per["low"])) if len(per) else 0.0
    fig.update_yaxes(title="accuracy (bars: 95% Wilson interval)", tickformat=".0%",
                     range=[max(0.0, lo - 0.05), 1.02])
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.18, x=0))
    return _base(fig, "Accuracy per class", height=440, subject=subject)


def runs_overlay(frames: Mapping[str, pd.DataFrame], metric: str = "accuracy",
                 samples: Mapping[str, int | None] | None = None) -> go.Figure:
    """Several runs (checkpoints or sweep tables) on one set of axes: a run-level metric against T after
    all T steps (or against t for a single configuration), one colour per run and one dash per weight
    width."""
    if not frames:
        raise ValueError("runs overlay needs at least one table")
    fig = go.Figure()
    sweep_x = all(df["timesteps"].nunique() > 1 for df in frames.values())
    xs: set = set()
    for r, (name, df) in enumerate(frames.items()):
        check_frame(df, columns=("weight_bits", "timesteps", "layer", "t", "metric", "value"), metrics=[metric],
                    what=f"runs overlay ({name})")
        rows = df[(df["layer"] == OUTPUT) & (df["metric"] == metric)]
        for b, bits in enumerate(sorted_bits(rows["weight_bits"])):
            part = rows[bits_mask(rows["weight_bits"], bits)]
            if sweep_x:
                part = final_t(part).groupby("timesteps", as_index=False)["value"].mean().rename(
                    columns={"timesteps": "x"})
            else:  # against t: the run's longest configuration only (a sweep's shorter runs stop earlier)
                part = part[(part["t"] > 0) & (part["timesteps"] == part["timesteps"].max())]
                part = part.groupby("t", as_index=False)["value"].mean().rename(columns={"t": "x"})
            part = part.sort_values("x")
            xs |= set(part["x"])
            n = (samples or {}).get(name)
            dash, symbol = STYLES[b % len(STYLES)]
            fig.add_trace(go.Scatter(
                x=part["x"], y=part["value"], mode="lines+markers", legendgroup=name,
                name=f"{name}: {bits_name(bits)} weights",
                line=dict(color=COLORS[r % len(COLORS)], dash=dash, width=2.5),
                marker=dict(symbol=symbol, size=8, color=COLORS[r % len(COLORS)]),
                error_y=_error_bars(part["value"], n) if metric in FRACTIONS else None))
    if sweep_x:
        ticks = sorted(int(v) for v in xs if not is_missing(v))
        fig.update_xaxes(title="timesteps T (log scale)", type="log", tickmode="array", tickvals=ticks,
                         ticktext=[str(v) for v in ticks])
    else:
        integer_axis(fig, xs, "timestep t")
    fig.update_yaxes(title=label(metric), tickformat=".0%" if metric in FRACTIONS else None)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))
    return _base(fig, f"{label(metric)}: runs overlaid", height=480)
