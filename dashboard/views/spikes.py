"""Spikes: raster, firing rate and sparsity, membrane traces and the membrane's quantization levels."""

import numpy as np
import streamlit as st

from dashboard import figures as F
from dashboard import ui
from qnoise.teaching import membrane_levels

ctx = ui.context()
st.title("Spikes")
ui.need_checkpoint(ctx)
cfg = ui.config_controls("sp", ui.default_config(ctx))
df, kept = ui.analysis_for(ctx, cfg, keep=ui.KEEP_SAMPLES)
if not kept:
    st.error("The analysis kept no spike tensors for this model (no spiking neuron layer found).", icon="⚠️")
    st.stop()

layers = list(kept)
c = st.columns(4)
layer = c[0].selectbox("Layer", layers, key="sp_layer")
rec = kept[layer]
k = rec["spikes"].shape[1]
sample = c[1].number_input("Sample", 0, k - 1, 0, key="sp_sample")
n_traces = c[2].slider("Membrane traces", 1, 8, 3, key="sp_traces")
hist_bits = c[3].selectbox("Levels of state bits", [2, 3, 4, 6, 8], index=2, key="sp_hist_bits",
                           help="quantization levels drawn over the histogram (membrane step θ / 2^(b-2))")

spikes = rec["spikes"][:, sample].reshape(rec["spikes"].shape[0], -1)
membrane = rec["membrane"][:, sample].reshape(rec["membrane"].shape[0], -1)
theta = np.asarray(rec.get("threshold", 1.0), dtype=float)
theta_scalar = float(theta.mean()) if theta.size else 1.0

left, right = st.columns(2)
with left, ui.guard("draw the spike raster"):
    ui.show_figure(F.spike_raster(spikes, title=f"Spike raster: {layer}, sample {sample}"), f"raster_{layer}",
                   "sp_raster")
with right, ui.guard("draw firing rates"):
    ui.show_figure(F.firing_rate_lines(df), "firing_rate", "sp_rate")
left, right = st.columns(2)
with left, ui.guard("draw membrane traces"):
    active = np.argsort(-np.abs(spikes).sum(0), kind="stable")[:n_traces]  # the most active neurons
    th = theta.reshape(-1) if theta.size > 1 else theta_scalar
    if theta.size > 1:  # per channel: the threshold of each drawn neuron's channel
        per = membrane.shape[1] // theta.size
        th = theta.reshape(-1)[active // max(per, 1)]
    fig = F.membrane_traces(membrane[:, active], th, spikes[:, active], names=list(active),
                            title=f"Membrane of the {n_traces} most active neurons of {layer}")
    ui.show_figure(fig, f"membrane_{layer}", "sp_traces_fig")
with right, ui.guard("draw the membrane histogram"):
    levels = membrane_levels(theta_scalar, int(hist_bits))
    ui.show_figure(F.membrane_histogram(rec["membrane"].ravel(), levels,
                                        title=f"Membrane values of {layer} ({hist_bits}-bit levels)"),
                   f"membrane_hist_{layer}", "sp_hist")
with st.expander("Firing-rate table"):
    ui.show_table(df[df["metric"] == "firing_rate"], "firing_rate", "sp_table")
