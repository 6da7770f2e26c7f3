"""Spikes: raster, firing rate and sparsity, membrane traces, and histograms of membrane potentials and input
currents with the membrane's quantization grid, its clipping range and the threshold."""

import numpy as np
import streamlit as st

from dashboard import controls, ui
from dashboard import figures as F
from qnoise.teaching import membrane_levels

ctx = ui.context("Spikes")
st.title("Spikes")
ui.need_checkpoint(ctx)
cfg = controls.config_controls(controls.SHARED, ui.default_config(ctx))
df, kept = ui.analysis_for(ctx, cfg, keep=ui.KEEP_SAMPLES)
subject = ui.subject(ctx, cfg, df.attrs.get("samples"))
if not kept:
    st.error("The analysis kept no spike tensors for this model (no spiking neuron layer found).", icon="⚠️")
    st.stop()

layers = list(kept)
c = st.columns(3)
layer = controls.choice("selectbox", "Layer", layers, "sp_layer", where=c[0])
rec = kept[layer]
k = rec["spikes"].shape[1]
sample = int(controls.number("number_input", "Sample", "sp_sample", 0, where=c[1], min_value=0, max_value=k - 1,
                             help=f"one of the first {k} samples, kept in full"))
sample = min(sample, k - 1)
n_traces = int(controls.number("slider", "Membrane traces", "sp_traces", 3, where=c[2], min_value=1, max_value=8))

kept_subject = f"{ui.subject(ctx, cfg, k)}, the {k} samples kept in full"  # the histograms' data
one_subject = f"{ui.subject(ctx, cfg, k)}, sample {sample}"  # the raster's and the traces'
spikes = rec["spikes"][:, sample].reshape(rec["spikes"].shape[0], -1)
membrane = rec["membrane"][:, sample].reshape(rec["membrane"].shape[0], -1)
theta = np.asarray(rec.get("threshold", 1.0), dtype=float)
theta_scalar = float(theta.mean()) if theta.size else 1.0

left, right = st.columns(2)
with left, ui.guard("draw the spike raster"):
    ui.show_figure(F.spike_raster(spikes, title=f"Spike raster: {layer}, sample {sample}"), f"raster_{layer}",
                   "sp_raster", subject=one_subject)
with right, ui.guard("draw firing rates"):
    ui.show_figure(F.firing_rate_lines(df), "firing_rate", "sp_rate", subject=subject)
left, right = st.columns(2)
with left, ui.guard("draw membrane traces"):
    active = np.argsort(-np.abs(spikes).sum(0), kind="stable")[:n_traces]  # the most active neurons
    th = theta.reshape(-1) if theta.size > 1 else theta_scalar
    if theta.size > 1:  # per channel: the threshold of each drawn neuron's channel
        per = membrane.shape[1] // theta.size
        th = theta.reshape(-1)[active // max(per, 1)]
    fig = F.membrane_traces(membrane[:, active], th, spikes[:, active], names=list(active),
                            title=f"Membrane of the {n_traces} most active neurons of {layer}")
    ui.show_figure(fig, f"membrane_{layer}", "sp_traces_fig", subject=one_subject)
with right, ui.guard("draw the membrane histogram"):
    own_bits = cfg.state_bits if cfg.state_bits not in (None, 32) else None
    if own_bits is None:
        options = ["none", 2, 3, 4, 6, 8]
        grid_bits = controls.choice("selectbox", "Grid of state bits", options, "sp_hist_bits", default=4,
                                    help="the membrane is float here: draw the levels it would have at these bits "
                                         "(step θ / 2^(b-2))")
        grid_bits = None if grid_bits == "none" else int(grid_bits)
    else:
        grid_bits = int(own_bits)
        st.caption(f"The membrane is quantized to {grid_bits} bits in this configuration: its grid is drawn.")
    levels = membrane_levels(theta_scalar, grid_bits) if grid_bits else None
    clip = (float(levels.min()), float(levels.max())) if levels is not None else None
    fig = F.membrane_histogram(rec["membrane"].ravel(), levels, threshold=theta_scalar, clip=clip,
                               title=f"Membrane potentials of {layer}" + (f" against {grid_bits}-bit levels"
                                                                            if grid_bits else ""))
    ui.show_figure(fig, f"membrane_hist_{layer}", "sp_hist", subject=kept_subject)
    if levels is not None and len(levels) > F.MAX_LEVELS_DRAWN:
        st.caption(f"{len(levels)} levels at {grid_bits} bits are too dense to draw: the legend gives their step "
                   f"({levels[1] - levels[0]:.3g}); the clipping range is drawn.")
if "input" in rec:
    with ui.guard("draw the input-current histogram"):
        ui.show_figure(F.value_histogram(
            rec["input"].ravel(), f"Input currents of {layer} (what each neuron integrates per step)",
            "input current x[t]", clip=(0.0, theta_scalar), threshold=theta_scalar),
            f"input_hist_{layer}", "sp_input_hist", subject=kept_subject)
        st.caption("The clipping range drawn is the ANN twin's clamp(z, 0, θ), which applies to a neuron's mean "
                   "input z over the steps: a neuron whose mean input exceeds θ fires at every step (its rate "
                   "saturates), one whose mean input is below 0 stays silent.")
with st.expander("Firing-rate table"):
    ui.show_table(df[df["metric"] == "firing_rate"], "firing_rate", "sp_table")
