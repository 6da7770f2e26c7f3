"""Budget figure: accuracy against memory (KiB) or energy (nJ/µJ) for every configuration, each point
labelled and with its 95% interval, the Pareto front, a budget line and the chosen configuration."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .common import _base, check_frame, config_label, energy_unit, label, log_ticks

LABEL_KEYS = ("dataset", "weight_bits", "timesteps", "state_bits", "rounding", "neuron")


def cost_axis(cost: str, values) -> tuple[float, str]:
    """``(divisor, axis title)`` turning a cost column into readable units (KiB, nJ or µJ)."""
    if cost == "memory_bits":
        return 8192.0, "memory (KiB)"
    if cost.endswith("energy_pj"):
        div, unit = energy_unit(values)
        return div, f"{label(cost).replace(' (pJ)', '')} per sample ({unit})"
    return 1.0, label(cost)


def cluster_labels(points: pd.DataFrame, cost: str, names: list[str], keys: list[str]) -> list[str]:
    """One label per group of points at the same cost (memory does not depend on T, so a width's every T sits
    at one x): the group's best point names them all (e.g. "W4 T1–16"), the others stay unlabelled (their
    hover names them); a lone point keeps its own label."""
    x = points[cost].to_numpy(dtype=float)
    acc = points["accuracy"].to_numpy(dtype=float)
    out = [""] * len(points)
    used = np.zeros(len(points), dtype=bool)
    for i in np.argsort(-acc, kind="stable"):
        if used[i]:
            continue
        same = ~used & np.isclose(x, x[i], rtol=1e-6)
        idx = np.flatnonzero(same)
        used[idx] = True
        if len(idx) == 1:
            out[i] = names[i]
            continue
        group = points.iloc[idx]
        if "label" in points or "timesteps" not in points:  # labels of their own (a search's): the best one
            out[i] = names[i]
            continue
        fixed = [k for k in keys if k != "timesteps" and group[k].nunique(dropna=False) == 1]
        head = config_label(group.iloc[0], fixed) if fixed else ""
        steps = sorted(int(t) for t in group["timesteps"].unique()) if "timesteps" in group else []
        span = (f"T{steps[0]}–{steps[-1]}" if len(steps) > 1 else f"T{steps[0]}") if steps else ""
        out[i] = " ".join(p for p in (head, span) if p) if len(fixed) == len(keys) - 1 else \
            f"{len(idx)} configurations"
    return out


def pareto_scatter(points: pd.DataFrame, cost: str = "memory_bits", front: pd.DataFrame | None = None,
                   chosen: Mapping | pd.Series | None = None, limit: float | None = None,
                   subject: str | None = None, chosen_name: str = "chosen") -> go.Figure:
    """Accuracy against a cost for every configuration (``points``: one row per configuration with
    ``weight_bits``, ``timesteps``, ``accuracy``, the cost column and, when known, the Wilson interval
    ``ci_low``/``ci_high`` and a ``label``: the columns of `qnoise.choice.with_intervals` and of a mixed-precision
    search's table), each point labelled with its configuration; the Pareto front as a line, the budget
    ``limit`` (in the cost's own unit, pJ or bits) as a vertical line and the chosen configuration ringed."""
    check_frame(points, columns=("accuracy", cost), what="Pareto plot")
    div, xtitle = cost_axis(cost, points[cost])
    keys = [k for k in LABEL_KEYS if k in points and points[k].nunique(dropna=False) > 1] or \
        [k for k in ("weight_bits", "timesteps") if k in points]
    names = list(points["label"].astype(str)) if "label" in points else [config_label(r, keys)
                                                                         for _, r in points.iterrows()]
    shown = cluster_labels(points, cost, names, keys)
    err = None
    if {"ci_low", "ci_high"} <= set(points.columns) and points["ci_low"].notna().any():
        err = dict(type="data", symmetric=False, array=(points["ci_high"] - points["accuracy"]).to_numpy(),
                   arrayminus=(points["accuracy"] - points["ci_low"]).to_numpy(), thickness=1, width=3,
                   color="rgba(60,60,60,0.45)")
    fig = go.Figure(go.Scatter(
        x=points[cost] / div, y=points["accuracy"], mode="markers+text", name="configurations", text=shown,
        customdata=names, textposition="top center", textfont=dict(size=10, color="#444"), error_y=err,
        marker=dict(size=9, color=np.log2(points["timesteps"].astype(float)), colorscale="Viridis", showscale=True,
                    colorbar=dict(title="T", tickvals=np.log2(sorted(points["timesteps"].unique())).tolist(),
                                  ticktext=[str(int(t)) for t in sorted(points["timesteps"].unique())]))
        if "timesteps" in points else dict(size=9, color="#4C78A8"),
        hovertemplate="%{customdata}<br>%{x:.4g}<br>accuracy %{y:.2%}<extra></extra>"))
    if front is not None and len(front):
        f = front.sort_values(cost)
        fig.add_trace(go.Scatter(x=f[cost] / div, y=f["accuracy"], mode="lines", name="Pareto front",
                                 line=dict(color="#E45756", width=2, shape="hv")))
    if limit is not None:
        fig.add_vline(x=float(limit) / div, line_color="#F58518", line_dash="dash", line_width=2)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"budget: {limit / div:.4g}",
                                 line=dict(color="#F58518", dash="dash")))
    if chosen is not None:
        fig.add_trace(go.Scatter(x=[chosen[cost] / div], y=[chosen["accuracy"]], mode="markers", name=chosen_name,
                                 marker=dict(size=22, symbol="circle-open", color="black", line=dict(width=3))))
    ticks = log_ticks(points[cost] / div)
    fig.update_xaxes(title=xtitle, type="log", tickmode="array" if ticks else None, tickvals=ticks or None,
                     ticktext=[f"{t:g}" for t in ticks] or None)
    fig.update_yaxes(title="accuracy" + (" (bars: 95% interval)" if err else ""), tickformat=".0%")
    fig = _base(fig, f"Accuracy vs {xtitle}", height=540, subject=subject)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0.0),
                      margin=dict(b=110))
    return fig


def layer_bits_bars(row: Mapping | pd.Series, subject: str | None = None) -> go.Figure:
    """A search's configuration per layer: one bar per weight layer (``w:<layer>`` columns) and per neuron layer
    (``v:<neuron>``, membrane bits), float drawn at 32 and named so."""
    items = [(str(k)[2:], str(k)[:2], v) for k, v in dict(row).items() if str(k).startswith(("w:", "v:"))]
    if not items:
        raise ValueError("the row holds no per-layer bits (w:<layer> / v:<neuron> columns of a search's table)")
    fig = go.Figure()
    for kind, name, color in (("w:", "weight bits", "#4C78A8"), ("v:", "membrane bits", "#F58518")):
        part = [(layer, int(v)) for layer, k, v in items if k == kind and v == v]
        if part:
            fig.add_trace(go.Bar(x=[p[0] for p in part], y=[p[1] for p in part], name=name, marker_color=color,
                                 text=["float" if b >= 32 else str(b) for _, b in part], textposition="outside"))
    fig.update_yaxes(title="bits (32 = float)", range=[0, 36])
    fig.update_xaxes(title="layer", type="category")
    return _base(fig, "The chosen configuration per layer", subject=subject)
