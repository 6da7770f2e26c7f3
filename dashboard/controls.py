"""Controls that never lie: what a person set persists across pages, what belongs to a model follows the model.

Streamlit forgets a widget's value when the next page does not draw it, so every control here keeps its value
under a shadow key (``_<key>``) and gets it back before it is drawn (`persist`). Controls that belong to a
model (its timesteps T, its layers, the timestep a figure is drawn at) are reset to the new model's values when
the model changes (`follow_model`), so a model with T = 7 is never analysed at another model's T = 3.

Layer noise, Spikes and Diagnose share one configuration (keys ``cfg_*``); Explore has two (``exA_*``,
``exB_*``).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import streamlit as st

from dashboard import state

WEIGHT_BITS = ["as trained", "float", 1, 2, 3, 4, 6, 8]
STATE_BITS = ["as trained", "float", 4, 6, 8, 12, 16]
NEURONS = {"as trained": None, "IF": "if", "signed IF": "signed"}
TIMESTEPS = [1, 2, 3, 4, 6, 7, 8, 12, 15, 16, 24, 31, 32, 48, 64]
ROUNDINGS = ["nearest", "truncate", "stochastic"]
SHARED = "cfg"
CONFIGS = (SHARED, "exA", "exB")
PARTS = ("w", "t", "s", "r", "n", "th")
# controls naming something of one model (a layer, a timestep within its T): dropped when the model changes
MODEL_KEYS = ("sp_layer", "dg_layer", "ln_at_t", "ln_wlayer", "sp_hist_layer")
MODEL_KEY = "_qnoise_model"


def keep(key: str) -> None:
    """``on_change`` of a persistent widget: remember its value under the shadow key."""
    st.session_state[f"_{key}"] = st.session_state[key]


def persist(key: str, default, options=None):
    """Give the widget ``key`` its remembered value (or ``default``; also when the remembered value is not
    among ``options``) before it is drawn; returns that value. Draw the widget with ``key=key`` and
    ``on_change=keep, args=(key,)`` and without a ``value``/``index`` of its own."""
    ss = st.session_state
    value = ss.get(f"_{key}", ss.get(key, default))
    if options is not None and value not in options:
        value = default
    ss[key] = value
    ss[f"_{key}"] = value
    return value


def set_value(key: str, value) -> None:
    """Set a persistent control (before its widget is drawn in this run)."""
    st.session_state[key] = value
    st.session_state[f"_{key}"] = value


def forget(key: str) -> None:
    for k in (key, f"_{key}"):
        st.session_state.pop(k, None)


def model_timesteps(checkpoint) -> int:
    t = 8
    if checkpoint is not None:
        with contextlib.suppress(Exception):
            t = int(state.card(checkpoint).get("timesteps") or 8)
    return t


def follow_model(checkpoint) -> bool:
    """Reset what belongs to the model when the chosen checkpoint changes (or on the first run): every
    configuration's T becomes the model's own, layer choices and the "at timestep" choice are dropped.
    Returns whether the model changed. Call before any control of the page is drawn."""
    ss = st.session_state
    name = str(checkpoint) if checkpoint is not None else None
    if ss.get(MODEL_KEY, "<none>") == name:
        return False
    t = model_timesteps(checkpoint)
    for prefix in CONFIGS:
        set_value(f"{prefix}_t", t)
    for key in MODEL_KEYS:
        forget(key)
    ss[MODEL_KEY] = name
    return True


def _bits_value(v):
    if v in ("as trained", "float"):
        return {"as trained": None, "float": 32}[v]
    return None if v is None else int(v)


def _bits_option(v):
    return {None: "as trained", 32: "float"}.get(v, v)


def default_config(checkpoint) -> state.Config:
    return state.Config(timesteps=model_timesteps(checkpoint))


def config_controls(prefix: str, base: state.Config, columns: bool = True, extended: bool = True) -> state.Config:
    """Widgets for one configuration (keys ``<prefix>_w``, ``_t``, ``_s``, ``_r``, ``_n``, ``_th``): their
    values persist across pages; ``base`` gives the values of controls not set yet."""
    cols = st.columns(6 if extended else 3) if columns else [*st.columns(3), *st.columns(3)]
    t_now = persist(f"{prefix}_t", base.timesteps)
    t_opts = sorted(set(TIMESTEPS) | {base.timesteps, int(t_now)})
    persist(f"{prefix}_w", _bits_option(base.weight_bits), WEIGHT_BITS)
    persist(f"{prefix}_s", _bits_option(base.state_bits), STATE_BITS)
    w = cols[0].selectbox("Weight bits", WEIGHT_BITS, key=f"{prefix}_w", on_change=keep, args=(f"{prefix}_w",),
                          help="'as trained': the checkpoint's own weights; 1 = binary")
    t = cols[1].select_slider("Timesteps T", t_opts, key=f"{prefix}_t", on_change=keep, args=(f"{prefix}_t",),
                              help="follows the model: a new model starts at its own T")
    s = cols[2].selectbox("State bits", STATE_BITS, key=f"{prefix}_s", on_change=keep, args=(f"{prefix}_s",),
                          help="membrane potential quantized to this many bits every step")
    cfg = replace(base, weight_bits=_bits_value(w), timesteps=int(t), state_bits=_bits_value(s))
    if extended:
        persist(f"{prefix}_r", base.rounding, ROUNDINGS)
        names = list(NEURONS)
        persist(f"{prefix}_n", names[list(NEURONS.values()).index(base.neuron)], names)
        persist(f"{prefix}_th", float(base.threshold_scale))
        r = cols[3].selectbox("Rounding", ROUNDINGS, key=f"{prefix}_r", on_change=keep, args=(f"{prefix}_r",))
        n = cols[4].selectbox("Neuron", names, key=f"{prefix}_n", on_change=keep, args=(f"{prefix}_n",))
        th = cols[5].number_input("Threshold scale", 0.25, 4.0, step=0.05, key=f"{prefix}_th", on_change=keep,
                                  args=(f"{prefix}_th",), help="multiplies every neuron's threshold θ")
        cfg = replace(cfg, rounding=r, neuron=NEURONS[n], threshold_scale=float(th))
    return cfg


def choice(widget, label: str, options: list, key: str, default=None, where=None, **kw):
    """A persistent selectbox / radio / select_slider (``widget``: ``"selectbox"``, ``"radio"``,
    ``"select_slider"``) whose remembered value falls back to ``default`` (or the first option) when it is not
    an option any more."""
    persist(key, options[0] if default is None else default, options)
    return getattr(where or st, widget)(label, options, key=key, on_change=keep, args=(key,), **kw)


def number(widget, label: str, key: str, default, where=None, **kw):
    """A persistent slider / number_input (``widget``: ``"slider"``, ``"number_input"``)."""
    persist(key, default)
    return getattr(where or st, widget)(label, key=key, on_change=keep, args=(key,), **kw)


def timestep_choice(label: str, steps: list[int], key: str, where=None) -> int | None:
    """The "at timestep t" slider: follows T (it starts at the last step, and returns there when T changes)."""
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]
    ss = st.session_state
    marker = f"_{key}_steps"
    if ss.get(marker) != (steps[0], steps[-1]):
        set_value(key, steps[-1])
        ss[marker] = (steps[0], steps[-1])
    persist(key, steps[-1], steps)
    return (where or st).select_slider(label, steps, key=key, on_change=keep, args=(key,))
