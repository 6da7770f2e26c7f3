"""Readings of a results table (DESIGN.md's tidy long form): budgets, Pareto fronts, where an SNN's drop
is born, and plain-language hints. Pure pandas functions, shared by the dashboard and any report.

- `config_table`: one row per configuration after all its T steps, run-level metrics as columns.
- `pareto_front`: configurations no other beats on both accuracy and a cost.
- `smallest_within`: the cheapest configuration whose accuracy is within a tolerance of a reference.
- `drop_birth`: the layer where the SNN's agreement with its ANN twin is lost.
- `hints`: short advice drawn from the error decomposition, firing rates and weight SQNR.
"""

from __future__ import annotations

import math

import pandas as pd

OUTPUT = "<output>"
CONFIG_KEYS = ("model", "dataset", "weight_bits", "state_bits", "timesteps", "rounding", "neuron", "mode")


def _check(df, columns, what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what} needs a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs column(s) {missing}; the table has {list(df.columns)}")


def last_timestep(df: pd.DataFrame) -> pd.DataFrame:
    """Rows at each configuration's last timestep (rows without a timestep are kept)."""
    keys = [c for c in (*CONFIG_KEYS, "layer", "metric") if c in df.columns]
    if df.empty:
        return df
    t = pd.to_numeric(df["t"], errors="coerce")
    last = t.groupby([df[k] for k in keys], dropna=False).transform("max")
    return df[(t == last) | t.isna()]


def config_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: its keys, then the run-level metrics (``layer == "<output>"``) after
    all T steps as columns (``accuracy``, ``ann_accuracy``, ``agreement``, ``energy_pj``, ``memory_bits``...)."""
    _check(df, ("layer", "t", "metric", "value"), "config_table")
    run = last_timestep(df[df["layer"] == OUTPUT])
    if run.empty:
        raise ValueError("the table has no run-level rows (layer='<output>')")
    keys = [c for c in CONFIG_KEYS if c in run.columns and run[c].notna().any()]
    wide = run.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean", dropna=False)
    wide = wide.dropna(how="all").reset_index()
    wide.columns.name = None
    return wide


def pareto_front(points: pd.DataFrame, cost: str = "memory_bits", accuracy: str = "accuracy") -> pd.DataFrame:
    """Rows of ``points`` not dominated by another row (lower or equal cost and higher or equal accuracy,
    one of them strictly), sorted by cost."""
    _check(points, (cost, accuracy), "pareto_front")
    pts = points.dropna(subset=[cost, accuracy]).sort_values([cost, accuracy], ascending=[True, False])
    keep, best = [], -math.inf
    for idx, acc in zip(pts.index, pts[accuracy]):
        if acc > best:
            keep.append(idx)
            best = acc
    return pts.loc[keep]


def smallest_within(points: pd.DataFrame, tolerance: float, cost: str = "memory_bits",
                    accuracy: str = "accuracy", reference: float | None = None) -> pd.Series | None:
    """The cheapest row whose accuracy is at least ``reference - tolerance`` (reference: the best accuracy
    in ``points``); ties broken by higher accuracy. ``None`` when no row qualifies."""
    _check(points, (cost, accuracy), "smallest_within")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    pts = points.dropna(subset=[cost, accuracy])
    if pts.empty:
        return None
    ref = float(pts[accuracy].max()) if reference is None else float(reference)
    ok = pts[pts[accuracy] >= ref - tolerance - 1e-12]
    if ok.empty:
        return None
    return ok.sort_values([cost, accuracy], ascending=[True, False]).iloc[0]


def _per_layer(df: pd.DataFrame, metrics) -> pd.DataFrame:
    part = last_timestep(df[df["metric"].isin(list(metrics)) & (df["layer"] != OUTPUT)])
    layers = [x for x in pd.unique(part["layer"])]
    return part.pivot_table(index="layer", columns="metric", values="value", aggfunc="mean").reindex(layers)


def drop_birth(df: pd.DataFrame) -> dict | None:
    """Where the SNN parts from its ANN twin, for one configuration.

    With isolated-mode rows (each layer fed the ANN twin's input) the answer is the layer with the lowest
    isolated SQNR: the one that adds the most noise by itself. Otherwise it is the layer whose SQNR
    (SNN rate vs ANN twin, last timestep) falls most below the previous layer's, the first layer counting
    its own SQNR's distance from the best layer's. Returns ``{"layer", "sqnr_db", "fall_db", "basis"}``
    or ``None`` when the table has no per-layer SQNR.
    """
    _check(df, ("layer", "t", "metric", "value"), "drop_birth")
    if "mode" in df.columns and (df["mode"] == "isolated").any():
        iso = _per_layer(df[df["mode"] == "isolated"], ["sqnr_db"])
        if "sqnr_db" in iso and iso["sqnr_db"].notna().any():
            layer = iso["sqnr_db"].idxmin()
            return {"layer": str(layer), "sqnr_db": float(iso.loc[layer, "sqnr_db"]),
                    "fall_db": float(iso["sqnr_db"].max() - iso.loc[layer, "sqnr_db"]), "basis": "isolated"}
    prop = df[df["mode"] != "isolated"] if "mode" in df.columns else df
    wide = _per_layer(prop, ["sqnr_db"])
    if "sqnr_db" not in wide or wide["sqnr_db"].notna().sum() == 0:
        return None
    s = wide["sqnr_db"].dropna()
    falls = s.shift(1) - s
    falls.iloc[0] = s.max() - s.iloc[0]
    layer = falls.idxmax()
    return {"layer": str(layer), "sqnr_db": float(s[layer]), "fall_db": float(falls[layer]), "basis": "propagated"}


def hints(df: pd.DataFrame, *, share: float = 0.5, saturated_rate: float = 0.6, weight_sqnr_db: float = 12.0,
          close_points: float = 0.01) -> list[str]:
    """Plain-language advice for one configuration, each line drawn from a number in the table.

    Rules: the SNN is within ``close_points`` of its ANN twin; in a layer, sequential error above ``share``
    of the error parts (spike timing: signed IF or layer-wise fine-tuning), quantization error above it
    (too few timesteps: raise T or train at lower activation bits), propagated error above it (fix the
    layers below first); a firing rate above ``saturated_rate`` (neurons clip at the threshold: raise it);
    weight SQNR below ``weight_sqnr_db`` (keep that layer's weights at more bits).
    """
    _check(df, ("layer", "t", "metric", "value"), "hints")
    prop = df[df["mode"] != "isolated"] if "mode" in df.columns else df
    out: list[str] = []
    run = last_timestep(prop[prop["layer"] == OUTPUT])
    acc = run.loc[run["metric"] == "accuracy", "value"]
    ann = run.loc[run["metric"] == "ann_accuracy", "value"]
    if len(acc) and len(ann):
        gap = float(ann.mean() - acc.mean())
        if gap <= close_points:
            out.append(f"The SNN is within {100 * close_points:.0f} point(s) of its ANN twin "
                       f"({100 * acc.mean():.1f}% vs {100 * ann.mean():.1f}%): little left to gain here.")
        else:
            out.append(f"The SNN loses {100 * gap:.1f} points against its ANN twin "
                       f"({100 * acc.mean():.1f}% vs {100 * ann.mean():.1f}%).")
    parts = ["err_quant_mse", "err_seq_mse", "err_prop_mse"]
    wide = _per_layer(prop, [*parts, "firing_rate", "weight_sqnr_db", "weight_bits"])
    if all(p in wide for p in parts):
        sums = wide[parts].sum(axis=1)
        for layer, row in wide.iterrows():
            if not sums[layer] > 0:
                continue
            q, s, p = (row[x] / sums[layer] for x in parts)
            if s >= share:
                out.append(f"Sequential error (spike timing) dominates layer {layer} ({100 * s:.0f}% of its error): "
                           f"try signed IF neurons or layer-wise fine-tuning.")
            elif q >= share:
                out.append(f"Quantization error dominates layer {layer} ({100 * q:.0f}%): more timesteps T give "
                           f"its neurons more levels (T + 1).")
            elif p >= share and layer != wide.index[0]:
                out.append(f"Most of layer {layer}'s error ({100 * p:.0f}%) is inherited from the layers below: "
                           f"fix those first.")
    if "firing_rate" in wide:
        for layer, rate in wide["firing_rate"].dropna().items():
            if rate >= saturated_rate:
                out.append(f"Layer {layer} fires at {rate:.2f} spikes per neuron per step: many neurons clip at "
                           f"the threshold; raise the threshold (threshold scale) or the timesteps.")
    if "weight_sqnr_db" in wide:
        for layer, db in wide["weight_sqnr_db"].dropna().items():
            if db < weight_sqnr_db:
                bits = wide.loc[layer, "weight_bits"] if "weight_bits" in wide else float("nan")
                at = f" at {int(bits)} bits" if bits == bits else ""
                out.append(f"Weights of layer {layer} are noisy ({db:.1f} dB{at}): keep this layer at more bits "
                           f"(first and last layers often stay at full precision).")
    born = drop_birth(df)
    if born is not None and born["basis"] == "isolated":
        out.append(f"The drop is born in layer {born['layer']}: fed the ANN twin's own input, it is the noisiest "
                   f"layer (SQNR {born['sqnr_db']:.1f} dB, {born['fall_db']:.1f} dB below the cleanest).")
    elif born is not None and born["fall_db"] > 0:
        out.append(f"The drop is born in layer {born['layer']}: its SQNR ({born['sqnr_db']:.1f} dB) falls "
                   f"{born['fall_db']:.1f} dB below the layer before it.")
    return out


def kept_rate_vs_twin(kept: dict) -> tuple:
    """From one layer's kept tensors (``analyze(..., keep_tensors=k).attrs["tensors"][layer]``): the ANN
    twin's activation ``A = clamp(Z, 0, theta)`` (Z at its last step) and the SNN rate
    ``r(T) = mean_t theta * s[t]``, both flattened numpy arrays of the same length."""
    import numpy as np
    import torch

    from .probe.functional import clamp_activation

    for key in ("spikes", "twin_input", "threshold"):
        if key not in kept:
            raise ValueError(f"kept tensors need {key!r}; got {sorted(kept)}")
    spikes = torch.as_tensor(np.asarray(kept["spikes"]), dtype=torch.float32)
    z = torch.as_tensor(np.asarray(kept["twin_input"]), dtype=torch.float32)
    theta = torch.as_tensor(np.asarray(kept["threshold"]), dtype=torch.float32)
    if theta.dim() == 1 and spikes.dim() > 3:  # per channel: [C] against [T, k, C, ...]
        theta = theta.view(-1, *([1] * (spikes.dim() - 3)))
    ann = clamp_activation(z[-1], theta)  # the twin after all its steps (one step for a static twin)
    rate = (spikes * theta).mean(0)
    return ann.flatten().numpy(), rate.flatten().numpy()
