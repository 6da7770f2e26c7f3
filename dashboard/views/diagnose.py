"""Diagnose ANN vs SNN: per-layer scatter, the layer where the drop is born, and hints drawn from the numbers."""

import streamlit as st

from dashboard import figures as F
from dashboard import ui
from qnoise import insights

ctx = ui.context()
st.title("Diagnose: ANN vs SNN")
ui.need_checkpoint(ctx)
cfg = ui.config_controls("dg", ui.default_config(ctx))
df, kept = ui.analysis_for(ctx, cfg, keep=ui.KEEP_SAMPLES, isolate=True)
prop = df[df["mode"] != "isolated"] if "mode" in df.columns else df

with ui.guard("find where the drop is born"):
    born = insights.drop_birth(df)
    st.subheader("Hints")
    for line in insights.hints(df):
        st.markdown(f"- {line}")
    st.caption("'Born': the first layer whose own error terms (weight, quantization, sequential; against the float "
               "SNN its own precision) make up at least half of its squared error, among the layers with a "
               "noticeable error. Each layer's verdict names the term with the largest share and the knob for it.")

left, right = st.columns(2)
with left, ui.guard("draw the drop profile"):
    ui.show_figure(F.drop_profile(df, born["layer"] if born else None), "drop_profile", "dg_profile")
with right, ui.guard("draw the ANN vs SNN scatter"):
    if kept:
        layer = st.selectbox("Layer", list(kept), key="dg_layer")
        ann, rate = insights.kept_rate_vs_twin(kept[layer])
        ui.show_figure(F.activation_scatter(ann, rate, layer), f"scatter_{layer}", "dg_scatter")
    else:
        st.info("No spiking layer kept tensors for the scatter.")
with ui.guard("draw agreement over timesteps"):
    run = prop[(prop["layer"] == F.OUTPUT) & prop["metric"].isin(["accuracy", "agreement"]) & (prop["t"] > 0)]
    if len(run):
        import plotly.graph_objects as go

        fig = go.Figure([go.Scatter(x=g["t"], y=g["value"], mode="lines+markers", name=F.label(m))
                         for m, g in run.groupby("metric")])
        fig.update_xaxes(title="timestep t")
        fig.update_yaxes(tickformat=".0%")
        ui.show_figure(F._base(fig, "Accuracy and SNN/reference agreement as the timesteps add up"), "agreement",
                       "dg_agree")
with st.expander("Table"):
    ui.show_table(df, "diagnose", "dg_table")
