"""Overview: the model's card, accuracy against timesteps and bits, memory and energy beside the ANN's."""

import pandas as pd
import streamlit as st

from dashboard import figures as F
from dashboard import state, ui

ctx = ui.context()
st.title("Overview")

if ctx.checkpoint is not None:
    with ui.guard("read the model card"):
        card = state.card(ctx.checkpoint)
        st.subheader(f"Model: {ctx.checkpoint_label}")
        m = card["metrics"]
        acc = {k: v for k, v in m.items() if isinstance(v, (int, float)) and "acc" in k}
        cols = st.columns(6)
        cols[0].metric("Architecture", f"{card['arch']} ({card['kind']})")
        cols[1].metric("Parameters", f"{card['params']:,}")
        cols[2].metric("Weight bits", "float" if card["weight_bits"] is None else
                       f"{card['weight_bits']} ({card['weight_method']})")
        cols[3].metric("State bits", "float" if card["state_bits"] is None else card["state_bits"])
        cols[4].metric("Timesteps T", card["timesteps"] or "?")
        ds = card["dataset"]
        cols[5].metric("Dataset", (ds.get("name") if isinstance(ds, dict) else ds) or "?")
        if acc:
            acols = st.columns(min(6, len(acc)))
            for i, (k, v) in enumerate(sorted(acc.items())[:6]):
                acols[i].metric(k.replace("_", " "), f"{100 * v:.2f}%" if v <= 1 else f"{v:.2f}")
        with st.expander("Thresholds, neuron and layers"):
            neuron = (f"neuron {card['neuron']}, v_init {card['v_init']}, signed {card['signed']}"
                      if card["neuron"] else "ANN (no spiking neurons)")
            st.write(f"{neuron}; input {card['input_shape']}, {card['num_classes']} classes; "
                     f"activation bits {card['act_bits']}; threshold bits {card['threshold_bits']}")
            th = pd.DataFrame([{"layer": k, "mean threshold": v[0], "thresholds": v[1]}
                               for k, v in card["thresholds"].items()])
            if len(th):
                st.dataframe(th, hide_index=True)
            st.code(card["modules"], language=None)

st.subheader("Accuracy, bits and timesteps")
df = ui.grid_results(ctx, "ov")
if df is not None:
    with ui.guard("draw accuracy against timesteps"):
        left, right = st.columns(2)
        with left:
            ui.show_figure(F.accuracy_vs_timesteps(df), "accuracy_vs_timesteps", "ov_acc")
        with right:
            have = [m for m in ("accuracy", "agreement", "energy_pj", "synops", "memory_bits")
                    if m in set(df.loc[df["layer"] == F.OUTPUT, "metric"])]
            metric = st.selectbox("Heatmap metric", have or ["accuracy"], key="ov_heat_metric",
                                  format_func=F.label)
            ui.show_figure(F.metric_heatmap(df, metric), f"heatmap_{metric}", "ov_heat")
    with ui.guard("draw memory and energy"):
        ui.show_figure(F.cost_comparison(df), "energy_memory", "ov_cost")
    with st.expander("Run-level table"):
        from qnoise.insights import config_table

        ui.show_table(config_table(df), "configurations", "ov_table")
