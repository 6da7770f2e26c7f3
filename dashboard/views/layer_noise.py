"""Layer noise: where the noise is born and how it grows, per layer and timestep."""

import streamlit as st

from dashboard import figures as F
from dashboard import state, ui

ctx = ui.context()
st.title("Layer noise")
st.caption("SNN rate vs its reference, per layer and timestep. Against the ANN twin the error splits exactly into "
           "weight (the layer's own weight quantization), propagated (inherited from the layers below), quantization "
           "(the best a t-step neuron can do) and sequential (spike timing); against the float SNN into the layer's "
           "own precision and propagated. Bars stack each term's share of the squared error (they add up to the "
           "MSE) or the signed means (they add up to the mean error); the terms' own MSEs do not add up.")
ui.need_checkpoint(ctx)
cfg = ui.config_controls("ln", ui.default_config(ctx))
df, _ = ui.config_frame(ctx, cfg)
if df.attrs.get("note"):
    st.info(f"No error terms against an ANN for this model: {df.attrs['note']}.")

left, right = st.columns(2)
with left, ui.guard("draw the layer x timestep heatmap"):
    metrics = ui.present(df, F.LAYER_TIME_METRICS) or ["sqnr_db"]
    metric = st.selectbox("Metric", metrics, key="ln_metric", format_func=F.label)
    ui.show_figure(F.layer_time_heatmap(df, metric), f"layer_time_{metric}", "ln_heat")
with right, ui.guard("draw the error decomposition"):
    c = st.columns(2)
    kind = c[0].radio("Error as", ["contrib", "mean"], horizontal=True, key="ln_kind",
                      format_func=lambda k: {"contrib": "share of the MSE", "mean": "signed mean"}[k])
    total = "err_total_mse" if kind == "contrib" else "err_total_mean"
    ts = sorted(int(t) for t in df.loc[df["metric"] == total, "t"].unique())
    t = c[1].select_slider("At timestep t", ts, value=ts[-1], key="ln_at_t") if len(ts) > 1 else (ts[0] if ts else None)
    ui.show_figure(F.error_decomposition(df, t, kind), f"error_decomposition_{kind}", "ln_decomp")

left, right = st.columns(2)
with left, ui.guard("draw per-layer weight noise"):
    per_layer = ui.present(df, ["weight_sqnr_db", "params", "synops", "macs", "weight_bits"])
    if per_layer:
        pm = st.selectbox("Per-layer quantity", per_layer, key="ln_perlayer", format_func=F.label)
        ui.show_figure(F.per_layer_bars(df, pm), f"per_layer_{pm}", "ln_bars")
with right:
    st.markdown("**Per-layer sensitivity** — accuracy with one layer's quantization on alone, and with all "
                "layers but one (AIMET-style).")
    if st.session_state.get("ln_sens") or st.button("Measure sensitivity", key="ln_sens_go"):
        st.session_state["ln_sens"] = True
        with ui.guard("measure per-layer sensitivity"):
            sens = state.sensitivity(ui.need_checkpoint(ctx), cfg, ctx.batch_file)
            ui.show_figure(F.sensitivity_bars(sens), "sensitivity", "ln_sens_fig")
            ui.show_table(sens, "sensitivity", "ln_sens_tab", show=False)

with st.expander(f"Table: {cfg.label()} ({len(df)} rows)"):
    ui.show_table(df, "layer_noise", "ln_table")
