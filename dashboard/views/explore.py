"""Explore: two configurations of the chosen model side by side, re-analysed (and cached) on every change."""

from dataclasses import replace

import streamlit as st

from dashboard import figures as F
from dashboard import ui

ctx = ui.context()
st.title("Explore")
st.caption("Each configuration is analysed on a small batch of the chosen model and cached: coming back to a "
           "configuration is instant, for every browser session.")
ui.need_checkpoint(ctx)
base = ui.default_config(ctx)
samples = st.select_slider("Samples analysed", [64, 128, 256, 512], value=256, key="ex_samples")

frames, labels = {}, {}
cols = st.columns(2)
for name, col, start in (("A", cols[0], base), ("B", cols[1], replace(base, weight_bits=2))):
    with col:
        st.subheader(f"Configuration {name}")
        cfg = replace(ui.config_controls(f"ex{name}", start, columns=False), samples=int(samples))
        df, _ = ui.analysis_for(ctx, cfg)
        frames[f"{name}: {cfg.label()}"] = df
        run = F.final_t(df[df["layer"] == F.OUTPUT])
        vals = run.groupby("metric")["value"].mean()
        m = st.columns(3)
        m[0].metric("SNN accuracy", f"{100 * vals.get('accuracy', float('nan')):.1f}%")
        m[1].metric("agreement with ANN", f"{100 * vals.get('agreement', float('nan')):.1f}%")
        m[2].metric("energy / sample", f"{vals.get('energy_pj', float('nan')) / 1e6:.3g} µJ")
        with ui.guard("draw the SQNR heatmap"):
            ui.show_figure(F.layer_time_heatmap(df, "sqnr_db"), f"sqnr_{name}", f"ex_heat_{name}")
        with ui.guard("draw the error decomposition"):
            ui.show_figure(F.error_decomposition(df), f"errors_{name}", f"ex_err_{name}")

st.subheader("Side by side")
metric = st.selectbox("Per-layer metric", ["sqnr_db", "cosine", "err_total_mse", "err_seq_mse", "firing_rate"],
                      key="ex_metric", format_func=F.label)
with ui.guard("compare the configurations"):
    ui.show_figure(F.config_comparison(frames, metric), f"compare_{metric}", "ex_compare")
with st.expander("Tables"):
    import pandas as pd

    ui.show_table(pd.concat(list(frames.values()), ignore_index=True), "explore", "ex_table", show=False)
