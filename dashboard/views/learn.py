"""Learn: one IF neuron, the staircase that makes an SNN a quantized ANN, and the sum-of-sigmoids quantizer."""

import numpy as np
import streamlit as st

from dashboard import controls, ui
from dashboard import figures as F
from qnoise import teaching

ui.context("Learn")  # the data sidebar, as on every page (this page needs no data)
st.title("Learn: an SNN is a quantized ANN")
st.markdown(
    "An integrate-and-fire neuron adds its input to its membrane every step and fires (outputs θ) when the "
    "membrane reaches the threshold θ, then subtracts θ. Over T steps its mean output can only take T + 1 "
    "values: it rounds the ReLU onto a staircase. Move the controls to see it.")

c = st.columns(5)
x = controls.number("slider", "Input x (constant)", "learn_x", 0.4, where=c[0], min_value=-0.5, max_value=1.5,
                    step=0.01)
theta = controls.number("slider", "Threshold θ", "learn_theta", 1.0, where=c[1], min_value=0.1, max_value=2.0,
                        step=0.05)
t = controls.number("slider", "Timesteps T", "learn_t", 7, where=c[2], min_value=1, max_value=32)
v_init = controls.choice("radio", "Initial membrane v[0]", ["θ/2 (rounding)", "0 (truncating)"], "learn_vinit",
                         where=c[3])
controls.persist("learn_signed", False)
signed = c[4].toggle("Signed IF", key="learn_signed", on_change=controls.keep, args=("learn_signed",),
                     help="may emit -1 to undo an earlier spike (Fast-SNN)")
v0 = "half" if v_init.startswith("θ/2") else "zero"
ui.describe(model="none: one neuron and one quantizer", configuration=f"x = {x:g}, θ = {theta:g}, T = {t}, "
            f"v[0] = {v_init}, signed IF {signed}")

with ui.guard("simulate the neuron"):
    tr = teaching.neuron_trace(x, theta, t, v_init=v0, signed=signed)
    left, right = st.columns(2)
    with left:
        ui.show_figure(F.neuron_figure(tr["input"], tr["membrane"], tr["spikes"], theta, out=tr["out"]),
                       "if_neuron", "learn_neuron", subject=f"x = {x:g}, θ = {theta:g}, T = {t}, v[0] = {v_init}")
    grid = np.linspace(-0.25 * theta, 1.5 * theta, 701)
    st_ = teaching.rate_staircase(grid, theta, t, v_init=v0, signed=signed)
    with right:
        ui.show_figure(F.staircase_figure(st_["x"], st_["rate"], st_["relu"], t, point=x), "staircase",
                       "learn_staircase", subject=f"θ = {theta:g}, T = {t}, v[0] = {v_init}")
    clamp = min(max(x, 0.0), theta)
    st.info(f"Mean output over T = {t} steps: **{tr['out'].mean():.4g}** against the ReLU's clamp(x, 0, θ) = "
            f"**{clamp:.4g}**: a quantization error of {tr['out'].mean() - clamp:+.4g}. With v[0] = θ/2 the "
            f"neuron rounds to the nearest of the {t + 1} levels; with v[0] = 0 it rounds down.")

st.subheader("Training binary and ternary weights: the sum-of-sigmoids quantizer")
st.markdown("Quantization Networks write a quantizer as a sum of sigmoids. At a low temperature it is smooth, "
            "so gradients flow; as the temperature rises during training it hardens into the step function "
            "used at inference. (The temperature is the sigmoids' sharpness; it has nothing to do with the "
            "timesteps T above.)")
c = st.columns(3)
levels = controls.choice("selectbox", "Levels (or bits)", ["binary", "ternary", 2, 3], "learn_levels",
                         default="ternary", where=c[0])
tmax = controls.choice("select_slider", "Highest temperature", [2, 5, 10, 20, 50, 100, 200, 500], "learn_tmax",
                       default=50, where=c[1])
n = controls.number("slider", "Curves", "learn_ncurves", 4, where=c[2], min_value=2, max_value=6)
with ui.guard("draw the sum-of-sigmoids quantizer"):
    temps = np.geomspace(1.0, float(tmax), n)
    curves = teaching.sigmoid_sum_curves(np.linspace(-1.5, 1.5, 601), temps, levels=levels, scale_from=1.0)
    ui.show_figure(F.sigmoid_sum_figure(curves["x"], curves["curves"], curves["hard"]), "sigmoid_sum",
                   "learn_sigmoid",
                   subject=f"{levels if isinstance(levels, str) else f'{levels}-bit'} levels, temperatures 1 to "
                           f"{tmax:g}")
