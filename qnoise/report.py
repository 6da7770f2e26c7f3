"""Reports from probe tables: text summaries, paper-ready CSV tables and a standalone HTML page.

Everything here is a pure function of the long-form table (`qnoise.probe.COLUMNS`); figures are plotly
figures, and the HTML embeds plotly.js once, inline, so the page opens offline without a server.

Tables (CSV):

- ``accuracy.csv``: SNN accuracy after T steps, rows weight bits, columns T (one block per other config).
- ``runs.csv``: one row per configuration, every run-level metric after T steps (``layer="<output>"``).
- ``layers.csv``: one row per configuration and layer, the per-layer metrics after T steps (propagated;
  the per-layer ``weight_bits`` metric is named ``layer_weight_bits`` there).
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from .io import atomic_write_bytes

OUTPUT = "<output>"
CONFIG = ["model", "dataset", "weight_bits", "state_bits", "timesteps", "rounding", "neuron", "reference"]
ERROR_TERMS = ("weight", "own", "prop", "quant", "seq")  # `qnoise.probe.terms`, in the order charts stack them


def _final(df: pd.DataFrame) -> pd.DataFrame:
    """Rows at t = T (the end of each run) plus the t = 0 rows (timestep-independent values)."""
    return df[(df["t"] == df["timesteps"]) | (df["t"] == 0)]


def _config_cols(df: pd.DataFrame) -> list[str]:
    return [c for c in CONFIG if c in df.columns]


def run_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: run-level metrics after T steps as columns."""
    run = _final(df[(df["layer"] == OUTPUT) & (df.get("mode", "propagated") == "propagated")])
    if run.empty:
        return pd.DataFrame(columns=_config_cols(df))
    wide = run.pivot_table(index=_config_cols(df), columns="metric", values="value", aggfunc="first")
    wide.columns.name = None
    return wide.reset_index()


def layer_table(df: pd.DataFrame, mode: str = "propagated") -> pd.DataFrame:
    """One row per configuration and layer: per-layer metrics after T steps as columns."""
    part = _final(df[(df["layer"] != OUTPUT) & (df.get("mode", mode) == mode)])
    if part.empty:
        return pd.DataFrame(columns=[*_config_cols(df), "layer"])
    index = [*_config_cols(df), "layer"]
    wide = part.pivot_table(index=index, columns="metric", values="value", aggfunc="first", sort=False)
    wide.columns.name = None
    # the per-layer metric weight_bits would clash with the config column of the same name
    wide = wide.rename(columns={c: f"layer_{c}" for c in wide.columns if c in index})
    return wide.reset_index()


def accuracy_table(df: pd.DataFrame) -> pd.DataFrame:
    """SNN accuracy after T steps: index weight bits (and any other varying config), columns T."""
    runs = run_table(df)
    if runs.empty or "accuracy" not in runs:
        metric = "agreement"
    else:
        metric = "accuracy"
    if runs.empty or metric not in runs:
        return pd.DataFrame()
    others = [c for c in ("rounding", "state_bits", "neuron", "model", "dataset") if runs[c].nunique() > 1]
    table = runs.pivot_table(index=[*others, "weight_bits"], columns="timesteps", values=metric, aggfunc="first")
    table.columns = [f"T={c}" for c in table.columns]
    return table


def summary_text(df: pd.DataFrame) -> str:
    """A few lines for the terminal: run metrics and the per-layer picture after T steps."""
    lines = []
    for _, r in run_table(df).iterrows():
        cfg = ", ".join(f"{k}={r[k]}" for k in ("weight_bits", "state_bits", "timesteps", "rounding", "neuron"))
        parts = [f"{m}={r[m]:.4g}" for m in ("accuracy", "ann_accuracy", "agreement", "energy_pj", "ann_energy_pj",
                                             "memory_bits") if m in r and pd.notna(r[m])]
        lines.append(f"{cfg}: " + ", ".join(parts))
    layers = layer_table(df)
    cols = [c for c in ("sqnr_db", "err_total_mse", *(f"err_{k}_contrib" for k in ERROR_TERMS), "firing_rate",
                        "weight_sqnr_db", "synops") if c in layers]
    if not layers.empty:
        lines.append(layers[["layer", *cols]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ figures

def figures(df: pd.DataFrame) -> list[tuple[str, object]]:
    """``(title, plotly figure)`` for the report."""
    import plotly.express as px
    import plotly.graph_objects as go

    out = []
    runs = run_table(df)
    if not runs.empty and "accuracy" in runs:
        if runs["timesteps"].nunique() > 1:
            fig = px.line(runs.sort_values("timesteps"), x="timesteps", y="accuracy",
                          color=runs["weight_bits"].astype(str), markers=True, log_x=True,
                          labels={"color": "weight bits", "timesteps": "timesteps T"})
            if "ann_accuracy" in runs:
                ann = runs.groupby("timesteps", as_index=False)["ann_accuracy"].max()
                fig.add_trace(go.Scatter(x=ann["timesteps"], y=ann["ann_accuracy"], mode="lines",
                                         line=dict(dash="dot", color="black"), name="ANN twin"))
            out.append(("Accuracy vs timesteps", fig))
        if runs["timesteps"].nunique() > 1 and runs["weight_bits"].nunique() > 1:
            heat = runs.pivot_table(index="weight_bits", columns="timesteps", values="accuracy", aggfunc="max")
            fig = px.imshow(heat, text_auto=".3f", aspect="auto", color_continuous_scale="Viridis",
                            labels={"x": "timesteps T", "y": "weight bits", "color": "accuracy"})
            fig.update_xaxes(type="category")
            fig.update_yaxes(type="category")
            out.append(("Accuracy: weight bits x timesteps", fig))
    # per-layer picture for the richest configuration
    prop = df[(df["layer"] != OUTPUT) & (df.get("mode", "propagated") == "propagated")]
    if not prop.empty:
        best = prop.sort_values(["timesteps", "weight_bits"]).iloc[-1]
        cfg = {c: best[c] for c in _config_cols(df)}
        one = prop
        for k, v in cfg.items():
            one = one[one[k] == v]
        label = ", ".join(f"{k}={v}" for k, v in cfg.items() if k in ("weight_bits", "timesteps", "neuron"))
        ref = str(best["reference"]) if "reference" in best else "reference"
        sq = one[(one["metric"] == "sqnr_db") & (one["t"] > 0)]
        if not sq.empty:
            fig = px.line(sq, x="t", y="value", color="layer", markers=True,
                          labels={"value": f"SQNR (dB) of SNN rate vs {ref}", "t": "timestep t"})
            out.append((f"Layer SQNR over time ({label})", fig))
        fin = one[one["t"] == one["timesteps"]]
        comp = fin[fin["metric"].isin([f"err_{k}_contrib" for k in ERROR_TERMS])]
        if not comp.empty:  # contributions add up to the total MSE; the terms' own MSEs do not
            fig = px.bar(comp, x="layer", y="value", color="metric", barmode="relative",
                         labels={"value": "share of the squared error after T steps (sums to the total MSE)"})
            out.append((f"Error decomposition per layer ({label})", fig))
        fr = one[(one["metric"] == "firing_rate") & (one["t"] > 0)]
        if not fr.empty:
            fig = px.line(fr, x="t", y="value", color="layer", markers=True,
                          labels={"value": "firing rate (spikes / neuron / step)", "t": "timestep t"})
            out.append((f"Firing rate ({label})", fig))
    wsq = df[(df["metric"] == "weight_sqnr_db") & (df["weight_bits"] < 32)]
    if not wsq.empty and wsq["weight_bits"].nunique() > 0:
        w = wsq.groupby(["weight_bits", "layer"], as_index=False, sort=False)["value"].first()
        fig = px.line(w, x="weight_bits", y="value", color="layer", markers=True,
                      labels={"value": "weight SQNR (dB)", "weight_bits": "weight bits"})
        out.append(("Weight SQNR per layer", fig))
    if not runs.empty and "energy_pj" in runs and "accuracy" in runs:
        fig = px.scatter(runs, x="energy_pj", y="accuracy", color=runs["weight_bits"].astype(str),
                         size=runs["timesteps"].astype(float), hover_data=_config_cols(df), log_x=True,
                         labels={"color": "weight bits", "energy_pj": "energy per inference (pJ)"})
        if "ann_energy_pj" in runs:
            fig.add_vline(x=float(runs["ann_energy_pj"].max()), line_dash="dot", annotation_text="ANN (float)")
        out.append(("Accuracy vs energy (marker size: T)", fig))
        if "memory_bits" in runs:
            fig = px.scatter(runs, x="memory_bits", y="accuracy", color=runs["timesteps"].astype(str),
                             hover_data=_config_cols(df), log_x=True,
                             labels={"color": "timesteps T", "memory_bits": "memory (bits)"})
            out.append(("Accuracy vs memory", fig))
    return out


def write_report(df: pd.DataFrame, out: str | Path, title: str = "qnoise report") -> tuple[Path, list[Path]]:
    """Write ``out/report.html`` and ``out/tables/*.csv``; returns their paths. Files are written atomically."""
    out = Path(out)
    tables = {"accuracy": accuracy_table(df), "runs": run_table(df), "layers": layer_table(df)}
    written = []
    for name, table in tables.items():
        if table.empty:
            continue
        index = name == "accuracy"
        written.append(atomic_write_bytes(out / "tables" / f"{name}.csv", table.to_csv(index=index).encode()))
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{df.groupby(_config_cols(df)).ngroups} configuration(s), {len(df)} rows. Metric definitions: "
             f"DESIGN.md and <code>help(qnoise.probe)</code>.</p>"]
    acc = tables["accuracy"]
    if not acc.empty:
        parts.append("<h2>Accuracy after T steps</h2>" + acc.to_html(float_format=lambda v: f"{v:.4f}"))
    first = True
    for fig_title, fig in figures(df):
        fig.update_layout(template="plotly_white", height=420, margin=dict(l=60, r=20, t=40, b=50))
        parts.append(f"<h2>{html.escape(fig_title)}</h2>")
        parts.append(fig.to_html(include_plotlyjs=first, full_html=False))
        first = False
    runs = tables["runs"]
    if not runs.empty:
        parts.append("<h2>Runs</h2>" + runs.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
            "</style></head><body>" + "\n".join(parts) + "</body></html>")
    path = atomic_write_bytes(out / "report.html", page.encode())
    return path, written
