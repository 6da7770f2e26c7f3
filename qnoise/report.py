"""Reports from probe tables: text summaries, paper-ready CSV tables and standalone HTML pages.

Everything here is a pure function of the long-form table (`qnoise.probe.COLUMNS`); figures are plotly
figures, and the HTML embeds plotly.js once, inline, so the page opens offline without a server.
`html_page` is the one page layout: a header naming model, data, configuration and qnoise version, then
figures and tables; `write_report` (``qnoise report``) and the dashboard's report button both use it.

Tables (CSV):

- ``accuracy.csv``: SNN accuracy after T steps, rows weight bits, columns T (one block per other config);
  for unlabelled data ``agreement.csv`` instead: the share of samples where the SNN and its reference agree.
- ``runs.csv``: one row per configuration, every run-level metric after T steps (``layer="<output>"``), plus
  ``energy_nj`` and ``memory_kib``.
- ``layers.csv``: one row per configuration and layer, the per-layer metrics after T steps (propagated;
  the per-layer ``weight_bits`` metric is named ``layer_weight_bits`` there).

In the HTML tables energies read in nJ or µJ, memory in KiB, accuracies in percent, each unit in its header.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .files import atomic_write_bytes

OUTPUT = "<output>"
CONFIG = ["model", "dataset", "weight_bits", "state_bits", "timesteps", "rounding", "neuron", "reference"]
ERROR_TERMS = ("weight", "own", "prop", "quant", "seq")  # `qnoise.probe.terms`, in the order charts stack them
ERROR_NAMES = {"weight": "weight", "own": "own precision", "prop": "propagated", "quant": "quantization",
               "seq": "sequential"}
FRACTIONS = ("accuracy", "ann_accuracy", "agreement", "float_snn_accuracy", "source_accuracy", "ci_low", "ci_high")
KIB_BITS = 8 * 1024
STYLE = ("body{font-family:sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1.5em}"
         "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f4f4f4}"
         "table.facts td,table.facts th{text-align:left}h2{margin-top:1.6em}")


def _final(df: pd.DataFrame) -> pd.DataFrame:
    """Rows at t = T (the end of each run) plus the t = 0 rows (timestep-independent values)."""
    return df[(df["t"] == df["timesteps"]) | (df["t"] == 0)]


def _config_cols(df: pd.DataFrame) -> list[str]:
    return [c for c in CONFIG if c in df.columns]


def _propagated(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["mode"] == "propagated"] if "mode" in df.columns else df


def run_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: run-level metrics after T steps as columns (and ``energy_nj``,
    ``memory_kib``)."""
    run = _final(_propagated(df[df["layer"] == OUTPUT]))
    if run.empty:
        return pd.DataFrame(columns=_config_cols(df))
    wide = run.pivot_table(index=_config_cols(df), columns="metric", values="value", aggfunc="first")
    wide.columns.name = None
    wide = wide.reset_index()
    if "energy_pj" in wide:
        wide["energy_nj"] = wide["energy_pj"] / 1000.0
    if "memory_bits" in wide:
        wide["memory_kib"] = wide["memory_bits"] / KIB_BITS
    return wide


def layer_table(df: pd.DataFrame, mode: str = "propagated") -> pd.DataFrame:
    """One row per configuration and layer: per-layer metrics after T steps as columns."""
    part = df[df["layer"] != OUTPUT]
    if "mode" in part.columns:
        part = part[part["mode"] == mode]
    part = _final(part)
    if part.empty:
        return pd.DataFrame(columns=[*_config_cols(df), "layer"])
    index = [*_config_cols(df), "layer"]
    wide = part.pivot_table(index=index, columns="metric", values="value", aggfunc="first", sort=False)
    wide.columns.name = None
    # the per-layer metric weight_bits would clash with the config column of the same name
    wide = wide.rename(columns={c: f"layer_{c}" for c in wide.columns if c in index})
    return wide.reset_index()


def _varying(runs: pd.DataFrame) -> list[str]:
    """The configuration columns besides weight bits and T that take more than one value in ``runs``."""
    return [c for c in ("rounding", "state_bits", "neuron", "model", "dataset") if c in runs and runs[c].nunique() > 1]


def accuracy_table(df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """A run-level metric after T steps (SNN accuracy by default; ``"agreement"`` for unlabelled data): index
    weight bits (and any other varying config), columns T; empty when the table has no such rows."""
    runs = run_table(df)
    if runs.empty or metric not in runs:
        return pd.DataFrame()
    keys = _varying(runs)
    if metric != "accuracy" and "reference" in runs and runs["reference"].nunique() > 1:
        keys.append("reference")  # agreement is with a reference: one row each
    table = runs.pivot_table(index=[*keys, "weight_bits"], columns="timesteps", values=metric, aggfunc="first")
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


# ------------------------------------------------------------------------------------------------ units

def bits_name(v) -> str:
    """``"4-bit"``; 32 bits or missing is ``"float"``."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or float(v) >= 32:
        return "float"
    return f"{int(v)}-bit"


def energy_unit(values_pj) -> tuple[float, str]:
    """``(divisor, unit)`` for energies in pJ: µJ, nJ or pJ, the largest the values reach."""
    arr = pd.to_numeric(pd.Series(np.ravel(values_pj)), errors="coerce").to_numpy(dtype=float)
    top = float(np.nanmax(np.abs(arr))) if np.isfinite(arr).any() else 0.0
    for div, unit in ((1e6, "µJ"), (1e3, "nJ")):
        if top >= div:
            return div, unit
    return 1.0, "pJ"


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """A table for reading: energies in nJ or µJ, memory in KiB, accuracies in percent, bits as "4-bit" /
    "float", each unit in its column header (the raw columns ``energy_nj`` / ``memory_kib`` are dropped)."""
    out = table.drop(columns=[c for c in ("energy_nj", "memory_kib") if c in table.columns]).copy()
    renames = {}
    energy = [c for c in out.columns if str(c).endswith("energy_pj")]
    if energy:
        div, unit = energy_unit(out[energy])
        for c in energy:
            out[c] = out[c] / div
            renames[c] = f"{str(c)[:-3]} ({unit})"
    for c in [c for c in out.columns if str(c).endswith("memory_bits")]:
        out[c] = out[c] / KIB_BITS
        renames[c] = f"{str(c)[:-5]} (KiB)"
    for c in [c for c in out.columns if c in FRACTIONS]:
        out[c] = 100 * out[c]
        renames[c] = f"{c} (%)"
    for c in ("weight_bits", "state_bits"):
        if c in out.columns:
            out[c] = out[c].map(bits_name)
    return out.rename(columns=renames)


def table_html(table: pd.DataFrame, index: bool = False) -> str:
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            if not math.isfinite(v):
                return "–" if math.isnan(v) else ("∞" if v > 0 else "-∞")
            if abs(v) >= 1e4:
                return f"{v:,.0f}"
            return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3g}"
        return str(v)

    return table.to_html(index=index, float_format=None, formatters={c: fmt for c in table.columns},
                         na_rep="–", escape=True)


# ------------------------------------------------------------------------------------------------ pages

def html_page(title: str, facts: Mapping[str, object], sections: Sequence[tuple[str, object]],
              intro: str = "") -> str:
    """One standalone page: ``title``, a table of ``facts`` (model, data, configuration, qnoise version...),
    then each section ``(heading, plotly figure | DataFrame | text)``; plotly.js is inlined once."""
    from . import __version__

    facts = {**facts}
    facts.setdefault("qnoise version", __version__)
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
    parts = [f"<h1>{html.escape(title)}</h1>", f"<table class='facts'>{rows}</table>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    first = True
    for heading, item in sections:
        parts.append(f"<h2>{html.escape(str(heading))}</h2>")
        if isinstance(item, pd.DataFrame):
            parts.append(table_html(item, index=not isinstance(item.index, pd.RangeIndex)))
        elif hasattr(item, "to_html") and hasattr(item, "layout"):
            parts.append(item.to_html(include_plotlyjs=first, full_html=False))
            first = False
        else:
            parts.append(f"<p>{html.escape(str(item))}</p>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title><style>"
            + STYLE + "</style></head><body>" + "\n".join(parts) + "</body></html>")


def describe(df: pd.DataFrame) -> dict:
    """What a table holds, for a report's header: models, data, the grid, the reference."""
    def values(col):
        if col not in df.columns:
            return "–"
        vals = list(pd.unique(df[col].dropna()))
        if col in ("weight_bits", "state_bits"):
            vals = sorted(vals, key=lambda v: float(v))
            return ", ".join(bits_name(v) for v in vals)
        if col == "timesteps":
            return ", ".join(str(int(v)) for v in sorted(vals))
        return ", ".join(map(str, vals))

    return {"model": values("model"), "data": values("dataset"), "weight bits": values("weight_bits"),
            "timesteps T": values("timesteps"), "state bits": values("state_bits"), "rounding": values("rounding"),
            "neuron": values("neuron"), "reference": values("reference"),
            "configurations": df.groupby(_config_cols(df), dropna=False).ngroups, "rows": len(df)}


# ------------------------------------------------------------------------------------------------ figures

LINE_STYLES = [("solid", "circle"), ("dash", "square"), ("dot", "diamond"), ("dashdot", "triangle-up"),
               ("longdash", "x"), ("longdashdot", "star")]


def _t_axis(fig, values, title: str, log: bool) -> None:
    ticks = sorted({int(v) for v in values})
    fig.update_xaxes(title=title + (" (log scale)" if log else ""), type="log" if log else "linear",
                     tickmode="array", tickvals=ticks, ticktext=[str(v) for v in ticks])


def _label(row: pd.Series) -> str:
    return f"{'W float' if bits_name(row['weight_bits']) == 'float' else 'W' + str(int(row['weight_bits']))} " \
           f"T{int(row['timesteps'])}"


def _cost_scatter(runs: pd.DataFrame, cost: str, models: str):
    import plotly.graph_objects as go

    if cost == "energy_pj":
        div, unit = energy_unit(runs[cost])
        title = f"energy per sample ({unit})"
    else:
        div, unit, title = KIB_BITS, "KiB", "memory (KiB)"
    x = runs[cost] / div
    fig = go.Figure()
    for i, (bits, part) in enumerate(runs.groupby(runs["weight_bits"].map(bits_name), sort=False)):
        dash, symbol = LINE_STYLES[i % len(LINE_STYLES)]
        fig.add_trace(go.Scatter(x=part[cost] / div, y=part["accuracy"], mode="markers+text", name=f"{bits} weights",
                                 text=[_label(r) for _, r in part.iterrows()], textposition="top center",
                                 textfont=dict(size=10), marker=dict(symbol=symbol, size=10)))
    lo, hi = float(x.min()), float(x.max())
    span = (np.log10(lo) - 0.15, np.log10(hi) + 0.15) if lo > 0 else None
    ticks = [m * 10.0 ** e for e in range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
             for m in (1, 2, 5)] if lo > 0 else []
    ticks = [t for t in ticks if span and span[0] <= np.log10(t) <= span[1]]
    fig.update_xaxes(title=title, type="log", range=span, tickmode="array" if ticks else None,
                     tickvals=ticks or None, ticktext=[f"{t:g}" for t in ticks] or None)
    fig.update_yaxes(title="accuracy", tickformat=".0%")
    if cost == "energy_pj" and "ann_energy_pj" in runs:
        ann = float(runs["ann_energy_pj"].max()) / div
        if span and span[0] <= np.log10(ann) <= span[1]:
            fig.add_vline(x=ann, line_dash="dot", annotation_text=f"ANN: {ann:.3g} {unit}")
        else:
            return fig, f"Accuracy vs energy ({models}; the ANN takes {ann:.3g} {unit}, off this axis)"
    return fig, f"Accuracy vs {'energy' if cost == 'energy_pj' else 'memory'} ({models})"


def figures(df: pd.DataFrame) -> list[tuple[str, object]]:
    """``(title, plotly figure)`` for the report; every title names the model(s) and, for a per-layer figure,
    its configuration."""
    import plotly.express as px
    import plotly.graph_objects as go

    out = []
    runs = run_table(df)
    models = ", ".join(map(str, pd.unique(df["model"]))) if "model" in df.columns else "model"
    if not runs.empty and "accuracy" in runs:
        others = _varying(runs)  # one line (one heatmap) per configuration: accuracies are never averaged
        if runs["timesteps"].nunique() > 1:
            fig = go.Figure()
            bits_order = {b: (bits_name(b) == "float", float(b)) for b in pd.unique(runs["weight_bits"])}
            groups = sorted(runs.groupby(["weight_bits", *others], sort=False),
                            key=lambda kv: (bits_order[kv[0][0]], [str(v) for v in kv[0][1:]]))
            for i, (key, part) in enumerate(groups):
                part = part.groupby("timesteps", as_index=False)["accuracy"].first().sort_values("timesteps")
                dash, symbol = LINE_STYLES[i % len(LINE_STYLES)]
                name = ", ".join([f"{bits_name(key[0])} weights", *(f"{c}={v}" for c, v in zip(others, key[1:]))])
                fig.add_trace(go.Scatter(x=part["timesteps"], y=part["accuracy"], mode="lines+markers",
                                         name=name, line=dict(dash=dash, width=2.5),
                                         marker=dict(symbol=symbol, size=9)))
            if "ann_accuracy" in runs:  # the twin at each T; one line per weight width where the twins differ
                twin = runs.groupby(["weight_bits", "timesteps"], as_index=False, sort=False)["ann_accuracy"].first()
                widths = [(b, p.sort_values("timesteps")) for b, p in twin.groupby("weight_bits", sort=False)]
                same = all(np.array_equal(p["ann_accuracy"].to_numpy(), widths[0][1]["ann_accuracy"].to_numpy())
                           for _, p in widths)
                for bits, p in ([(None, widths[0][1])] if same else widths):
                    fig.add_trace(go.Scatter(x=p["timesteps"], y=p["ann_accuracy"], mode="lines",
                                             name="ANN twin" if bits is None else f"ANN twin, {bits_name(bits)} weights",
                                             line=dict(dash="dash", color="black")))
            _t_axis(fig, runs["timesteps"], "timesteps T", log=True)
            fig.update_yaxes(title="accuracy after T steps", tickformat=".0%")
            out.append((f"Accuracy vs timesteps ({models})", fig))
        if runs["timesteps"].nunique() > 1 and runs["weight_bits"].nunique() > 1:
            for key, part in (runs.groupby(others, sort=True) if others else [((), runs)]):
                key = key if isinstance(key, tuple) else (key,)
                heat = part.pivot_table(index="weight_bits", columns="timesteps", values="accuracy",
                                        aggfunc="first")
                heat.index = [bits_name(b) for b in heat.index]
                fig = px.imshow(heat, text_auto=".1%", aspect="auto", color_continuous_scale="Viridis",
                                labels={"x": "timesteps T", "y": "weight bits", "color": "accuracy"})
                fig.update_xaxes(type="category")
                fig.update_yaxes(type="category")
                where = "".join(f", {c}={v}" for c, v in zip(others, key))
                out.append((f"Accuracy: weight bits x timesteps ({models}{where})", fig))
    # per-layer picture for the richest configuration
    prop = _propagated(df[df["layer"] != OUTPUT])
    if not prop.empty:
        best = prop.sort_values(["timesteps", "weight_bits"]).iloc[-1]
        cfg = {c: best[c] for c in _config_cols(df)}
        one = prop
        for k, v in cfg.items():
            one = one[one[k] == v]
        label = f"{best.get('model', 'model')}, {bits_name(best['weight_bits'])} weights, T = {int(best['timesteps'])}"
        ref = str(best["reference"]) if "reference" in best else "reference"
        sq = one[(one["metric"] == "sqnr_db") & (one["t"] > 0)]
        if not sq.empty:
            fig = px.line(sq, x="t", y="value", color="layer", markers=True,
                          labels={"value": f"SQNR (dB) of SNN rate vs {ref}", "t": "timestep t"})
            _t_axis(fig, sq["t"], "timestep t", log=False)
            out.append((f"Layer SQNR over time ({label})", fig))
        fin = one[one["t"] == one["timesteps"]]
        comp = fin[fin["metric"].isin([f"err_{k}_contrib" for k in ERROR_TERMS])]
        if not comp.empty:  # contributions add up to the total MSE; the terms' own MSEs do not
            comp = comp.assign(term=comp["metric"].str[4:-8].map(ERROR_NAMES))
            fig = px.bar(comp, x="layer", y="value", color="term", barmode="relative",
                         labels={"value": "share of the squared error after T steps (sums to the total MSE)"})
            out.append((f"Error decomposition per layer ({label})", fig))
        fr = one[(one["metric"] == "firing_rate") & (one["t"] > 0)]
        if not fr.empty:
            fig = px.line(fr, x="t", y="value", color="layer", markers=True,
                          labels={"value": "firing rate (spikes / neuron / step)", "t": "timestep t"})
            _t_axis(fig, fr["t"], "timestep t", log=False)
            out.append((f"Firing rate ({label})", fig))
    wsq = df[(df["metric"] == "weight_sqnr_db") & (df["weight_bits"] < 32)]
    if not wsq.empty and wsq["weight_bits"].nunique() > 0:
        w = wsq.groupby(["weight_bits", "layer"], as_index=False, sort=False)["value"].first()
        w = w[np.isfinite(w["value"])]
        if not w.empty:
            fig = px.line(w, x="weight_bits", y="value", color="layer", markers=True,
                          labels={"value": "weight SQNR (dB)", "weight_bits": "weight bits"})
            _t_axis(fig, w["weight_bits"], "weight bits", log=False)
            out.append((f"Weight SQNR per layer ({models}; float weights have no weight noise)", fig))
    if not runs.empty and "accuracy" in runs:
        for cost in ("energy_pj", "memory_bits"):
            if cost in runs:
                fig, title = _cost_scatter(runs, cost, models)
                out.append((title, fig))
    return out


def write_report(df: pd.DataFrame, out: str | Path, title: str = "qnoise report") -> tuple[Path, list[Path]]:
    """Write ``out/report.html`` and ``out/tables/*.csv``; returns their paths. Files are written atomically."""
    out = Path(out)
    acc = accuracy_table(df)
    agreement = accuracy_table(df, "agreement") if acc.empty else pd.DataFrame()  # unlabelled data
    tables = {"accuracy": acc, "agreement": agreement, "runs": run_table(df), "layers": layer_table(df)}
    written = []
    for name, table in tables.items():
        if table.empty:
            continue
        index = name in ("accuracy", "agreement")
        written.append(atomic_write_bytes(out / "tables" / f"{name}.csv", table.to_csv(index=index).encode()))
    sections: list[tuple[str, object]] = []
    for table, heading in ((acc, "Accuracy after T steps (%)"),
                           (agreement, "Agreement with the reference after T steps (%), unlabelled data")):
        if table.empty:
            continue
        shown = (100 * table).rename(columns=lambda c: f"{c} (%)")
        if shown.index.nlevels == 1:
            shown.index = pd.Index([bits_name(v) for v in shown.index], name="weight bits")
        sections.append((heading, shown))
    for fig_title, fig in figures(df):
        fig.update_layout(template="plotly_white", height=460, margin=dict(l=60, r=20, t=60, b=50),
                          title=dict(text=fig_title, x=0.01, font=dict(size=14)))  # a figure saved alone says it too
        sections.append((fig_title, fig))
    runs = tables["runs"]
    if not runs.empty:
        sections.append(("Runs (after T steps)", readable(runs)))
    page = html_page(title, describe(df), sections, intro="Metric definitions: DESIGN.md and help(qnoise.probe).")
    path = atomic_write_bytes(out / "report.html", page.encode())
    return path, written
