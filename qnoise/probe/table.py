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

from ..metrics import cosine_from_sums, firing_rate_from_counts, sqnr_from_norms, weight_sqnr_db
from ..quant import float_weight, weight_bits
from .costs import ann_energy_pj, membrane_energy_pj, memory_parts, snn_energy_pj, synapse_widths
from .describe import describe_neurons, describe_rounding, describe_state_bits, describe_weight_bits, neuron_rules
from .options import ANN_REFERENCES
from .references import AnnReference
from .structure import OUTPUT
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

    def first_steps(self, steps: int, T: int) -> Recording:
        """The sums of steps 1..``steps`` of a run of ``T`` steps: every per-step tensor (first dimension T) cut
        to its first ``steps`` rows; those of one row (a reference that does not depend on t) kept whole."""
        def cut(store: dict) -> dict:
            return {k: v[:steps] if v.shape[0] == T else v for k, v in store.items()}

        return Recording(self.terms, cut(self.errors), cut(self.ref2), cut(self.events), cut(self.membrane),
                         {kind: cut(ops) for kind, ops in self.ops.items()}, cut(self.counts), dict(self.elements),
                         self.samples, self.labeled)


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


class TableMixin:
    """The table of what a `qnoise.probe.Probe` recorded (its `table` and `sidecar`); uses the probe's ``rec``,
    ``structure``, ``model``, ``T``, ``kind``, ``compare``, ``count``, ``reference``, ``note`` and ``_tensors``."""

    def sidecar(self) -> dict:
        """What the table's numbers were computed with (DESIGN.md: a number can be traced to its definition)."""
        doc = {"reference": self.kind, "twin_input": self.compare.twin_input if self.kind != "snn" else None,
               "isolate": self.compare.isolate, "terms": list(self.rec.terms), "neurons": neuron_rules(self.model),
               "energy": self.count.energy.as_dict(),
               "z_hat": None if not isinstance(self.reference, AnnReference) else
               ("the twin's own input (its weights are the SNN's)" if self.reference.same_weights else
                "the twin's activations through the SNN's quantized synaptic ops")}
        if self.note:
            doc["note"] = self.note
        return doc

    def table(self, **config) -> pd.DataFrame:
        """The long-form table (`qnoise.probe.table.COLUMNS`) of everything recorded so far.

        ``config`` fills the config columns (``model``, ``dataset``, ``weight_bits``, ``state_bits``,
        ``timesteps``, ``rounding``, ``neuron``); missing ones are read off the model. ``df.attrs["qnoise"]``
        holds `sidecar`.
        """
        rec = self.rec
        if self.structure is None or rec.samples == 0:
            raise ValueError("the probe has recorded nothing: run the model on at least one batch inside it")
        rows = Rows()
        T, n = self.T, rec.samples
        ts = np.arange(1, T + 1)
        widths = synapse_widths(self.model, self.structure)
        memory = memory_parts(self.model, self.structure, T)
        energy = self.count.energy
        total_energy = np.zeros(T)
        all_ac, all_mac = np.zeros(T), np.zeros(T)
        for layer in self.structure.layers:
            if layer.neuron is not None:
                N = rec.elements.get(layer.neuron, self.structure.neuron_size[layer.neuron])
                for mode in MODES:
                    if (layer.neuron, mode) in rec.errors:
                        metrics = error_metrics(rec.errors[(layer.neuron, mode)].cpu().numpy(),
                                                rec.ref2[layer.neuron].cpu().numpy(), n * N, rec.terms)
                        for metric, values in metrics.items():
                            rows.add(layer.name, ts, metric, values, mode)
                if layer.neuron in rec.events:  # no reference: the firing rate alone
                    events = rec.events[layer.neuron].cpu().numpy().cumsum()
                    rows.add(layer.name, ts, "firing_rate", events / (n * N * ts))
                if layer.neuron in rec.membrane:
                    mem = rec.membrane[layer.neuron].cpu().numpy().cumsum(0)
                    rows.add(layer.name, ts, "membrane_sqnr_db", [sqnr_from_norms(math.sqrt(a), math.sqrt(b))
                                                                  for a, b in mem])
            for metric, value in self._weight_metrics(layer.synapses).items():
                rows.add(layer.name, 0, metric, value)
            layer_energy = np.zeros(T)
            for s in layer.synapses:
                ac, mac = self._ops_of(s)
                all_ac += ac
                all_mac += mac
                layer_energy += snn_energy_pj(ac / n, mac / n, widths[s], energy)
            ac, mac = self._ops_of(*layer.synapses)
            rows.add(layer.name, ts, "synops", (ac + mac) / n)
            rows.add(layer.name, ts, "synops_ac", ac / n)
            rows.add(layer.name, ts, "synops_mac", mac / n)
            if layer.neuron is not None:
                neuron = self.neurons[layer.neuron]
                layer_energy += membrane_energy_pj(self.structure.neuron_size[layer.neuron], ts,
                                                   neuron.state_bits or 32, energy)
            rows.add(layer.name, ts, "energy_pj", layer_energy)
            rows.add(layer.name, 0, "memory_bits", sum(c * b for c, b in memory[layer.name]))
            total_energy += layer_energy
        self._run_rows(rows, ts, all_ac, all_mac, total_energy, memory)
        cfg = {"model": type(self.model).__name__, "dataset": "", "weight_bits": describe_weight_bits(self.model),
               "state_bits": describe_state_bits(self.model), "timesteps": T, "rounding": describe_rounding(self.model),
               "neuron": describe_neurons(self.model), "reference": self.kind, **config}
        df = rows.frame(cfg)
        df.attrs["qnoise"] = self.sidecar()
        return df

    def table_of_first_steps(self, steps: int, **config) -> pd.DataFrame:
        """The table (`table`) of this run's first ``steps`` steps, as a run at T = ``steps`` gives it when its
        input is the first ``steps`` frames of this run's: a repeated static frame. Everything the probe records
        is causal (a neuron's state, the running sums, accuracy of the readout summed to t, the float SNN) or does
        not depend on T (a twin fed the frames' mean, which is the frame at any T: `qnoise.time_mean`; weights);
        what depends on T itself (a signed neuron's counter width) is recomputed for ``steps``. A sweep over T of
        static frames runs its longest T once (`qnoise.sweep`); tests/test_sweep.py holds each cut table equal to
        its own run. Refused when full tensors were kept (they are the whole run's)."""
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= (self.T or 0):
            raise ValueError(f"steps must be an int in 1..{self.T} (the run's T), got {steps!r}")
        if self._tensors:
            raise ValueError("the first steps' table cannot be cut from a run that kept full tensors (keep_tensors)")
        whole = self.T, self.rec
        self.T, self.rec = steps, self.rec.first_steps(steps, self.T)
        try:
            return self.table(**config)
        finally:
            self.T, self.rec = whole

    def _run_rows(self, rows: Rows, ts, ac, mac, energy_t, memory) -> None:
        rec, n = self.rec, self.rec.samples
        counts = {k: v.cpu().numpy() for k, v in rec.counts.items()}
        if rec.labeled:
            rows.add(OUTPUT, 0, "samples", rec.labeled)  # the denominator of every accuracy row
            rows.add(OUTPUT, ts, "accuracy", counts["correct"] / rec.labeled)
            if "ref_correct" in counts:
                ref = counts["ref_correct"] / rec.labeled
                name = "float_snn_accuracy" if self.kind == "snn" else "ann_accuracy"
                if len(ref) == 1:
                    rows.add(OUTPUT, 0, name, ref[0])
                else:
                    rows.add(OUTPUT, ts, name, ref)
            if "source_correct" in counts:
                rows.add(OUTPUT, 0, "source_accuracy", counts["source_correct"][0] / rec.labeled)
        if "agree" in counts:
            rows.add(OUTPUT, ts, "agreement", counts["agree"] / n)
        rows.add(OUTPUT, ts, "synops", (ac + mac) / n)
        rows.add(OUTPUT, ts, "synops_ac", ac / n)
        rows.add(OUTPUT, ts, "synops_mac", mac / n)
        rows.add(OUTPUT, ts, "energy_pj", energy_t)
        acts = self.reference.activations if isinstance(self.reference, AnnReference) else None
        ann = self.reference.ann if isinstance(self.reference, AnnReference) else None
        rows.add(OUTPUT, 0, "ann_energy_pj", ann_energy_pj(self.model, self.structure, self.kind if self.kind in
                                                           (*ANN_REFERENCES, "ann-given") else "ann", ann, acts,
                                                           self.count.energy))
        rows.add(OUTPUT, 0, "memory_bits", sum(c * b for parts in memory.values() for c, b in parts))

    def _ops_of(self, *synapses: str) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative (over steps 1..t) accumulates and MACs of these weight layers, summed over samples."""
        ac, mac = np.zeros(self.T), np.zeros(self.T)
        for s in synapses:
            if s in self.rec.ops["ac"]:
                ac += self.rec.ops["ac"][s].cpu().numpy()
            if s in self.rec.ops["mac"]:
                mac += self.rec.ops["mac"][s].cpu().numpy()
        return ac.cumsum(), mac.cumsum()

    def _weight_metrics(self, synapses: list[str]) -> dict[str, float]:
        mods = [self.model.get_submodule(s) for s in synapses]
        if not mods:
            return {}
        with torch.no_grad():
            sqnr = weight_sqnr_db([float_weight(m) for m in mods], [m.weight for m in mods])
        sizes = [m.weight.numel() for m in mods]
        bits = [weight_bits(m) for m in mods]
        mean_bits = bits[0] if len(set(bits)) == 1 else \
            sum(b * s for b, s in zip(bits, sizes, strict=True)) / sum(sizes)
        params = sum(m.weight.numel() + (m.bias.numel() if getattr(m, "bias", None) is not None else 0)
                     for m in mods)
        return {"weight_sqnr_db": sqnr, "weight_bits": mean_bits, "params": params,
                "macs": sum(self.structure.macs[s] for s in synapses)}
