"""Choosing a configuration from a table of configurations, honestly: every accuracy with its sample count and
Wilson interval, a tolerance that the interval must support, a budget that must hold.

The table has one row per configuration (`qnoise.insights.config_table`, or a mixed-precision search's
records table: the same column names) with ``accuracy`` and costs ``memory_bits`` / ``energy_pj``.

- `with_intervals`: adds ``samples``, ``ci_low``, ``ci_high`` (95% Wilson) and ``memory_kib``, ``energy_nj``.
- `best_within_budget`: the most accurate row with memory at most X KiB and/or energy at most Y nJ (ties: less
  memory, then less energy).
- `cheapest_within_tolerance`: the cheapest row whose interval's lower end is at least the reference accuracy
  minus the tolerance (a point estimate one sample above the line does not count).
"""

from __future__ import annotations

import pandas as pd

from .accuracy import accuracy_interval

KIB_BITS = 8 * 1024


def with_intervals(points: pd.DataFrame, samples: int | None, confidence: float = 0.95) -> pd.DataFrame:
    """``points`` with ``samples`` (kept when the table has it, else the given count), ``ci_low``, ``ci_high``
    (nan when the count is unknown) and the costs in KiB and nJ."""
    out = points.copy()
    if "samples" not in out.columns or out["samples"].isna().all():
        out["samples"] = samples if samples else float("nan")
    if "ci_low" not in out.columns or out["ci_low"].isna().all():
        bounds = [accuracy_interval(a, int(n) if n == n else 0, confidence)
                  for a, n in zip(out["accuracy"], out["samples"], strict=True)]
        out["ci_low"] = [b[0] for b in bounds]
        out["ci_high"] = [b[1] for b in bounds]
    if "memory_bits" in out.columns:
        out["memory_kib"] = out["memory_bits"] / KIB_BITS
    if "energy_pj" in out.columns:
        out["energy_nj"] = out["energy_pj"] / 1000.0
    return out


def best_within_budget(points: pd.DataFrame, memory_kib: float | None = None,
                       energy_nj: float | None = None) -> pd.Series | None:
    """The most accurate row within the budget (ties: less memory, then less energy); None when none fits.
    Costs are read from ``memory_bits`` / ``energy_pj``."""
    fits = pd.Series(True, index=points.index)
    if memory_kib is not None:
        fits &= points["memory_bits"] / KIB_BITS <= memory_kib
    if energy_nj is not None:
        fits &= points["energy_pj"] / 1000.0 <= energy_nj
    ok = points[fits].dropna(subset=["accuracy"])
    if ok.empty:
        return None
    keys = ["accuracy"] + [c for c in ("memory_bits", "energy_pj") if c in ok.columns]
    return ok.sort_values(keys, ascending=[False] + [True] * (len(keys) - 1), kind="stable").iloc[0]


def interval_supports(low: float, accuracy: float, reference: float, tolerance: float) -> bool:
    """Whether an accuracy is within ``tolerance`` of ``reference`` by its interval: the interval's lower end
    ``low`` (or, without an interval, the accuracy itself) is at least ``reference - tolerance``."""
    bound = accuracy if low != low else low  # nan: no interval known
    return bool(bound >= reference - tolerance - 1e-12)


def cheapest_within_tolerance(points: pd.DataFrame, tolerance: float, cost: str, reference: float | None = None,
                              ) -> pd.Series | None:
    """The cheapest row (by ``cost``; ties: more accurate) whose ``ci_low`` (or, without intervals, its
    accuracy) is at least ``reference - tolerance`` (reference: the best accuracy in the table). None when no
    row qualifies."""
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    pts = points.dropna(subset=[cost, "accuracy"])
    if pts.empty:
        return None
    ref = float(pts["accuracy"].max()) if reference is None else float(reference)
    low = pts["ci_low"] if "ci_low" in pts.columns else pd.Series(float("nan"), index=pts.index)
    ok = pts[[interval_supports(lo, a, ref, tolerance) for lo, a in zip(low, pts["accuracy"], strict=True)]]
    if ok.empty:
        return None
    return ok.sort_values([cost, "accuracy"], ascending=[True, False], kind="stable").iloc[0]


def neuron_setting(described) -> str | None:
    """The `qnoise.probe.Setting` ``neuron`` a table's ``neuron`` column describes (`describe_neurons`: ``IF``,
    ``LIF``, ``signed IF``, ``signed LIF``; or a setting's own ``if`` / ``signed``): ``"signed"`` or ``"if"``
    (unsigned); None for ``mixed`` or anything else (as the model is)."""
    v = str(described).strip().lower()
    if v.startswith("signed"):
        return "signed"
    return "if" if v in ("if", "lif") else None


def setting_of(row: pd.Series) -> dict:
    """The configuration a row describes, as `qnoise.probe.Setting` fields (32 bits: float; missing: as the
    model is; the ``neuron`` column by `neuron_setting`)."""
    out = {}
    for k in ("weight_bits", "timesteps", "state_bits", "rounding", "neuron"):
        if k in row.index and pd.notna(row[k]):
            v = row[k]
            if k == "neuron":
                v = neuron_setting(v)
                if v is None:
                    continue
            out[k] = int(v) if k in ("weight_bits", "timesteps", "state_bits") else str(v)
    return out


def save_configuration(model, setting: dict, path, metrics: dict | None = None, note: dict | None = None):
    """Save ``model`` (a checkpointed qnoise model) at a chosen configuration as a new checkpoint: weight bits
    (None: as trained, 32: float, else uniform at that width, keeping the model's own options such as
    ``keep_first_last``), membrane bits, signed or unsigned neurons and T; ``metrics`` and ``note`` go into its
    config.json. Returns the
    folder. Loading it (`qnoise.io.load_checkpoint`) gives the model as the configuration describes it."""
    import copy

    from .io import save_checkpoint
    from .models import apply_quantization
    from .neurons import spiking_neurons
    from .probe.copying import clone_model

    config = getattr(model, "qnoise_config", None)
    if not isinstance(config, dict):
        raise ValueError("only a qnoise model (a checkpoint or build_model) can be saved at a configuration")
    ckpt = getattr(model, "qnoise_checkpoint", {}) or {}
    current = (config.get("quantization") or {}).get("weights")
    chosen = clone_model(model, "float")
    chosen.qnoise_config = copy.deepcopy(config)
    spec: dict = {}
    bits = setting.get("weight_bits")
    if bits is None:
        spec["weights"] = current
    elif bits == 32:
        spec["weights"] = None
    else:
        own = {k: current[k] for k in ("keep_first_last", "per_channel", "skip") if current and k in current}
        spec["weights"] = {**own, "bits": int(bits), "method": "uniform",
                           "rounding": setting.get("rounding", "nearest")}
    state = setting.get("state_bits")
    if state is not None:
        spec["membrane"] = None if state == 32 else {"bits": int(state), "rounding": "nearest"}
    apply_quantization(chosen, spec)
    neuron = setting.get("neuron")
    if neuron is not None:  # signed or unsigned IF (Fast-SNN), recorded where build_model reads it
        for _, n in spiking_neurons(chosen):
            n.signed = neuron == "signed"
        if isinstance(chosen.qnoise_config.get("neuron"), dict):
            chosen.qnoise_config["neuron"]["signed"] = neuron == "signed"
    return save_checkpoint(chosen, path, dataset=ckpt.get("dataset"),
                           timesteps=setting.get("timesteps") or ckpt.get("timesteps"), training=ckpt.get("training"),
                           metrics=metrics or {}, extra={"chosen": {"setting": setting, **(note or {})}})
