"""Diagnose figures: the reference's activation against the SNN's rate, and the per-layer drop profile with the
layer where the noise is born."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import OUTPUT, _base, check_frame, final_t, layers_in_order


def activation_scatter(ann, snn, layer: str = "", max_points: int = 4000, subject: str | None = None) -> go.Figure:
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
    fig.update_xaxes(title="reference activation")
    fig.update_yaxes(title="SNN rate")
    return _base(fig, f"Reference activation vs SNN rate{': ' + layer if layer else ''}", subject=subject)


def drop_profile(df: pd.DataFrame, born: str | None = None, subject: str | None = None) -> go.Figure:
    """SQNR and cosine similarity per layer at the last timestep (propagated: the SNN as it runs; with
    isolated-mode rows also each layer fed the reference's input); the layer where the noise is born
    (`qnoise.insights.drop_birth`, the one the hints name) marked."""
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
                      opacity=0.15, line_width=0, annotation_text=f"noise born here: {born}",
                      annotation_position="top")
    fig.update_xaxes(title="layer", type="category")
    fig.update_yaxes(title="SQNR (dB)", secondary_y=False)
    fig.update_yaxes(title="cosine similarity", secondary_y=True)
    ref = str(df["reference"].iloc[0]) if "reference" in df.columns and len(df) else "reference"
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.22, x=0))
    fig = _base(fig, f"Where the noise is born (vs {ref}, last timestep)", height=460, subject=subject)
    fig.update_layout(margin=dict(b=110))
    return fig
