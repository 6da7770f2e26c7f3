"""Diagnose ANN vs SNN: the hints (`qnoise.insights`: each layer's verdict and where the noise is born, from the
same shares, so they cannot contradict each other), the drop profile with the band on the layer the hints name,
the per-layer scatter and agreement over time."""

import plotly.graph_objects as go
import streamlit as st

from dashboard import controls, ui
from dashboard import figures as F
from qnoise import insights
from qnoise.accuracy import accuracy_interval

ctx = ui.context("Diagnose ANN vs SNN")
st.title("Diagnose: ANN vs SNN")
ui.need_checkpoint(ctx)
cfg = controls.config_controls(controls.SHARED, ui.default_config(ctx))
df, kept = ui.analysis_for(ctx, cfg, keep=ui.KEEP_SAMPLES, isolate=True)
subject = ui.subject(ctx, cfg, df.attrs.get("samples"))
prop = df[df["mode"] != "isolated"] if "mode" in df.columns else df

born = None
with ui.guard("find where the noise is born"):
    born = insights.drop_birth(df)
    st.subheader("Hints")
    for line in insights.hints(df):
        st.markdown(f"- {line}")
    st.caption("'Born': the first layer whose own error terms (weight, quantization, sequential; against the float "
               "SNN its own precision) make up at least half of its squared error, among the layers with a "
               "noticeable error. Each layer's verdict names the term with the largest share and the knob for it. "
               "The band in the profile below marks the same layer.")
    verdicts = insights.layer_verdicts(df)
    if len(verdicts):
        with st.expander("Each layer's verdict (shares of its squared error)"):
            ui.show_table(verdicts, "verdicts", "dg_verdicts")

left, right = st.columns(2)
with left, ui.guard("draw the drop profile"):
    ui.show_figure(F.drop_profile(df, born["layer"] if born else None), "drop_profile", "dg_profile", subject=subject)
with right, ui.guard("draw the reference vs SNN scatter"):
    if kept:
        layer = controls.choice("selectbox", "Layer", list(kept), "dg_layer")
        ann, rate = insights.kept_rate_vs_twin(kept[layer])
        ui.show_figure(F.activation_scatter(ann, rate, layer), f"scatter_{layer}", "dg_scatter", subject=subject)
    else:
        st.info("No spiking layer kept tensors for the scatter.")
with ui.guard("draw agreement over timesteps"):
    run = prop[(prop["layer"] == F.OUTPUT) & prop["metric"].isin(["accuracy", "agreement"]) & (prop["t"] > 0)]
    if len(run):
        n = df.attrs.get("samples")
        fig = go.Figure()
        for m, g in run.groupby("metric"):
            g = g.sort_values("t")
            bounds = [accuracy_interval(v, n) for v in g["value"]] if n else None
            fig.add_trace(go.Scatter(x=g["t"], y=g["value"], mode="lines+markers", name=F.label(m), error_y=dict(
                type="data", symmetric=False, array=[hi - v for v, (_, hi) in zip(g["value"], bounds, strict=True)],
                arrayminus=[v - lo for v, (lo, _) in zip(g["value"], bounds, strict=True)]) if bounds else None))
        F.integer_axis(fig, run["t"], "timestep t")
        fig.update_yaxes(tickformat=".1%", title=f"share of {n} samples (bars: 95% interval)" if n else None)
        ui.show_figure(F._base(fig, "Accuracy and SNN/reference agreement as the timesteps add up"), "agreement",
                       "dg_agree", subject=subject)
with st.expander("Table"):
    ui.show_table(df, "diagnose", "dg_table")
