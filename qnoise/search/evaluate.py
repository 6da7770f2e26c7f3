"""Evaluating one configuration for real: the model at the candidate's per-layer bits, run by the probe over
the search's data, gives its accuracy (with the sample count and a Wilson interval) and its costs per layer
at real widths (memory bits, energy), the same numbers `qnoise.analyze` reports.

With ``sensitivity=True`` the run compares the candidate with the same SNN at full precision
(``reference="snn"``), which adds how often its prediction differs from the float SNN's (``disagreement``) and
how much noise its neuron layers carry (``noise``: the mean NMSE of the layers' rates against the float SNN):
the continuous measures a guided search orders its moves by. Without it the run has no reference
(``reference="none"``), the cheapest way to get accuracy and costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..metrics import wilson_interval
from ..models import apply_quantization
from ..probe import OUTPUT, Execution
from ..probe.analysis import analysis
from ..probe.copying import clone_model
from ..probe.inputs import count_samples
from ..sweep.worker import frames_plan
from .space import Candidate


def _values(df) -> dict:
    """``{(layer, metric, t): value}`` of the table's propagated rows (one pass; pandas copies a table's attrs
    on every filter, which made repeated lookups the slowest part of an evaluation)."""
    prop = df["mode"].to_numpy() == "propagated"
    return {(layer, metric, int(t)): float(v) for layer, metric, t, v in
            zip(df["layer"].to_numpy()[prop], df["metric"].to_numpy()[prop], df["t"].to_numpy()[prop],
                df["value"].to_numpy()[prop], strict=True)}


@dataclass
class Evaluator:
    """Evaluates candidates on one model and data. ``model`` is copied once with float weights (the
    candidates' quantizers are applied to the copy); ``options`` are `qnoise.analyze`'s execution and
    counting options (``batch_size``, ``limit``, ``split``, ``input_mode``, ``device``, ``seed``, ``energy``);
    ``method`` the weight quantizer (``"uniform"`` by default)."""

    model: nn.Module
    data: object
    options: dict
    method: str = "uniform"

    def __post_init__(self) -> None:
        config = getattr(self.model, "qnoise_config", None)
        self.model = clone_model(self.model, "float")
        if config is not None:
            self.model.qnoise_config = dict(config)
        self.samples = count_samples(self.data, self.options.get("limit"))

    @torch.no_grad()
    def __call__(self, candidate: Candidate, sensitivity: bool = False) -> dict:
        return self.many([candidate], sensitivity)[0]

    @torch.no_grad()
    def many(self, candidates: list[Candidate], sensitivity: bool = False, on_record=None) -> list[dict]:
        """The records of ``candidates`` (in their order; ``on_record(record)`` as each is done). Candidates that
        differ only in T and see static frames (an image repeated to T steps) are one run at their longest T,
        whose first steps give the others' tables, bit for bit their own runs' (`qnoise.sweep.worker`'s
        grouping, `qnoise.probe.Probe.table_of_first_steps`)."""
        records: dict[str, dict] = {}
        for run in self._runs(candidates):
            longest = run[0]
            apply_quantization(self.model, longest.spec(self.method))
            with analysis(self.model, self.data, timesteps=longest.timesteps,
                          reference="snn" if sensitivity else "none", isolate=False, progress=False,
                          **self.options) as table:
                for c in run:
                    record = self._record(c, table(None if c is longest else c.timesteps), sensitivity)
                    records[c.key] = record
                    if on_record is not None:
                        on_record(record)
        return [records[c.key] for c in candidates]

    def _runs(self, candidates: list[Candidate]) -> list[list[Candidate]]:
        """Candidates grouped into runs (`many`), each longest T first, in the candidates' order."""
        cfg = getattr(self.model, "qnoise_checkpoint", {}) or {}
        execution = Execution(input_mode=self.options.get("input_mode"))
        runs: dict = {}
        for c in dict.fromkeys(candidates):
            static = frames_plan(self.data, c.timesteps, execution, cfg)[1]
            key = (c.replace("timesteps", None, 1).key, "static") if static else (c.key,)
            runs.setdefault(key, []).append(c)
        return [sorted(run, key=lambda c: -c.timesteps) for run in runs.values()]

    def _record(self, candidate: Candidate, df, sensitivity: bool) -> dict:
        """A candidate's record from its table."""
        values = _values(df)
        T = candidate.timesteps

        def _at(layer: str, metric: str, t: int) -> float:
            return values.get((layer, metric, t), math.nan)

        if (OUTPUT, "accuracy", T) not in values:
            raise ValueError("a search ranks configurations by their accuracy, which needs labelled data: the data "
                             "given has no labels (give (X, y), a Dataset of (x, label), or a dataset name)")
        accuracy = _at(OUTPUT, "accuracy", T)
        n = self.samples or 0
        low, high = wilson_interval(round(accuracy * n), n) if n else (math.nan, math.nan)
        layers = [layer for layer in dict.fromkeys(df["layer"]) if layer != OUTPUT]
        record = {"key": candidate.key, "candidate": candidate.as_dict(), "label": candidate.label(),
                  "accuracy": accuracy, "samples": n, "ci_low": low, "ci_high": high,
                  "memory_bits": _at(OUTPUT, "memory_bits", 0), "energy_pj": _at(OUTPUT, "energy_pj", T),
                  "layers": {layer: {"weight_bits": _at(layer, "weight_bits", 0),
                                     "memory_bits": _at(layer, "memory_bits", 0),
                                     "energy_pj": _at(layer, "energy_pj", T)} for layer in layers}}
        if sensitivity:
            nmse = [_at(layer, "nmse", T) for layer in layers]
            record["disagreement"] = 1.0 - _at(OUTPUT, "agreement", T)
            record["noise"] = float(sum(v for v in nmse if v == v) / max(1, sum(v == v for v in nmse)))
        return record
