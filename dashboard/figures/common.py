"""Plot builders of the dashboard: plain functions from qnoise's tidy tables (or small arrays) to plotly
figures. No Streamlit here, and no math beyond selecting and reshaping: every number comes from qnoise.

Results tables follow DESIGN.md ("Results: one tidy table"): long form, one row per
(config, layer, t, metric) with columns ``model, dataset, weight_bits, state_bits, timesteps, rounding,
neuron, layer, t, metric, value`` (plus an optional ``mode``); run-level rows have ``layer = "<output>"``.
A frame that lacks what a builder needs raises ``ValueError`` naming what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLUMNS = ("model", "dataset", "weight_bits", "state_bits", "timesteps", "rounding", "neuron", "layer", "t",
           "metric", "value")
CONFIG_COLUMNS = ("model", "dataset", "weight_bits", "state_bits", "timesteps", "rounding", "neuron", "reference")
OUTPUT = "<output>"
TEMPLATE = "plotly_white"

# the error terms (qnoise.probe.terms), in the order they stack
ERROR_PARTS = ("weight", "own", "prop", "quant", "seq")
ERROR_NAMES = {"weight": "weight", "own": "own precision", "prop": "propagated", "quant": "quantization",
               "seq": "sequential"}
ERROR_COLORS = {"weight": "#B279A2", "own": "#B279A2", "prop": "#54A24B", "quant": "#4C78A8", "seq": "#F58518"}

# DESIGN.md, "Metric names": readable labels for axes and legends
LABELS = {
    "sqnr_db": "SQNR (dB)", "mse": "MSE", "nmse": "NMSE", "cosine": "cosine similarity",
    **{f"err_{k}_mse": f"{n} error (MSE)" for k, n in ERROR_NAMES.items()},
    **{f"err_{k}_mean": f"{n} error (mean)" for k, n in ERROR_NAMES.items()},
    **{f"err_{k}_contrib": f"{n} error (share of the MSE)" for k, n in ERROR_NAMES.items()},
    "err_total_mse": "total error (MSE)", "err_total_mean": "total error (mean)",
    "firing_rate": "firing rate", "membrane_sqnr_db": "membrane SQNR (dB)", "weight_sqnr_db": "weight SQNR (dB)",
    "weight_bits": "weight bits", "params": "parameters", "synops": "synaptic operations", "macs": "MACs",
    "accuracy": "SNN accuracy", "ann_accuracy": "ANN accuracy", "agreement": "SNN/reference agreement",
    "float_snn_accuracy": "float SNN accuracy", "source_accuracy": "source ANN accuracy",
    "energy_pj": "energy (pJ)", "ann_energy_pj": "ANN energy (pJ)", "memory_bits": "memory (bits)",
}
LAYER_TIME_METRICS = ("sqnr_db", "mse", "nmse", "cosine", "err_total_mse", "err_total_mean",
                      *(f"err_{k}_{s}" for k in ERROR_PARTS for s in ("contrib", "mean", "mse")),
                      "firing_rate", "membrane_sqnr_db")


def label(metric: str) -> str:
    """Readable name of a metric (the metric's own name when it has none)."""
    return LABELS.get(metric, metric)


# ---------------------------------------------------------------- validation and selection

def check_frame(df, *, columns: Iterable[str] = ("layer", "t", "metric", "value"),
                metrics: Iterable[str] = (), what: str = "this figure") -> pd.DataFrame:
    """Raise ``ValueError`` unless ``df`` is a non-empty DataFrame with ``columns`` and rows of ``metrics``."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what} needs a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs column(s) {missing}; the table has {list(df.columns)}")
    if df.empty:
        raise ValueError(f"{what} got an empty table")
    metrics = list(metrics)
    if metrics:
        have = set(df["metric"].unique())
        lacking = [m for m in metrics if m not in have]
        if len(lacking) == len(metrics):
            raise ValueError(f"{what} needs metric(s) {lacking}; the table has {sorted(map(str, have))}")
    return df


def layers_in_order(df: pd.DataFrame) -> list[str]:
    """Layer names in the order the table lists them (the network's order), run-level rows left out."""
    return [str(x) for x in pd.unique(df["layer"]) if x != OUTPUT]


def config_label(row: Mapping | pd.Series, keys: Sequence[str] = ("weight_bits", "timesteps")) -> str:
    """Short name of a configuration, e.g. ``"W4 T8"``; floats and missing values (no quantization) as 'fp'."""
    short = {"weight_bits": "W", "state_bits": "S", "timesteps": "T", "rounding": "", "neuron": "",
             "model": "", "mode": ""}
    parts = []
    for k in keys:
        if k not in row:
            continue
        v = row[k]
        if v is None or (isinstance(v, float) and np.isnan(v)):
            v = "fp"
        elif isinstance(v, float) and v.is_integer():
            v = int(v)
        parts.append(f"{short.get(k, k + '=')}{v}")
    return " ".join(parts)


def final_t(df: pd.DataFrame) -> pd.DataFrame:
    """Rows at the last timestep of each configuration (the value after all T steps)."""
    if "t" not in df.columns:
        return df
    keys = [c for c in (*CONFIG_COLUMNS, "mode", "layer", "metric", "variant") if c in df.columns]
    if df.empty:
        return df
    t = pd.to_numeric(df["t"], errors="coerce")
    last = t.groupby([df[k] for k in keys], dropna=False).transform("max") if keys else pd.Series(t.max(), df.index)
    return df[(t == last) | t.isna()]


def select(df: pd.DataFrame, metric: str | None = None, layer: str | None = None, **config) -> pd.DataFrame:
    """Rows of one metric and/or layer and configuration values (``None`` values match missing ones)."""
    mask = pd.Series(True, index=df.index)
    if metric is not None:
        mask &= df["metric"] == metric
    if layer is not None:
        mask &= df["layer"] == layer
    for k, v in config.items():
        if k not in df.columns:
            continue
        mask &= df[k].isna() if v is None else (df[k] == v)
    return df[mask]


def _base(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(template=TEMPLATE, title=dict(text=title, x=0.01, xanchor="left"), height=height,
                      margin=dict(l=60, r=20, t=50, b=50))
    return fig


def _bits_name(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "float"
    if float(v) >= 32:
        return "float"
    return f"{int(v)}-bit" if float(v).is_integer() else str(v)


def _sorted_bits(values) -> list:
    """Bit widths ascending, float (missing) last."""
    vals = list(pd.unique(values))
    known = sorted(v for v in vals if not (v is None or (isinstance(v, float) and np.isnan(v))))
    return known + [v for v in vals if v is None or (isinstance(v, float) and np.isnan(v))]


def _bits_mask(series: pd.Series, bits) -> pd.Series:
    if bits is None or (isinstance(bits, float) and np.isnan(bits)):
        return series.isna()
    return series == bits


# ---------------------------------------------------------------- overview

def accuracy_vs_timesteps(df: pd.DataFrame, show_ann: bool = True) -> go.Figure:
    """SNN accuracy against timesteps, one line per weight bit width (the ANN's accuracy dashed).

    Over a sweep (several ``timesteps`` values) each configuration contributes its accuracy after all of
    its T steps; for a single run (one ``timesteps``) the x axis is the timestep t (accuracy so far).
    """
    check_frame(df, columns=("weight_bits", "timesteps", "layer", "t", "metric", "value"), metrics=["accuracy"],
                what="accuracy vs timesteps")
    run = df[df["layer"] == OUTPUT]
    acc = run[run["metric"] == "accuracy"]
    if acc.empty:
        raise ValueError("accuracy vs timesteps needs run-level rows (layer='<output>') of metric 'accuracy'")
    sweep = acc["timesteps"].nunique() > 1
    xcol = "timesteps" if sweep else "t"
    fig = go.Figure()
    for bits in _sorted_bits(acc["weight_bits"]):
        part = acc[_bits_mask(acc["weight_bits"], bits)]
        part = final_t(part) if sweep else part
        part = part.groupby(xcol, as_index=False)["value"].mean().sort_values(xcol)
        fig.add_trace(go.Scatter(x=part[xcol], y=part["value"], mode="lines+markers",
                                 name=f"SNN, {_bits_name(bits)} weights"))
    ann = run[run["metric"] == "ann_accuracy"]
    if show_ann and not ann.empty:
        per_t = ann[ann["t"] > 0] if not sweep else ann
        if sweep or per_t.empty:  # one ANN accuracy (t = 0: it does not depend on T)
            xs = sorted(acc[xcol].unique())
            fig.add_trace(go.Scatter(x=[xs[0], xs[-1]], y=[ann["value"].max()] * 2, mode="lines", name="ANN twin",
                                     line=dict(dash="dash", color="black")))
        else:
            per_t = per_t.groupby(xcol, as_index=False)["value"].max().sort_values(xcol)
            fig.add_trace(go.Scatter(x=per_t[xcol], y=per_t["value"], mode="lines", name="ANN twin",
                                     line=dict(dash="dash", color="black")))
    ticks = sorted(int(v) for v in acc[xcol].unique())
    fig.update_xaxes(title="timesteps T" if sweep else "timestep t", type="log" if sweep else "linear",
                     tickvals=ticks if len(ticks) <= 16 else None)
    fig.update_yaxes(title="accuracy", tickformat=".0%")
    return _base(fig, "Accuracy vs timesteps")


def metric_heatmap(df: pd.DataFrame, metric: str = "accuracy", layer: str = OUTPUT) -> go.Figure:
    """Weight bits x timesteps heatmap of a metric after all T steps (default: accuracy)."""
    check_frame(df, columns=("weight_bits", "timesteps", "layer", "t", "metric", "value"), metrics=[metric],
                what=f"bits x timesteps heatmap of {metric}")
    part = final_t(df[(df["metric"] == metric) & (df["layer"] == layer)])
    if part.empty:
        raise ValueError(f"no rows of metric {metric!r} for layer {layer!r}")
    part = part.assign(bits=part["weight_bits"].map(_bits_name))
    grid = part.pivot_table(index="bits", columns="timesteps", values="value", aggfunc="mean")
    order = [_bits_name(b) for b in _sorted_bits(part["weight_bits"])]
    grid = grid.reindex(index=order).sort_index(axis=1)
    fmt = ".1%" if metric in ("accuracy", "ann_accuracy", "agreement") else ".3g"
    text = [[("" if pd.isna(v) else format(v, fmt)) for v in row] for row in grid.to_numpy()]
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=[str(c) for c in grid.columns], y=list(grid.index),
                               text=text, texttemplate="%{text}", colorscale="Viridis",
                               colorbar=dict(title=label(metric)),
                               hovertemplate="T=%{x}<br>weights %{y}<br>%{z:.4g}<extra></extra>"))
    fig.update_xaxes(title="timesteps T", type="category")
    fig.update_yaxes(title="weight bits", type="category")
    return _base(fig, f"{label(metric)}: weight bits x timesteps")


def cost_comparison(df: pd.DataFrame) -> go.Figure:
    """Energy (SNN beside the ANN) and memory per configuration, after all T steps."""
    check_frame(df, columns=("weight_bits", "timesteps", "layer", "t", "metric", "value"),
                metrics=["energy_pj", "memory_bits"], what="memory and energy")
    run = final_t(df[df["layer"] == OUTPUT])
    keys = ["weight_bits", "timesteps"] + (["state_bits"] if run["state_bits"].nunique() > 1 else []) \
        if "state_bits" in run.columns else ["weight_bits", "timesteps"]
    wide = run.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean", dropna=False).reset_index()
    wide = wide.dropna(subset=[c for c in ("energy_pj", "memory_bits") if c in wide.columns], how="all")
    if wide.empty:
        raise ValueError("memory and energy needs run-level rows (layer='<output>') of energy_pj or memory_bits")
    names = [config_label(r, keys) for _, r in wide.iterrows()]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Energy per sample", "Memory"))
    if "energy_pj" in wide:
        fig.add_trace(go.Bar(x=names, y=wide["energy_pj"], name="SNN energy", marker_color="#4C78A8"), 1, 1)
    if "ann_energy_pj" in wide:
        fig.add_trace(go.Bar(x=names, y=wide["ann_energy_pj"], name="ANN energy", marker_color="#9D9D9D"), 1, 1)
    if "memory_bits" in wide:
        fig.add_trace(go.Bar(x=names, y=wide["memory_bits"] / 8 / 1024, name="memory (KiB)",
                             marker_color="#E45756"), 1, 2)
    fig.update_yaxes(title="pJ", row=1, col=1)
    fig.update_yaxes(title="KiB", row=1, col=2)
    fig.update_layout(barmode="group")
    return _base(fig, "Energy and memory beside the ANN")


# ---------------------------------------------------------------- layer noise

def layer_time_heatmap(df: pd.DataFrame, metric: str = "sqnr_db") -> go.Figure:
    """Layer x timestep heatmap of a per-layer metric for one configuration."""
    check_frame(df, metrics=[metric], what=f"layer x timestep heatmap of {metric}")
    part = df[(df["metric"] == metric) & (df["layer"] != OUTPUT)]
    if part.empty:
        raise ValueError(f"no per-layer rows of metric {metric!r}")
    layers = layers_in_order(part)
    grid = part.pivot_table(index="layer", columns="t", values="value", aggfunc="mean").reindex(layers)
    diverging = metric.endswith("_mean")
    zmax = float(np.nanmax(np.abs(grid.to_numpy()))) if diverging else None
    fig = go.Figure(go.Heatmap(
        z=grid.to_numpy(), x=[int(c) if float(c).is_integer() else c for c in grid.columns], y=layers,
        colorscale="RdBu" if diverging else "Viridis", zmid=0 if diverging else None,
        zmin=-zmax if diverging else None, zmax=zmax if diverging else None,
        colorbar=dict(title=label(metric)), hovertemplate="layer %{y}<br>t=%{x}<br>%{z:.4g}<extra></extra>"))
    fig.update_xaxes(title="timestep t", dtick=1 if grid.shape[1] <= 32 else None)
    fig.update_yaxes(title="layer", autorange="reversed", type="category")
    return _base(fig, f"{label(metric)} per layer and timestep", height=max(320, 60 + 40 * len(layers)))


def error_decomposition(df: pd.DataFrame, t: int | None = None, kind: str = "contrib") -> go.Figure:
    """Per-layer stacked bars of the error terms at timestep ``t`` (default: the last): their contributions
    ``err_k_contrib`` (``kind="contrib"``: each term's share of the squared error; they add up to the total
    MSE, drawn as a marker) or their signed means (``kind="mean"``; they add up to the total mean). The
    terms' own MSEs do not add up, so they are never stacked."""
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
    fig.update_yaxes(title="signed mean error" if kind == "mean" else "share of the squared error (sums to the MSE)")
    when = "last timestep" if t is None else f"t = {t}"
    return _base(fig, f"Error terms per layer ({'signed means' if kind == 'mean' else 'contributions'}), {when}")


def per_layer_bars(df: pd.DataFrame, metric: str = "weight_sqnr_db") -> go.Figure:
    """One bar per layer of a per-layer metric (weight SQNR, parameters, synops, ...)."""
    check_frame(df, metrics=[metric], what=f"per-layer {metric}")
    part = final_t(df[(df["metric"] == metric) & (df["layer"] != OUTPUT)])
    if part.empty:
        raise ValueError(f"no per-layer rows of metric {metric!r}")
    layers = layers_in_order(part)
    vals = part.groupby("layer")["value"].mean().reindex(layers)
    fig = go.Figure(go.Bar(x=layers, y=vals.to_numpy(), marker_color="#72B7B2", name=label(metric),
                           text=[f"{v:.3g}" for v in vals], textposition="outside"))
    fig.update_xaxes(title="layer", type="category")
    fig.update_yaxes(title=label(metric))
    return _base(fig, f"{label(metric)} per layer")


def sensitivity_bars(df: pd.DataFrame, metric: str = "accuracy") -> go.Figure:
    """Per-layer sensitivity (`qnoise.sensitivity`): accuracy with only this layer quantized (``variant
    "only"``) and with every layer but this one (``"all_but"``), one subplot per ``quantity`` (weights,
    timesteps); the ``layer="<all>"`` baselines (all quantized / none) are dotted lines."""
    check_frame(df, columns=("layer", "metric", "value", "variant"), metrics=[metric], what="sensitivity")
    part = df[df["metric"] == metric]
    quantities = list(pd.unique(part["quantity"])) if "quantity" in part.columns else [None]
    fig = make_subplots(rows=1, cols=len(quantities), shared_yaxes=True,
                        subplot_titles=[f"{q} quantized" for q in quantities] if quantities != [None] else None)
    palette = {"only": "#4C78A8", "all_but": "#E45756"}
    names = {"only": "this layer alone quantized", "all_but": "all layers but this one quantized"}
    for col, q in enumerate(quantities, start=1):
        sub = part if q is None else part[part["quantity"] == q]
        per_layer = sub[~sub["layer"].isin([OUTPUT, "<all>"])]
        layers = layers_in_order(per_layer)
        for variant in pd.unique(per_layer["variant"]):
            v = per_layer[per_layer["variant"] == variant].groupby("layer")["value"].mean().reindex(layers)
            fig.add_trace(go.Bar(x=layers, y=v.to_numpy(), name=names.get(variant, str(variant)),
                                 marker_color=palette.get(variant, "#9D9D9D"), showlegend=col == 1,
                                 legendgroup=str(variant)), 1, col)
        for _, r in sub[sub["layer"] == "<all>"].iterrows():
            fig.add_hline(y=float(r["value"]), line_dash="dot", row=1, col=col,
                          annotation_text={"all": "all quantized", "none": "none quantized"}.get(r["variant"],
                                                                                                  str(r["variant"])))
        fig.update_xaxes(title="layer", type="category", row=1, col=col)
    fig.update_yaxes(title=label(metric), row=1, col=1)
    fig.update_layout(barmode="group")
    return _base(fig, "Per-layer sensitivity")


# ---------------------------------------------------------------- spikes

def _as_2d(values, what: str) -> np.ndarray:
    arr = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{what} needs a non-empty [T, N] array, got shape {arr.shape}")
    return arr


def spike_raster(spikes, title: str = "Spike raster", max_neurons: int = 512) -> go.Figure:
    """Raster of a ``[T, N]`` spike array (values in {-1, 0, 1}; the first ``max_neurons`` neurons), drawn
    as a neuron x timestep image: dark = spike, red = negative spike (signed IF), white = silent."""
    s = _as_2d(spikes, "spike raster")[:, :max_neurons]
    signed = bool((s < 0).any())
    scale = [[0.0, "#E45756"], [0.5, "#ffffff"], [1.0, "#1f2d3d"]] if signed else [[0.0, "#ffffff"], [1.0, "#1f2d3d"]]
    fig = go.Figure(go.Heatmap(z=s.T, x=np.arange(1, s.shape[0] + 1), y=np.arange(s.shape[1]), colorscale=scale,
                               zmin=-1 if signed else 0, zmax=1, showscale=False, xgap=1 if s.shape[0] <= 64 else 0,
                               name="spikes", hovertemplate="t=%{x}<br>neuron %{y}<br>spike %{z}<extra></extra>"))
    fig.update_xaxes(title="timestep t", dtick=1 if s.shape[0] <= 32 else None)
    fig.update_yaxes(title="neuron", autorange="reversed")
    rate = float(np.abs(s).mean())
    return _base(fig, f"{title} ({rate:.1%} of neuron-steps spike)", height=460)


def firing_rate_lines(df: pd.DataFrame) -> go.Figure:
    """Firing rate per layer over timesteps; hover shows the sparsity (share of silent neuron-steps)."""
    check_frame(df, metrics=["firing_rate"], what="firing rate")
    part = df[(df["metric"] == "firing_rate") & (df["layer"] != OUTPUT)]
    fig = go.Figure()
    for layer in layers_in_order(part):
        p = part[part["layer"] == layer].groupby("t", as_index=False)["value"].mean().sort_values("t")
        fig.add_trace(go.Scatter(x=p["t"], y=p["value"], mode="lines+markers", name=layer,
                                 customdata=1 - p["value"],
                                 hovertemplate=f"{layer}<br>t=%{{x}}<br>rate %{{y:.3f}}<br>sparsity "
                                               f"%{{customdata:.1%}}<extra></extra>"))
    fig.update_xaxes(title="timestep t")
    fig.update_yaxes(title="firing rate (spikes per neuron per step)", rangemode="tozero")
    return _base(fig, "Firing rate per layer (sparsity = 1 - rate)")


def membrane_traces(membrane, threshold, spikes=None, title: str = "Membrane potential",
                    names: Sequence | None = None) -> go.Figure:
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
    fig.update_xaxes(title="timestep t")
    fig.update_yaxes(title="membrane v (after charging)")
    return _base(fig, title)


def membrane_histogram(values, levels=None, title: str = "Membrane potential histogram") -> go.Figure:
    """Histogram of membrane values with the quantization levels of the state bits as vertical lines."""
    v = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values, dtype=float).ravel()
    if v.size == 0:
        raise ValueError("membrane histogram needs at least one value")
    fig = go.Figure(go.Histogram(x=v, nbinsx=80, name="membrane", marker_color="#4C78A8"))
    if levels is not None:
        lv = np.asarray(levels, dtype=float).ravel()
        lo, hi = float(v.min()), float(v.max())
        shown = lv[(lv >= lo - (hi - lo) * 0.05) & (lv <= hi + (hi - lo) * 0.05)]
        for x in shown[:129]:
            fig.add_vline(x=float(x), line_color="rgba(228,87,86,0.45)", line_width=1)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(color="#E45756"),
                                 name=f"state levels ({len(lv)})"))
    fig.update_xaxes(title="membrane v")
    fig.update_yaxes(title="count")
    return _base(fig, title)


# ---------------------------------------------------------------- diagnose

def activation_scatter(ann, snn, layer: str = "", max_points: int = 4000) -> go.Figure:
    """ANN twin activation (x) against SNN rate (y) for the neurons of one layer; the diagonal is exact."""
    a = np.asarray(ann.detach().cpu().numpy() if hasattr(ann, "detach") else ann, dtype=float).ravel()
    r = np.asarray(snn.detach().cpu().numpy() if hasattr(snn, "detach") else snn, dtype=float).ravel()
    if a.size == 0 or a.shape != r.shape:
        raise ValueError(f"activation scatter needs two equal, non-empty arrays, got {a.shape} and {r.shape}")
    if a.size > max_points:  # evenly spaced subset: the plot stays light
        idx = np.linspace(0, a.size - 1, max_points).astype(int)
        a, r = a[idx], r[idx]
    lo, hi = float(min(a.min(), r.min())), float(max(a.max(), r.max()))
    fig = go.Figure([
        go.Scattergl(x=a, y=r, mode="markers", name="neurons", marker=dict(size=4, opacity=0.45, color="#4C78A8")),
        go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="SNN = ANN", line=dict(dash="dash", color="black")),
    ])
    fig.update_xaxes(title="ANN twin activation")
    fig.update_yaxes(title="SNN rate")
    return _base(fig, f"ANN activation vs SNN rate{': ' + layer if layer else ''}")


def drop_profile(df: pd.DataFrame, born: str | None = None) -> go.Figure:
    """SQNR and cosine similarity per layer at the last timestep (propagated: the SNN as it runs; with
    isolated-mode rows also each layer fed the ANN twin's input); the layer where the drop is born marked."""
    check_frame(df, metrics=["sqnr_db", "cosine"], what="where the drop is born")
    rows = final_t(df[df["metric"].isin(["sqnr_db", "cosine"]) & (df["layer"] != OUTPUT)])
    iso = rows[rows["mode"] == "isolated"] if "mode" in rows.columns else rows.iloc[0:0]
    part = rows[rows["mode"] != "isolated"] if "mode" in rows.columns else rows
    layers = layers_in_order(part if len(part) else rows)
    wide = part.pivot_table(index="layer", columns="metric", values="value", aggfunc="mean").reindex(layers)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    if "sqnr_db" in wide:
        fig.add_trace(go.Scatter(x=layers, y=wide["sqnr_db"], mode="lines+markers", name="SQNR (dB), propagated",
                                 line=dict(color="#4C78A8", width=3)), secondary_y=False)
    if len(iso):
        iso_db = iso[iso["metric"] == "sqnr_db"].groupby("layer")["value"].mean().reindex(layers)
        fig.add_trace(go.Scatter(x=layers, y=iso_db.to_numpy(), mode="lines+markers", name="SQNR (dB), isolated",
                                 line=dict(color="#54A24B", dash="dash")), secondary_y=False)
    if "cosine" in wide:
        fig.add_trace(go.Scatter(x=layers, y=wide["cosine"], mode="lines+markers", name="cosine, propagated",
                                 line=dict(color="#F58518", dash="dot")), secondary_y=True)
    if born is not None and born in layers:
        fig.add_vrect(x0=layers.index(born) - 0.4, x1=layers.index(born) + 0.4, fillcolor="#E45756",
                      opacity=0.15, line_width=0, annotation_text="drop born here", annotation_position="top")
    fig.update_xaxes(title="layer", type="category")
    fig.update_yaxes(title="SQNR (dB)", secondary_y=False)
    fig.update_yaxes(title="cosine similarity", secondary_y=True)
    return _base(fig, "Where the drop is born (vs the ANN twin, last timestep)")


def config_comparison(frames: Mapping[str, pd.DataFrame], metric: str = "sqnr_db") -> go.Figure:
    """A per-layer metric at the last timestep for several configurations, side by side."""
    if not frames:
        raise ValueError("config comparison needs at least one table")
    fig = go.Figure()
    for name, df in frames.items():
        check_frame(df, metrics=[metric], what=f"comparison ({name})")
        part = final_t(df[(df["metric"] == metric) & (df["layer"] != OUTPUT)])
        layers = layers_in_order(part)
        fig.add_trace(go.Bar(x=layers, y=part.groupby("layer")["value"].mean().reindex(layers).to_numpy(),
                             name=str(name)))
    fig.update_layout(barmode="group")
    fig.update_xaxes(title="layer", type="category")
    fig.update_yaxes(title=label(metric))
    return _base(fig, f"{label(metric)} per layer, last timestep")


# ---------------------------------------------------------------- budget

def pareto_scatter(points: pd.DataFrame, cost: str = "memory_bits", front: pd.DataFrame | None = None,
                   chosen: Mapping | pd.Series | None = None) -> go.Figure:
    """Accuracy against a cost (memory or energy) for every configuration of a sweep, the Pareto front as
    a line and the chosen configuration ringed. ``points`` is wide: one row per configuration with
    ``weight_bits``, ``timesteps``, ``accuracy`` and the cost column."""
    check_frame(points, columns=("weight_bits", "timesteps", "accuracy", cost), what="Pareto plot")
    hover = [config_label(r, [k for k in ("weight_bits", "timesteps", "state_bits", "neuron") if k in points])
             for _, r in points.iterrows()]
    fig = go.Figure(go.Scatter(
        x=points[cost], y=points["accuracy"], mode="markers", name="configurations", text=hover,
        marker=dict(size=9, color=points["timesteps"], colorscale="Viridis", showscale=True,
                    colorbar=dict(title="T")),
        hovertemplate="%{text}<br>%{x:.4g}<br>accuracy %{y:.2%}<extra></extra>"))
    if front is not None and len(front):
        f = front.sort_values(cost)
        fig.add_trace(go.Scatter(x=f[cost], y=f["accuracy"], mode="lines", name="Pareto front",
                                 line=dict(color="#E45756", width=2, shape="hv")))
    if chosen is not None:
        fig.add_trace(go.Scatter(x=[chosen[cost]], y=[chosen["accuracy"]], mode="markers", name="smallest within "
                                 "tolerance", marker=dict(size=20, symbol="circle-open", color="black",
                                                          line=dict(width=3))))
    fig.update_xaxes(title=label(cost), type="log", tickformat="~s")
    fig.update_yaxes(title="accuracy", tickformat=".0%")
    fig = _base(fig, f"Accuracy vs {label(cost)}", height=500)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0.0),
                      margin=dict(b=110))
    return fig


# ---------------------------------------------------------------- learn

def neuron_figure(inputs, membrane, spikes, threshold: float, out=None) -> go.Figure:
    """One neuron over T steps: input, membrane (after charging) with the threshold, and its spikes."""
    x = np.asarray(inputs, dtype=float).ravel()
    v = np.asarray(membrane, dtype=float).ravel()
    s = np.asarray(spikes, dtype=float).ravel()
    if not (x.size == v.size == s.size) or x.size == 0:
        raise ValueError(f"neuron figure needs equal non-empty input, membrane and spikes, got "
                         f"{x.size}, {v.size}, {s.size}")
    t = np.arange(1, x.size + 1)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.25, 0.5, 0.25],
                        subplot_titles=("input x[t]", "membrane v[t] (after charging, before reset)", "spikes"))
    fig.add_trace(go.Bar(x=t, y=x, name="input", marker_color="#9D9D9D"), 1, 1)
    fig.add_trace(go.Scatter(x=t, y=v, mode="lines+markers", name="membrane", line=dict(color="#4C78A8")), 2, 1)
    fig.add_hline(y=float(threshold), line_dash="dash", line_color="black", row=2, col=1,
                  annotation_text=f"θ = {threshold:.3g}")
    fired = s != 0
    fig.add_trace(go.Bar(x=t[fired], y=s[fired], name="spike", marker_color="#E45756", width=0.3), 3, 1)
    fig.update_xaxes(title="timestep t", row=3, col=1, dtick=1 if x.size <= 32 else None)
    fig.update_yaxes(range=[-1.2, 1.2], row=3, col=1)
    title = "One IF neuron"
    if out is not None:
        title += f": mean output {float(np.mean(out)):.4g}"
    return _base(fig, title, height=560)


def staircase_figure(x, rate, relu, t: int, point: float | None = None) -> go.Figure:
    """The SNN as a quantizer: mean output over T steps against a constant input, beside clamp(x, 0, θ)."""
    x, rate, relu = (np.asarray(a, dtype=float).ravel() for a in (x, rate, relu))
    if not (x.size == rate.size == relu.size) or x.size == 0:
        raise ValueError("staircase needs equal, non-empty x, rate and relu arrays")
    fig = go.Figure([
        go.Scatter(x=x, y=relu, mode="lines", name="ANN: clamp(x, 0, θ)", line=dict(color="black", dash="dash")),
        go.Scatter(x=x, y=rate, mode="lines", name=f"SNN rate, T = {t} ({t + 1} levels)",
                   line=dict(color="#E45756", width=3, shape="hv")),
    ])
    if point is not None:
        fig.add_vline(x=float(point), line_color="#4C78A8", annotation_text="this input")
    fig.update_xaxes(title="constant input x")
    fig.update_yaxes(title="mean output")
    return _base(fig, "Rate vs input: an IF neuron is a quantized ReLU")


def sigmoid_sum_figure(x, curves: Mapping[float, Sequence[float]], hard=None) -> go.Figure:
    """Sum-of-sigmoids quantizer outputs for several temperatures, and its hard (unit step) limit."""
    x = np.asarray(x, dtype=float).ravel()
    if not curves:
        raise ValueError("sigmoid-sum figure needs at least one temperature curve")
    fig = go.Figure()
    temps = sorted(curves)
    for i, temp in enumerate(temps):
        y = np.asarray(curves[temp], dtype=float).ravel()
        if y.size != x.size:
            raise ValueError(f"curve for T={temp} has {y.size} points, x has {x.size}")
        shade = 0.25 + 0.75 * (i + 1) / len(temps)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"T = {temp:g}",
                                 line=dict(color=f"rgba(76,120,168,{shade:.2f})", width=2)))
    if hard is not None:
        fig.add_trace(go.Scatter(x=x, y=np.asarray(hard, dtype=float).ravel(), mode="lines", name="inference (step)",
                                 line=dict(color="black", dash="dash", shape="hv")))
    fig.update_xaxes(title="weight w")
    fig.update_yaxes(title="quantized weight")
    return _base(fig, "Sum-of-sigmoids quantizer hardening as the temperature rises")


# ---------------------------------------------------------------- exports

def to_html(fig: go.Figure) -> bytes:
    """A standalone HTML page of the figure that works offline (plotly.js inlined, ~4 MB)."""
    return fig.to_html(include_plotlyjs=True, full_html=True).encode()
