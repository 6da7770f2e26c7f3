"""Learn: one IF neuron, the staircase that makes an SNN a quantized ANN, and the sum-of-sigmoids quantizer."""

import numpy as np
import streamlit as st

from dashboard import figures as F
from dashboard import ui
from qnoise import teaching

ui.context()  # the data sidebar, as on every page (this page needs no data)
st.title("Learn: an SNN is a quantized ANN")
st.markdown(
    "An integrate-and-fire neuron adds its input to its membrane every step and fires (outputs θ) when the "
    "membrane reaches the threshold θ, then subtracts θ. Over T steps its mean output can only take T + 1 "
    "values: it rounds the ReLU onto a staircase. Move the controls to see it.")

c = st.columns(5)
x = c[0].slider("Input x (constant)", -0.5, 1.5, 0.4, 0.01, key="learn_x")
theta = c[1].slider("Threshold θ", 0.1, 2.0, 1.0, 0.05, key="learn_theta")
t = c[2].slider("Timesteps T", 1, 32, 7, key="learn_t")
v_init = c[3].radio("Initial membrane v[0]", ["θ/2 (rounding)", "0 (truncating)"], key="learn_vinit")
signed = c[4].toggle("Signed IF", key="learn_signed", help="may emit -1 to undo an earlier spike (Fast-SNN)")
v0 = "half" if v_init.startswith("θ/2") else "zero"

with ui.guard("simulate the neuron"):
    tr = teaching.neuron_trace(x, theta, t, v_init=v0, signed=signed)
    left, right = st.columns(2)
    with left:
        ui.show_figure(F.neuron_figure(tr["input"], tr["membrane"], tr["spikes"], theta, out=tr["out"]),
                       "if_neuron", "learn_neuron")
    grid = np.linspace(-0.25 * theta, 1.5 * theta, 701)
    st_ = teaching.rate_staircase(grid, theta, t, v_init=v0, signed=signed)
    with right:
        ui.show_figure(F.staircase_figure(st_["x"], st_["rate"], st_["relu"], t, point=x), "staircase",
                       "learn_staircase")
    clamp = min(max(x, 0.0), theta)
    st.info(f"Mean output over T = {t} steps: **{tr['out'].mean():.4g}** against the ReLU's clamp(x, 0, θ) = "
            f"**{clamp:.4g}**: a quantization error of {tr['out'].mean() - clamp:+.4g}. With v[0] = θ/2 the "
            f"neuron rounds to the nearest of the {t + 1} levels; with v[0] = 0 it rounds down.")

st.subheader("Training binary and ternary weights: the sum-of-sigmoids quantizer")
st.markdown("Quantization Networks write a quantizer as a sum of sigmoids. At a low temperature it is smooth, "
            "so gradients flow; as the temperature rises during training it hardens into the step function "
            "used at inference.")
c = st.columns(3)
levels = c[0].selectbox("Levels", ["binary", "ternary", 2, 3], index=1, key="learn_levels")
tmax = c[1].select_slider("Highest temperature", [2, 5, 10, 20, 50, 100, 200, 500], value=50, key="learn_tmax")
n = c[2].slider("Curves", 2, 6, 4, key="learn_ncurves")
with ui.guard("draw the sum-of-sigmoids quantizer"):
    temps = np.geomspace(1.0, float(tmax), n)
    curves = teaching.sigmoid_sum_curves(np.linspace(-1.5, 1.5, 601), temps, levels=levels, scale_from=1.0)
    ui.show_figure(F.sigmoid_sum_figure(curves["x"], curves["curves"], curves["hard"]), "sigmoid_sum",
                   "learn_sigmoid")
