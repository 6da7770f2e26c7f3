"""What a search returns: every evaluated configuration as a table, the accuracy/memory and accuracy/energy
fronts, and the configuration chosen for the budget, which saves as a checkpoint.

The choice (`qnoise.choice`, the rule the dashboard's Budget page applies too): among evaluated configurations
within the budget (memory and/or energy), the most accurate (ties: less memory, then less energy). It is
*within tolerance* of the highest-precision configuration only when the lower end of its accuracy's Wilson
interval (95%) is at least the reference accuracy minus the tolerance (`qnoise.choice.interval_supports`);
otherwise the result says the sample count does not support the claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from torch import nn

from ..choice import best_within_budget, interval_supports
from ..insights import pareto_front
from ..io import save_checkpoint
from ..models import apply_quantization
from ..probe.copying import clone_model
from ..table_files import write_parquet_atomic
from .space import Candidate

KIB_BITS = 8 * 1024


def records_table(records: list[dict], path: list[str] | None = None) -> pd.DataFrame:
    """One row per evaluated configuration: ``label``, ``w:<layer>`` / ``v:<neuron>`` bits, ``timesteps``,
    ``thresholds``, ``rounding``, ``accuracy``, ``samples``, ``ci_low``, ``ci_high``, ``memory_bits``,
    ``memory_kib``, ``energy_pj``, ``energy_nj``, ``on_path`` (on the greedy path) and ``key``."""
    on_path = set(path or [])
    rows = []
    for r in records:
        c = r["candidate"]
        rows.append({"label": r["label"], **{f"w:{k}": v for k, v in c["weights"].items()},
                     **{f"v:{k}": v for k, v in c["states"].items()}, "timesteps": c["timesteps"],
                     "thresholds": c["thresholds"], "rounding": c["rounding"], "accuracy": r["accuracy"],
                     "samples": r["samples"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                     "memory_bits": r["memory_bits"], "memory_kib": r["memory_bits"] / KIB_BITS,
                     "energy_pj": r["energy_pj"], "energy_nj": r["energy_pj"] / 1000.0,
                     "on_path": r["key"] in on_path, "key": r["key"]})
    return pd.DataFrame(rows).sort_values(["memory_bits", "energy_pj"], kind="stable").reset_index(drop=True)


def layer_table(record: dict) -> pd.DataFrame:
    """One configuration per layer: weight bits, membrane bits, memory (bits, KiB) and energy (pJ)."""
    c = record["candidate"]
    rows = []
    for layer, costs in record["layers"].items():
        rows.append({"layer": layer, "weight_bits": costs["weight_bits"],
                     "membrane_bits": c["states"].get(layer), "memory_bits": costs["memory_bits"],
                     "memory_kib": costs["memory_bits"] / KIB_BITS, "energy_pj": costs["energy_pj"]})
    return pd.DataFrame(rows)


@dataclass
class SearchResult:
    """See the module docstring. ``table`` holds every evaluation (`records_table`); ``reference`` the
    highest-precision configuration's row; ``chosen`` the budget's choice (None: nothing fits);
    ``message`` says what was chosen and whether it is within tolerance."""

    table: pd.DataFrame
    records: dict
    reference: pd.Series
    budget: dict
    tolerance: float
    chosen: pd.Series | None = None
    message: str = ""
    loaded: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def front_memory(self) -> pd.DataFrame:
        return pareto_front(self.table, "memory_bits")

    @property
    def front_energy(self) -> pd.DataFrame:
        return pareto_front(self.table, "energy_pj")

    @property
    def candidate(self) -> Candidate | None:
        return None if self.chosen is None else Candidate.from_dict(self.records[self.chosen["key"]]["candidate"])

    def layers(self) -> pd.DataFrame:
        """The chosen configuration per layer (`layer_table`)."""
        if self.chosen is None:
            raise ValueError("no configuration was chosen (nothing fits the budget)")
        return layer_table(self.records[self.chosen["key"]])

    def save_tables(self, folder: str | Path, sidecar: dict | None = None) -> list[Path]:
        """``evaluations.parquet``, ``front_memory.parquet``, ``front_energy.parquet`` (and ``chosen_layers``)."""
        folder = Path(folder)
        side = {"budget": self.budget, "tolerance": self.tolerance, "message": self.message, **(sidecar or {})}
        out = [write_parquet_atomic(self.table, folder / "evaluations.parquet", side),
               write_parquet_atomic(self.front_memory, folder / "front_memory.parquet", side),
               write_parquet_atomic(self.front_energy, folder / "front_energy.parquet", side)]
        if self.chosen is not None:
            out.append(write_parquet_atomic(self.layers(), folder / "chosen_layers.parquet", side))
        return out

    def save_checkpoint(self, model: nn.Module, path: str | Path, method: str = "uniform") -> Path:
        """The chosen configuration of ``model`` (the model the search ran on) as a checkpoint
        (`save_configuration`), with the search's accuracy, budget and tolerance."""
        if self.candidate is None:
            raise ValueError("no configuration was chosen (nothing fits the budget): nothing to save")
        return save_configuration(model, self.candidate, path, self.chosen, method,
                                  {"budget": self.budget, "tolerance": self.tolerance, "message": self.message,
                                   **self.extra})


def candidate_of(row: pd.Series) -> Candidate:
    """The configuration a row of `records_table` describes (its ``w:``/``v:`` columns, T, thresholds, rounding)."""
    weights = tuple((str(k)[2:], int(v)) for k, v in row.items() if str(k).startswith("w:") and v == v)
    states = tuple((str(k)[2:], int(v)) for k, v in row.items() if str(k).startswith("v:") and v == v)
    if not weights and not states:
        raise ValueError("the row holds no per-layer bits (w:<layer> / v:<neuron> columns of a search's table)")
    return Candidate(weights, states, int(row["timesteps"]), int(row.get("thresholds", 32)),
                     str(row.get("rounding", "nearest")))


def save_configuration(model: nn.Module, candidate: Candidate, path: str | Path, row: pd.Series | None = None,
                       method: str = "uniform", note: dict | None = None) -> Path:
    """``model`` at ``candidate``'s per-layer bits as a checkpoint: weights on their grids, the quantization spec
    recording every layer's bits, T; ``row`` (the evaluation) gives its accuracy and costs to the metrics."""
    config = getattr(model, "qnoise_config", None)
    if not isinstance(config, dict):
        raise ValueError("a configuration can be saved only for a qnoise model (build_model or a checkpoint)")
    chosen = clone_model(model, "float")
    chosen.qnoise_config = dict(config)
    apply_quantization(chosen, candidate.spec(method))
    ckpt = getattr(model, "qnoise_checkpoint", {}) or {}
    metrics = {}
    if row is not None:
        metrics = {"search_accuracy": float(row["accuracy"]), "search_samples": int(row["samples"]),
                   "search_memory_bits": float(row["memory_bits"]), "search_energy_pj": float(row["energy_pj"])}
    return save_checkpoint(chosen, path, dataset=ckpt.get("dataset"), timesteps=candidate.timesteps,
                           training=ckpt.get("training"), metrics=metrics,
                           extra={"search": {"configuration": candidate.as_dict(), **(note or {})}})


def choose(table: pd.DataFrame, reference: pd.Series, budget: dict, tolerance: float) -> tuple[pd.Series | None, str]:
    """The budget's choice (`qnoise.choice.best_within_budget`) and a sentence about it (module docstring)."""
    limits = [f"memory <= {budget['memory_kib']:g} KiB"] if budget.get("memory_kib") is not None else []
    limits += [f"energy <= {budget['energy_nj']:g} nJ"] if budget.get("energy_nj") is not None else []
    within = " and ".join(limits) or "no budget"
    chosen = best_within_budget(table, budget.get("memory_kib"), budget.get("energy_nj"))
    if chosen is None:
        cheapest = table.sort_values(["memory_bits", "energy_pj"]).iloc[0]
        return None, (f"no evaluated configuration fits {within}; the cheapest takes {cheapest['memory_kib']:.1f} "
                      f"KiB and {cheapest['energy_nj']:.1f} nJ")
    ref = float(reference["accuracy"])
    gap = 100 * (ref - chosen["accuracy"])
    text = (f"chosen for {within}: {chosen['label']}, accuracy {100 * chosen['accuracy']:.1f}% "
            f"(95% interval {100 * chosen['ci_low']:.1f}-{100 * chosen['ci_high']:.1f}%, {int(chosen['samples'])} "
            f"samples), {chosen['memory_kib']:.1f} KiB, {chosen['energy_nj']:.1f} nJ, {abs(gap):.1f} points "
            f"{'below' if gap >= 0 else 'above'} the highest precision ({100 * ref:.1f}%)")
    points = f"{100 * tolerance:g} point{'' if tolerance == 0.01 else 's'}"
    if interval_supports(chosen["ci_low"], chosen["accuracy"], ref, tolerance):
        text += f"; within {points} of it, which its interval supports"
    else:
        text += (f"; within {points} of it is not supported by {int(chosen['samples'])} samples (the interval's "
                 f"lower end is {100 * (ref - chosen['ci_low']):.1f} points below)")
    return chosen, text
