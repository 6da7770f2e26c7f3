"""Synthetic results tables in qnoise's tidy schema (DESIGN.md, "Results: one tidy table"), for testing the
dashboard's plot builders and pages without running an analysis. The numbers are made up but shaped like
real ones: noise falls as T and weight bits grow; the error terms' signed means add up to the total mean and
their contributions to the total MSE, as the probe's do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

LAYERS = ("act1", "act2", "act3")
TERMS = ("weight", "prop", "quant", "seq")
PER_LAYER_T = ("sqnr_db", "mse", "nmse", "cosine", *(f"err_{k}_{s}" for k in TERMS for s in ("mse", "mean", "contrib")),
               "err_total_mse", "err_total_mean", "firing_rate")
COLUMNS = ["model", "dataset", "weight_bits", "state_bits", "timesteps", "rounding", "neuron", "reference", "mode",
           "layer", "t", "metric", "value"]


def analysis_frame(weight_bits: int | None = 4, timesteps: int = 8, state_bits: int | None = None,
                   rounding: str = "nearest", neuron: str = "IF", model: str = "digits-cnn",
                   layers=LAYERS, mode: str = "propagated", seed: int = 0) -> pd.DataFrame:
    """One configuration's table, like ``qnoise.analyze`` returns."""
    rng = np.random.default_rng(seed + 97 * (weight_bits or 32) + timesteps)
    wb = weight_bits or 32
    cfg = dict(model=model, dataset="digits", weight_bits=wb, state_bits=state_bits or 32, timesteps=timesteps,
               rounding=rounding, neuron=neuron, reference="ann", mode=mode)
    rows = []
    for li, layer in enumerate(layers):
        for t in range(1, timesteps + 1):
            parts = {"weight": 2.0 ** -wb if li == 0 else 0.2 * 2.0 ** -wb, "prop": 0.005 * li + 0.2 * 2.0 ** -wb,
                     "quant": 0.02 / t + 0.01 * rng.random(), "seq": 0.01 * li / t}
            total = sum(parts.values())
            vals = {"sqnr_db": 10 * np.log10(1 / total) - 2 * li, "mse": total ** 2 * 10, "nmse": total * 2,
                    "cosine": 1 - total, "err_total_mse": total ** 2 * 10,
                    "firing_rate": 0.1 + 0.05 * li + 0.01 * rng.random()}
            for k, v in parts.items():
                vals[f"err_{k}_mse"] = v ** 2 * 10
                vals[f"err_{k}_contrib"] = v * total * 10  # shares of the total MSE: they add up to it
                vals[f"err_{k}_mean"] = -v / 3 if k == "quant" else v / 2
            vals["err_total_mean"] = sum(vals[f"err_{k}_mean"] for k in parts)
            rows += [{**cfg, "layer": layer, "t": t, "metric": m, "value": float(v)} for m, v in vals.items()]
        per_layer = {"weight_sqnr_db": 6.0 * wb - 2 * li, "weight_bits": float(wb), "params": 1000.0 * (li + 1),
                     "synops": 5e4 * (li + 1) * timesteps, "macs": 2e4 * (li + 1)}
        rows += [{**cfg, "layer": layer, "t": 0, "metric": m, "value": float(v)} for m, v in per_layer.items()]
    rows += [{**cfg, "layer": "readout", "t": 0, "metric": m, "value": v}
             for m, v in {"weight_sqnr_db": 6.0 * wb, "weight_bits": float(wb), "params": 650.0}.items()]
    for t in range(1, timesteps + 1):
        acc = min(0.98, 0.5 + 0.06 * t + 0.03 * wb)
        run = {"accuracy": acc, "agreement": acc / 0.98, "synops": 1e5 * t, "energy_pj": 0.9 * 1e5 * t}
        rows += [{**cfg, "layer": "<output>", "t": t, "metric": m, "value": float(v)} for m, v in run.items()]
    run0 = {"ann_accuracy": 0.98, "ann_energy_pj": 4.6 * 3e4, "memory_bits": 3000.0 * wb + 500}
    rows += [{**cfg, "layer": "<output>", "t": 0, "metric": m, "value": float(v)} for m, v in run0.items()]
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.astype({"weight_bits": "Int64", "state_bits": "Int64", "timesteps": "int64", "t": "int64"})


def sweep_frame(weight_bits=(2, 4, 8), timesteps=(2, 4, 8), **kw) -> pd.DataFrame:
    """A grid of configurations in one table, like ``qnoise.sweep`` returns."""
    return pd.concat([analysis_frame(b, t, **kw) for b in weight_bits for t in timesteps], ignore_index=True)


def sensitivity_frame(layers=LAYERS) -> pd.DataFrame:
    rows = []
    for q in ("weights", "timesteps"):
        rows.append({"layer": "<all>", "quantity": q, "variant": "all", "metric": "accuracy", "value": 0.88})
        rows.append({"layer": "<all>", "quantity": q, "variant": "none", "metric": "accuracy", "value": 0.98})
        for i, layer in enumerate(layers):
            rows.append({"layer": layer, "quantity": q, "variant": "only", "metric": "accuracy", "value": 0.97 - 0.01 * i})
            rows.append({"layer": layer, "quantity": q, "variant": "all_but", "metric": "accuracy", "value": 0.9 + 0.02 * i})
    return pd.DataFrame(rows)


def write_sweep_dir(path: Path, df: pd.DataFrame | None = None) -> Path:
    """A sweep run directory: one parquet per cell plus ``manifest.json``."""
    path.mkdir(parents=True, exist_ok=True)
    df = sweep_frame() if df is None else df
    cells = []
    for (wb, t), cell in df.groupby(["weight_bits", "timesteps"]):
        name = f"cell-w{wb}-t{t}.parquet"
        cell.to_parquet(path / name, index=False)
        cells.append({"file": name, "config": {"weight_bits": int(wb), "timesteps": int(t)}, "status": "done"})
    (path / "manifest.json").write_text(json.dumps({"cells": cells}))
    return path
