"""The probe's long-form table (DESIGN.md, "Results"), built in one place from what a `Probe` recorded.

Columns `COLUMNS`: ``model, dataset, weight_bits, state_bits, timesteps, rounding, neuron, reference, mode,
layer, t, metric, value``. One row per (layer, t, metric) and mode; ``t = 0`` for values that do not
depend on t; ``layer = "<output>"`` for run-level rows. `Recording` holds the running sums; `build_table`
turns them into rows with the definitions of `qnoise.metrics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..metrics import cosine_from_sums, firing_rate_from_counts, sqnr_from_norms
from .sums import columns

COLUMNS = ["model", "dataset", "weight_bits", "state_bits", "timesteps", "rounding", "neuron", "reference", "mode",
           "layer", "t", "metric", "value"]
CONFIG_COLUMNS = COLUMNS[:9]
MODES = ("propagated", "isolated")


@dataclass
class Recording:
    """Running sums of one probe (float64 tensors), filled batch by batch.

    ``errors[(neuron, mode)]``: ``[T, S]`` per-step sums of `qnoise.probe.sums` for ``terms``;
    ``ref2[neuron]``: ``[T]`` sum of the reference's square; ``events[neuron]``: ``[T]`` spikes (kept only
    when there is no reference, whose sums hold them); ``membrane[neuron]``: ``[T, 2]``;
    ``ops[kind][weight layer]``: ``[T]`` accumulates (``"ac"``) or MACs (``"mac"``) per step;
    ``counts``: samples per step that are ``"correct"``, on which SNN and reference ``"agree"``, that the
    reference (``"ref_correct"``) or the source ANN (``"source_correct"``) classify correctly.
    ``elements[neuron]``: neurons per sample.
    """

    terms: tuple[str, ...] = ()
    errors: dict = field(default_factory=dict)
    ref2: dict = field(default_factory=dict)
    events: dict = field(default_factory=dict)
    membrane: dict = field(default_factory=dict)
    ops: dict = field(default_factory=lambda: {"ac": {}, "mac": {}})
    counts: dict = field(default_factory=dict)
    elements: dict = field(default_factory=dict)
    samples: int = 0
    labeled: int = 0

    def add(self, store: dict, key, value: torch.Tensor) -> None:
        """``store[key] += value`` (float64, created on first use)."""
        if key in store:
            store[key].add_(value.to(store[key]))
        else:
            store[key] = value.detach().to(torch.float64).clone()


def error_metrics(sums: np.ndarray, ref2: np.ndarray, count: int, terms: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per-t metrics from the per-step sums ``[T, S]`` (`qnoise.probe.sums.columns(terms)`) and the reference's
    square ``[T]``, over ``count`` elements per step (samples x neurons)::

        sqnr_db = 20 log10(||ref|| / ||r - ref||), mse = nmse * ||ref||^2 / count, nmse = ||r - ref||^2 / ||ref||^2,
        cosine = <r, ref> / (||r|| ||ref||) with <r, ref> = (||r||^2 + ||ref||^2 - ||r - ref||^2) / 2,
        err_k_mean = sum e_k / count, err_k_mse = sum e_k^2 / count, err_k_contrib = sum e_k e_total / count,
        err_total_mean = sum_k err_k_mean, err_total_mse, firing_rate = spikes / (count * t)
    """
    g = {name: sums[:, i] for i, name in enumerate(columns(terms))}
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        out["sqnr_db"] = np.array([sqnr_from_norms(math.sqrt(a), math.sqrt(b)) for a, b in zip(ref2, g["total2"],
                                                                                                strict=True)])
        out["mse"] = g["total2"] / count
        out["nmse"] = np.where(ref2 > 0, g["total2"] / np.where(ref2 > 0, ref2, 1), np.nan)
        cross = (g["rate2"] + ref2 - g["total2"]) / 2
        out["cosine"] = np.array([cosine_from_sums(c, a, b) for c, a, b in zip(cross, ref2, g["rate2"], strict=True)])
    for k in terms:
        out[f"err_{k}_mse"] = g[f"{k}2"] / count
        out[f"err_{k}_mean"] = g[k] / count
        out[f"err_{k}_contrib"] = g[f"{k}_x"] / count
    out["err_total_mse"] = g["total2"] / count
    out["err_total_mean"] = sum(g[k] for k in terms) / count
    steps = np.arange(1, len(sums) + 1)
    out["firing_rate"] = np.array([firing_rate_from_counts(e, count, s)
                                   for e, s in zip(g["events"].cumsum(), steps, strict=True)])
    return out


class Rows:
    """Collects ``(layer, t, metric, value, mode)`` rows."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(self, layer: str, t, metric: str, values, mode: str = "propagated") -> None:
        """One row (``t`` an int, ``values`` a number) or one per step (``t`` and ``values`` sequences)."""
        if np.ndim(values) == 0:
            self.rows.append((layer, int(t), metric, float(values), mode))
        else:
            for tt, v in zip(t, values, strict=True):
                self.rows.append((layer, int(tt), metric, float(v), mode))

    def frame(self, config: dict) -> pd.DataFrame:
        """The rows with the config columns, in `COLUMNS` order and types."""
        unknown = set(config) - set(CONFIG_COLUMNS)
        if unknown:
            raise ValueError(f"unknown config column(s) {sorted(unknown)}; config columns are {CONFIG_COLUMNS}")
        df = pd.DataFrame(self.rows, columns=["layer", "t", "metric", "value", "mode"])
        for key in CONFIG_COLUMNS:
            if key != "mode":
                df[key] = config[key]
        return df[COLUMNS].astype({"model": str, "dataset": str, "weight_bits": "int64", "state_bits": "int64",
                                   "timesteps": "int64", "rounding": str, "neuron": str, "reference": str,
                                   "mode": str, "layer": str, "t": "int64", "metric": str, "value": "float64"})
