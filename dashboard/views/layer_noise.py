"""Layer noise: where the noise is born and how it grows, per layer and timestep; the weights' own noise, each
layer's histogram against its quantization grid, and per-layer sensitivity."""

import streamlit as st

from dashboard import analyses, controls, state, ui
from dashboard import figures as F

ctx = ui.context("Layer noise")
st.title("Layer noise")
st.caption("SNN rate vs its reference, per layer and timestep. Against the ANN twin the error splits exactly into "
           "weight (the layer's own weight quantization), propagated (inherited from the layers below), quantization "
           "(the best a t-step neuron can do) and sequential (spike timing); against the float SNN into the layer's "
           "own precision and propagated. Bars stack each term's share of the squared error (they add up to the "
           "MSE) or the signed means (they add up to the mean error); the terms' own MSEs do not add up.")
ui.need_checkpoint(ctx)
cfg = controls.config_controls(controls.SHARED, ui.default_config(ctx))
df, _ = ui.config_frame(ctx, cfg)
samples = df.attrs.get("samples")
subject = ui.subject(ctx, cfg, samples)
if df.attrs.get("note"):
    st.info(f"No error terms against an ANN for this model: {df.attrs['note']}.")
elif "reference" in df.columns and cfg.reference != "snn" and (df["reference"] == "snn").all():
    st.info("This model's neurons have no ANN twin (their rate is not clamp(z, 0, theta)): it is compared with "
            "the same SNN at full precision, each layer's error split into its own precision and what it "
            "inherits (reference='snn').")

left, right = st.columns(2)
with left, ui.guard("draw the layer x timestep heatmap"):
    metrics = ui.present(df, F.LAYER_TIME_METRICS) or ["sqnr_db"]
    metric = controls.choice("selectbox", "Metric", metrics, "ln_metric", format_func=F.label)
    ui.show_figure(F.layer_time_heatmap(df, metric), f"layer_time_{metric}", "ln_heat", subject=subject)
with right, ui.guard("draw the error decomposition"):
    c = st.columns(2)
    kind = controls.choice("radio", "Error as", ["contrib", "mean"], "ln_kind", where=c[0], horizontal=True,
                           format_func=lambda k: {"contrib": "part of the MSE", "mean": "signed mean"}[k])
    total = "err_total_mse" if kind == "contrib" else "err_total_mean"
    ts = sorted(int(t) for t in df.loc[(df["metric"] == total) & (df["t"] > 0), "t"].unique())
    t = controls.timestep_choice("At timestep t", ts, "ln_at_t", where=c[1])
    ui.show_figure(F.error_decomposition(df, t, kind), f"error_decomposition_{kind}", "ln_decomp", subject=subject)

left, right = st.columns(2)
with left, ui.guard("draw per-layer weight noise"):
    per_layer = ui.present(df, ["weight_sqnr_db", "params", "synops", "macs", "weight_bits", "memory_bits"])
    if per_layer:
        pm = controls.choice("selectbox", "Per-layer quantity", per_layer, "ln_perlayer", format_func=F.label)
        ui.show_figure(F.per_layer_bars(df, pm), f"per_layer_{pm}", "ln_bars", subject=subject)
with right, ui.guard("draw the weight histogram"):
    from qnoise.quant import weight_layers

    model, _ = state.load_model(ctx.checkpoint)
    names = [n for n, _ in weight_layers(model)]
    layer = controls.choice("selectbox", "Weights of layer", names, "ln_wlayer")
    dist = analyses.weight_distribution(ctx.checkpoint, cfg, layer)
    what = "float (no grid)" if dist["bits"] >= 32 else f"{dist['bits']} bits"
    ui.show_figure(F.value_histogram(dist["float"], f"Weights of {layer}: {what}", "weight (float, before "
                                     "quantization)", levels=dist["grid"], clip=dist["clip"]),
                   f"weights_{layer}", "ln_whist", subject=subject)
    if dist["grid"] is not None and len(dist["grid"]) > F.MAX_LEVELS_DRAWN:
        st.caption(f"{len(dist['grid'])} levels: too many to draw; the legend gives their step.")

st.markdown("**Per-layer sensitivity** (AIMET-style): the accuracy lost, in points against nothing quantized, with "
            "one layer's quantizer on alone and with every layer's but that one.")
c = st.columns([1, 1, 2])
bits = controls.choice("selectbox", "Sensitivity at weight bits", [1, 2, 3, 4, 6, 8], "ln_sens_bits",
                       default=analyses.sensitivity_bits(cfg), where=c[0],
                       help="the weight bits turned on one layer at a time (the weights 'as trained' or 'float' "
                            "have none of their own: 4 unless you choose)")
if st.session_state.get("ln_sens") or c[1].button("Measure sensitivity", key="ln_sens_go"):
    st.session_state["ln_sens"] = True
    with ui.guard("measure per-layer sensitivity"):
        sens = ui.with_progress("measuring per-layer sensitivity", lambda p: analyses.sensitivity(
            ctx.checkpoint, cfg, ctx.batch_file, bits=int(bits), progress=p))
        ui.show_figure(F.sensitivity_bars(sens), "sensitivity", "ln_sens_fig",
                       subject=f"{subject} · weights at {int(bits)} bits")
        n = sens.attrs.get("samples")
        if n:
            st.caption(f"On {n} samples one sample more or less right is {100 / n:.2g} points: drops of that size "
                       f"are within the noise of the measurement.")
        ui.show_table(sens, "sensitivity", "ln_sens_tab", show=False)

with st.expander(f"Table: {cfg.label()} ({len(df)} rows)"):
    ui.show_table(df, "layer_noise", "ln_table")
