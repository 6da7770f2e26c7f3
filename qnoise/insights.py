"""Readings of a results table (DESIGN.md's tidy long form): budgets, Pareto fronts, where an SNN's drop
is born, and plain-language hints. Pure pandas functions, shared by the dashboard and any report.

- `config_table`: one row per configuration after all its T steps, run-level metrics as columns.
- `pareto_front`: configurations no other beats on both accuracy and a cost.
- `smallest_within`: the cheapest configuration whose accuracy is within a tolerance of a reference.
- `layer_verdicts`: per layer, each error term's share of its squared error and the dominant term.
- `drop_birth`: the first layer whose own error terms dominate: where the noise is born.
- `hints`: short advice drawn from those shares (so the lines cannot contradict each other).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .accuracy import accuracy_interval

OUTPUT = "<output>"
CONFIG_KEYS = ("model", "dataset", "weight_bits", "state_bits", "timesteps", "rounding", "neuron", "reference",
               "mode")


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
    keep, best, best_cost = [], -math.inf, None
    for idx, acc, c in zip(pts.index, pts[accuracy], pts[cost]):
        if acc > best or (acc == best and c == best_cost):  # an exact tie dominates neither
            keep.append(idx)
            best, best_cost = acc, c
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


# the error terms (`qnoise.probe.terms`), what each means and the knob that fixes it
TERMS = {
    "weight": ("weight", "this layer's own weight quantization", "give this layer more weight bits (or keep it at "
               "full precision)"),
    "quant": ("quantization", "too few levels: a t-step neuron has t + 1", "raise the timesteps T (or train at "
              "fewer activation bits so T = 2^b - 1 matches)"),
    "seq": ("sequential", "spike timing: the input arrives unevenly over the steps", "use signed IF neurons or "
            "layer-wise fine-tuning"),
    "own": ("own precision", "this layer's quantized weights, threshold and membrane", "give this layer more "
            "weight, threshold or membrane bits"),
    "prop": ("propagated", "inherited from the layers below", "fix the layer where the noise is born first"),
}


def _propagated(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["mode"] != "isolated"] if "mode" in df.columns else df


def layer_verdicts(df: pd.DataFrame) -> pd.DataFrame:
    """One verdict per layer of one configuration, from the error terms at the last timestep (propagated).

    Columns: ``layer``, ``err_total_mse``, ``nmse``, ``share_<k>`` for each term k (``err_k_contrib /
    err_total_mse``: the shares add up to 1, a term that cancels others may be negative), ``own_share`` (every
    term but the propagated one: what the layer adds itself), ``dominant`` (the term with the largest share)
    and ``dominant_share``. Empty when the table has no error terms (e.g. no ANN twin)."""
    _check(df, ("layer", "t", "metric", "value"), "layer_verdicts")
    names = [k for k in TERMS if (df["metric"] == f"err_{k}_contrib").any()]
    cols = ["layer", "err_total_mse", "nmse", *(f"share_{k}" for k in names), "own_share", "dominant",
            "dominant_share"]
    if not names:
        return pd.DataFrame(columns=cols)
    wide = _per_layer(_propagated(df), [*(f"err_{k}_contrib" for k in names), "err_total_mse", "nmse"])
    out = pd.DataFrame({"layer": wide.index, "err_total_mse": wide["err_total_mse"].to_numpy(),
                        "nmse": wide["nmse"].to_numpy() if "nmse" in wide else math.nan})
    total = wide["err_total_mse"].to_numpy()
    for k in names:
        out[f"share_{k}"] = [c / t if t > 0 else 0.0 for c, t in zip(wide[f"err_{k}_contrib"], total, strict=True)]
    out["own_share"] = out[[f"share_{k}" for k in names if k != "prop"]].sum(axis=1)
    shares = out[[f"share_{k}" for k in names]]
    values = np.nan_to_num(shares.to_numpy(dtype=float), nan=-np.inf)  # a missing term is never the largest
    out["dominant"] = [names[i] for i in values.argmax(axis=1)]
    out["dominant_share"] = shares.max(axis=1)
    out.loc[out["err_total_mse"] <= 0, ["dominant", "dominant_share"]] = (None, 0.0)
    return out[cols].reset_index(drop=True)


def drop_birth(df: pd.DataFrame, significant: float = 0.1) -> dict | None:
    """Where the noise is born, for one configuration: the first layer (in execution order) whose own terms
    (every term but the propagated one) make up at least half of its squared error, among the layers whose
    relative error (NMSE) is at least ``significant`` times the largest layer's (a layer with next to no
    error is not where anything is born). Returns ``{"layer", "own_share", "dominant", "dominant_share",
    "nmse"}`` or None (no error terms, or no error at all); ``dominant`` is the largest of the layer's own terms
    (its largest term overall may be the propagated one, 45 % against 55 % for all its own terms together, and
    the noise is not born of what it inherits)."""
    v = layer_verdicts(df)
    if v.empty:
        return None
    nmse = v["nmse"].fillna(0.0)
    top = float(nmse.max())
    if not top > 0:
        return None
    for _, row in v.iterrows():
        if row["err_total_mse"] > 0 and row["nmse"] >= significant * top and row["own_share"] >= 0.5:
            own = {k: float(row[c]) for c in row.index if c.startswith("share_") and (k := c[6:]) != "prop"
                   and pd.notna(row[c])}
            dominant = max(own, key=own.get)
            return {"layer": str(row["layer"]), "own_share": float(row["own_share"]), "dominant": dominant,
                    "dominant_share": own[dominant], "nmse": float(row["nmse"])}
    return None


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def accuracy_hint(df: pd.DataFrame, close_points: float = 0.01) -> str | None:
    """How the SNN's accuracy compares with its reference's (absolute gap, and which is ahead)."""
    run = last_timestep(_propagated(df)[_propagated(df)["layer"] == OUTPUT])
    get = {m: run.loc[run["metric"] == m, "value"] for m in ("accuracy", "ann_accuracy", "float_snn_accuracy",
                                                            "source_accuracy")}
    if not len(get["accuracy"]):
        return None
    acc = float(get["accuracy"].mean())
    ref_metric, ref_name = ("ann_accuracy", "its ANN twin") if len(get["ann_accuracy"]) else \
        ("float_snn_accuracy", "the same SNN at full precision")
    if not len(get[ref_metric]):
        return None
    ref = float(get[ref_metric].mean())
    gap = acc - ref
    if abs(gap) <= close_points:
        line = (f"The SNN ({_pct(acc)}) is within {100 * close_points:.0f} point(s) of {ref_name} ({_pct(ref)}): "
                f"little left to gain here.")
    elif gap < 0:
        line = f"The SNN ({_pct(acc)}) is {100 * -gap:.1f} points behind {ref_name} ({_pct(ref)})."
    else:
        line = (f"The SNN ({_pct(acc)}) is {100 * gap:.1f} points ahead of {ref_name} ({_pct(ref)}): the reference is "
                f"not the network the SNN learned to imitate, so its error terms measure a distance, not lost "
                f"accuracy.")
    if len(get["source_accuracy"]):
        src = float(get["source_accuracy"].mean())
        line += f" The quantized ANN it was converted from scores {_pct(src)}."
    samples = run.loc[run["metric"] == "samples", "value"]
    if len(samples) == 1 and samples.iloc[0] > 0:
        n = int(samples.iloc[0])
        lo, hi = accuracy_interval(acc, n)
        line += (f" Measured on {n} samples: the SNN's 95% interval is {_pct(lo)} to {_pct(hi)}, "
                 f"one sample is {100 / n:.2g} points.")
    return line


def hints(df: pd.DataFrame, *, saturated_rate: float = 0.6, close_points: float = 0.01,
          significant: float = 0.1) -> list[str]:
    """Plain-language advice for one configuration, each line drawn from numbers in the table.

    The accuracy gap against the reference (absolute, saying which is ahead); where the noise is born
    (`drop_birth`); one verdict per layer: the term with the largest share of its squared error
    (`layer_verdicts`) and the knob that fixes it, with the layer's weight SQNR when weights dominate and a
    note when its neurons saturate (firing rate at least ``saturated_rate``). The verdicts and the birth come
    from the same shares, so they cannot contradict each other.
    """
    _check(df, ("layer", "t", "metric", "value"), "hints")
    out: list[str] = []
    line = accuracy_hint(df, close_points)
    if line:
        out.append(line)
    born = drop_birth(df, significant)
    if born is not None:
        name, meaning, knob = TERMS[born["dominant"]]
        out.append(f"The noise is born in layer {born['layer']}: {_pct(born['own_share'])} of its squared error is "
                   f"its own, mostly {name} error ({_pct(born['dominant_share'])}: {meaning}); {knob}.")
    extra = _per_layer(_propagated(df), ["firing_rate", "weight_sqnr_db", "weight_bits"])
    verdicts = layer_verdicts(df)
    born_at = None if born is None else list(verdicts["layer"]).index(born["layer"])
    for i, v in verdicts.iterrows():
        if pd.isna(v["dominant"]) or (born is not None and v["layer"] == born["layer"]):
            continue
        k = v["dominant"]
        name, meaning, knob = TERMS[k]
        if k == "prop":  # only a layer below can be where this one's noise was born
            knob = f"fix layer {born['layer']} first" if born_at is not None and born_at < i else \
                "fix the layers below it first"
        detail = ""
        info = extra.loc[v["layer"]] if v["layer"] in extra.index else None
        if k == "weight" and info is not None and pd.notna(info.get("weight_sqnr_db")):
            bits = info.get("weight_bits")
            at = f" at {int(bits)} bits" if pd.notna(bits) else ""
            detail = f", weight SQNR {info['weight_sqnr_db']:.1f} dB{at}"
        out.append(f"Layer {v['layer']}: {name} error dominates ({_pct(v['dominant_share'])} of its squared error"
                   f"{detail}: {meaning}); {knob}.")
    if "firing_rate" in extra:
        for layer, rate in extra["firing_rate"].dropna().items():
            if rate >= saturated_rate:
                out.append(f"Layer {layer} fires at {rate:.2f} spikes per neuron per step: many neurons run at the "
                           f"maximum rate, where the threshold clips them; raise the threshold or the timesteps.")
    return out


def kept_rate_vs_twin(kept: dict) -> tuple:
    """From one layer's kept tensors (``analyze(..., keep_tensors=k).attrs["tensors"][layer]``): the reference's
    activation (the ANN's ``A`` at its last step, or the float SNN's rate after all steps) and the SNN rate
    ``r(T) = mean_t theta * s[t]``, both flattened numpy arrays of the same length."""
    ref_key = "ann" if "ann" in kept else "reference_rate"
    for key in ("spikes", "threshold", ref_key):
        if key not in kept:
            raise ValueError(f"kept tensors need {key!r}; got {sorted(kept)}")
    spikes = np.asarray(kept["spikes"], dtype=np.float64)
    theta = np.asarray(kept["threshold"], dtype=np.float64)
    if theta.ndim == 1 and spikes.ndim > 3:  # per channel: [C] against [T, k, C, ...]
        theta = theta.reshape(-1, *[1] * (spikes.ndim - 3))
    ref = np.asarray(kept[ref_key], dtype=np.float64)[-1]  # the reference after all its steps
    rate = (spikes * theta).mean(0)
    return ref.reshape(-1), rate.reshape(-1)
