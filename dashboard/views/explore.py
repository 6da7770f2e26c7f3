"""Explore: two configurations of the chosen model side by side on shared colour scales, and their difference;
each analysed (and cached) on every change."""

from dataclasses import replace

import pandas as pd
import streamlit as st

from dashboard import controls, ui
from dashboard import figures as F
from qnoise.accuracy import accuracy_interval

ctx = ui.context("Explore")
st.title("Explore")
st.caption("Each configuration is analysed on a batch of the chosen model and cached: coming back to a "
           "configuration is instant, for every browser session. Both heatmaps share one colour scale, so equal "
           "colours mean equal numbers; the third shows B − A.")
ui.need_checkpoint(ctx)
base = ui.default_config(ctx)
samples = controls.choice("select_slider", "Samples analysed", [64, 128, 256, 512], "ex_samples", default=256)

frames, cfgs = {}, {}
cols = st.columns(2)
for name, col, start in (("A", cols[0], base), ("B", cols[1], replace(base, weight_bits=2))):
    with col:
        st.subheader(f"Configuration {name}")
        cfg = replace(controls.config_controls(f"ex{name}", start, columns=False), samples=int(samples))
        df, _ = ui.analysis_for(ctx, cfg)
        frames[name], cfgs[name] = df, cfg
        n = df.attrs.get("samples")
        run = F.final_t(df[df["layer"] == F.OUTPUT])
        vals = run.groupby("metric")["value"].mean()
        m = st.columns(3)
        acc = vals.get("accuracy", float("nan"))
        lo, hi = accuracy_interval(acc, n) if n else (float("nan"), float("nan"))
        m[0].metric("SNN accuracy", f"{100 * acc:.1f}%",
                    help=f"on {n} samples; 95% Wilson interval {100 * lo:.1f}% – {100 * hi:.1f}%")
        m[0].caption(f"95% interval {100 * lo:.1f} – {100 * hi:.1f}%, {n} samples")
        m[1].metric("agreement", f"{100 * vals.get('agreement', float('nan')):.1f}%",
                    help="share of samples where the SNN and its reference predict the same class")
        div, unit = F.energy_unit([vals.get("energy_pj", float("nan"))])
        m[2].metric("energy / sample", f"{vals.get('energy_pj', float('nan')) / div:#.3g} {unit}")

labels = {k: f"{k}: {c.label()}" for k, c in cfgs.items()}
ui.subject(ctx, samples=int(samples))
ui.describe(configuration="; ".join(labels.values()))
model = ctx.checkpoint.name

st.subheader("Per layer and timestep, on one scale")
metrics = [m for m in ui.present(frames["A"], F.LAYER_TIME_METRICS) if m in set(frames["B"]["metric"])]
metric = controls.choice("selectbox", "Heatmap metric", metrics or ["sqnr_db"], "ex_heat_metric", format_func=F.label)
with ui.guard("draw the heatmaps on a shared scale"):
    grids = {k: F.layer_time_grid(df, metric) for k, df in frames.items()}
    zr = F.value_range(*grids.values(), diverging=metric.endswith("_mean"))
    c = st.columns(3)
    for i, k in enumerate(("A", "B")):
        with c[i]:
            ui.show_figure(F.layer_time_heatmap(frames[k], metric, zrange=zr), f"{metric}_{k}", f"ex_heat_{k}",
                           subject=f"{model} · {labels[k]}")
    with c[2]:
        ui.show_figure(F.difference_heatmap(frames["A"], frames["B"], metric), f"{metric}_B_minus_A", "ex_heat_diff",
                       subject=f"{model} · B − A")

st.subheader("Error terms per layer, on one axis")
if not all((df["metric"].str.endswith("_contrib")).any() for df in frames.values()):
    st.info("No error terms for this model against an ANN (see Layer noise for why).")
else:
    with ui.guard("draw the error decompositions"):
        c = st.columns(2)
        parts = {}
        for k, df in frames.items():
            rows = F.final_t(df[df["metric"].str.endswith("_contrib") & (df["layer"] != F.OUTPUT)])
            if "mode" in rows.columns:
                rows = rows[rows["mode"] != "isolated"]
            pos = rows[rows["value"] > 0].groupby("layer")["value"].sum()
            neg = rows[rows["value"] < 0].groupby("layer")["value"].sum()
            parts[k] = (float(neg.min()) if len(neg) else 0.0, float(pos.max()) if len(pos) else 0.0)
        yr = (min(p[0] for p in parts.values()), 1.08 * max(p[1] for p in parts.values()) or 1.0)
        for i, k in enumerate(("A", "B")):
            with c[i]:
                ui.show_figure(F.error_decomposition(frames[k], yrange=yr), f"errors_{k}", f"ex_err_{k}",
                               subject=f"{model} · {labels[k]}")

st.subheader("Side by side")
metric = controls.choice("selectbox", "Per-layer metric", ["sqnr_db", "cosine", "err_total_mse", "err_seq_mse",
                                                           "firing_rate"], "ex_metric", format_func=F.label)
with ui.guard("compare the configurations"):
    ui.show_figure(F.config_comparison({labels[k]: df for k, df in frames.items()}, metric), f"compare_{metric}",
                   "ex_compare", subject=model)
with st.expander("Tables"):
    ui.show_table(pd.concat(list(frames.values()), ignore_index=True), "explore", "ex_table", show=False)
