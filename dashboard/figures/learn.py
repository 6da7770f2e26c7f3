"""Learn figures: one IF neuron over T steps, the rate staircase that makes an SNN a quantized ReLU, and the
sum-of-sigmoids quantizer hardening as its temperature rises."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import _base, integer_axis


def neuron_figure(inputs, membrane, spikes, threshold: float, out=None) -> go.Figure:
    """One neuron over T steps: input, membrane (after charging) with the threshold, and its spikes."""
    x = np.asarray(inputs, dtype=float).ravel()
    v = np.asarray(membrane, dtype=float).ravel()
    s = np.asarray(spikes, dtype=float).ravel()
    if not (x.size == v.size == s.size) or x.size == 0:
        raise ValueError(f"neuron figure needs equal non-empty input, membrane and spikes, got "
                         f"{x.size}, {v.size}, {s.size}")
    t = np.arange(1, x.size + 1)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.25, 0.5, 0.25],
                        subplot_titles=("input x[t]", "membrane v[t] (after charging, before reset)", "spikes"))
    fig.add_trace(go.Bar(x=t, y=x, name="input", marker_color="#9D9D9D"), 1, 1)
    fig.add_trace(go.Scatter(x=t, y=v, mode="lines+markers", name="membrane", line=dict(color="#4C78A8")), 2, 1)
    fig.add_hline(y=float(threshold), line_dash="dash", line_color="black", row=2, col=1,
                  annotation_text=f"θ = {threshold:.3g}")
    fired = s != 0
    fig.add_trace(go.Bar(x=t[fired], y=s[fired], name="spike", marker_color="#E45756", width=0.3), 3, 1)
    for row in (1, 2, 3):
        integer_axis(fig, t, "timestep t" if row == 3 else "", row=row, col=1)
    fig.update_yaxes(range=[-1.2, 1.2], row=3, col=1)
    title = "One IF neuron"
    if out is not None:
        title += f": mean output {float(np.mean(out)):.4g}"
    return _base(fig, title, height=560)


def staircase_figure(x, rate, relu, t: int, point: float | None = None) -> go.Figure:
    """The SNN as a quantizer: mean output over T steps against a constant input, beside clamp(x, 0, θ)."""
    x, rate, relu = (np.asarray(a, dtype=float).ravel() for a in (x, rate, relu))
    if not (x.size == rate.size == relu.size) or x.size == 0:
        raise ValueError("staircase needs equal, non-empty x, rate and relu arrays")
    fig = go.Figure([
        go.Scatter(x=x, y=relu, mode="lines", name="ANN: clamp(x, 0, θ)", line=dict(color="black", dash="dash")),
        go.Scatter(x=x, y=rate, mode="lines", name=f"SNN rate, T = {t} ({t + 1} levels)",
                   line=dict(color="#E45756", width=3, shape="hv")),
    ])
    if point is not None:
        fig.add_vline(x=float(point), line_color="#4C78A8", annotation_text="this input")
    fig.update_xaxes(title="constant input x")
    fig.update_yaxes(title="mean output")
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.18, x=0))
    return _base(fig, "Rate vs input: an IF neuron is a quantized ReLU")


def sigmoid_sum_figure(x, curves: Mapping[float, Sequence[float]], hard=None) -> go.Figure:
    """Sum-of-sigmoids quantizer outputs for several temperatures (the sigmoids' sharpness, not the
    timesteps T), and its hard (unit step) limit."""
    x = np.asarray(x, dtype=float).ravel()
    if not curves:
        raise ValueError("sigmoid-sum figure needs at least one temperature curve")
    fig = go.Figure()
    temps = sorted(curves)
    for i, temp in enumerate(temps):
        y = np.asarray(curves[temp], dtype=float).ravel()
        if y.size != x.size:
            raise ValueError(f"curve for temperature {temp} has {y.size} points, x has {x.size}")
        shade = 0.25 + 0.75 * (i + 1) / len(temps)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"temperature {temp:g}",
                                 line=dict(color=f"rgba(76,120,168,{shade:.2f})", width=2)))
    if hard is not None:
        fig.add_trace(go.Scatter(x=x, y=np.asarray(hard, dtype=float).ravel(), mode="lines", name="inference (step)",
                                 line=dict(color="black", dash="dash", shape="hv")))
    fig.update_xaxes(title="weight w")
    fig.update_yaxes(title="quantized weight")
    return _base(fig, "Sum-of-sigmoids quantizer hardening as the temperature rises")
