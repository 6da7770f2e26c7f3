"""A model's quantization as one JSON-able spec, applied the same way before training (QAT) or after it (PTQ).

    {"weights":    {"bits", "method", "rounding", "keep_first_last", "per_channel", "levels", "skip", "folded",
                    "per_layer"},
     "thresholds": {"bits", "rounding"},
     "membrane":   {"bits", "rounding", "per_layer"}}

- weights: `qnoise.quant.quantize_weights` (a parametrization of every Conv/Linear weight); ``folded``: each
  quantizer wrapped in `qnoise.quant.FoldedWeight` (a converted model: batch norm folded into quantized
  weights, per-channel scales in the state dict).
- thresholds: a parametrization of each neuron's ``raw_threshold`` onto one unsigned grid shared by the
  whole model, ``Δ = max(theta) / (2^b - 1)`` (`qnoise.quant.quantize_threshold`), straight-through
  gradient; `sync_threshold_step` recomputes Δ from the float thresholds (the training loop calls it
  every batch, so learned thresholds stay on a common grid).
- per_layer (weights, membrane): ``{layer name: bits}`` overriding ``bits`` for those layers (32: float;
  1: binary weights), as a mixed-precision search chooses them (`qnoise.search`).
- membrane: ``state_bits`` / ``state_rounding`` of every neuron (`qnoise.quant.quantize_membrane`, a grid
  tied to the threshold, Δ = theta / 2^(b-2)).

The applied spec is recorded in ``model.qnoise_config["quantization"]``, so ``build_model(**config)``
rebuilds the parametrizations before the saved tensors are loaded into them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from .. import parametrized
from ..neurons import spiking_neurons
from ..quant import (
    METHODS,
    fold_quantizers,
    quantize_threshold,
    quantize_weights,
    remove_weight_quantization,
    weight_layers,
)
from ..quant.uniform import check_bits, check_rounding

QUANT_DEFAULTS: dict[str, dict] = {
    "weights": {"bits": 8, "method": "uniform", "rounding": "nearest", "keep_first_last": False,
                "per_channel": False, "levels": "uniform", "skip": [], "folded": False, "per_layer": {}},
    "thresholds": {"bits": 8, "rounding": "nearest"},
    "membrane": {"bits": 8, "rounding": "nearest", "per_layer": {}},
}


def quantization_spec(spec: dict | None) -> dict:
    """Validate and complete a spec: each of the three parts is ``None`` (float) or a complete dict."""
    spec = dict(spec or {})
    unknown = set(spec) - set(QUANT_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown quantization part(s) {sorted(unknown)}; known: {sorted(QUANT_DEFAULTS)}")
    out: dict = {}
    for part, defaults in QUANT_DEFAULTS.items():
        given = spec.get(part)
        if given is None:
            out[part] = None
            continue
        if not isinstance(given, dict):
            raise ValueError(f"{part} quantization must be a dict of options or None, got {given!r:.100}")
        bad = set(given) - set(defaults)
        if bad:
            raise ValueError(f"unknown {part} quantization option(s) {sorted(bad)}; known: {sorted(defaults)}")
        full = {**defaults, **given}
        _check_types(part, full, defaults)
        check_rounding(full["rounding"])
        if part == "weights":
            if full["method"] not in METHODS:
                raise ValueError(f"weight method {full['method']!r} is not one of {METHODS}")
            full["bits"] = {"binary": 1, "ternary": 2}.get(full["method"], full["bits"])
            if full["method"] == "uniform":
                check_bits(full["bits"], signed=True)
            full["skip"] = sorted(full["skip"])
            full["per_layer"] = dict(sorted(full["per_layer"].items()))
        elif part == "membrane":
            check_bits(full["bits"], signed=True)
            for name, bits in full["per_layer"].items():
                if bits < 2:
                    raise ValueError(f"membrane bits of {name} must be 2..32 (32: float), got {bits}")
            full["per_layer"] = dict(sorted(full["per_layer"].items()))
        else:
            check_bits(full["bits"], signed=False)
        out[part] = full
    return out


def _check_types(part: str, full: dict, defaults: dict) -> None:
    """Each option has its default's type (``skip`` a list of layer names), so a hand-edited config gets a
    message naming the option rather than a ``TypeError`` from deep inside."""
    for key, default in defaults.items():
        value = full[key]
        if isinstance(default, bool):
            ok, expected = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(default, str):
            ok, expected = isinstance(value, str), "a string"
        elif isinstance(default, dict):
            ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                                                 and 1 <= v <= 32 for k, v in value.items())
            expected = "a mapping of layer names to bits (1..32)"
        else:
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
            expected = "a list of layer names"
        if not ok:
            raise ValueError(f"{part} quantization option {key} must be {expected}, got {value!r:.100}")


class ThresholdQuantizer(nn.Module):
    """Parametrization ``theta -> quantize_threshold(theta, bits, rounding, step)`` with a shared ``step``."""

    def __init__(self, bits: int, rounding: str = "nearest") -> None:
        super().__init__()
        self.bits, self.rounding = check_bits(bits, signed=False), check_rounding(rounding)
        self.register_buffer("step", torch.tensor(1.0))

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return quantize_threshold(theta, self.bits, self.rounding, step=self.step)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, rounding={self.rounding}, step={float(self.step):.4g}"


def threshold_quantizers(model: nn.Module) -> list[tuple[nn.Module, ThresholdQuantizer]]:
    """(neuron, quantizer) for each neuron whose threshold is quantized."""
    return [(m, m.parametrizations.raw_threshold[0]) for _, m in spiking_neurons(model)
            if parametrize.is_parametrized(m, "raw_threshold")]


@torch.no_grad()
def sync_threshold_step(model: nn.Module) -> float | None:
    """Set the shared threshold step to ``max(float thresholds) / (2^b - 1)``; returns it (None: no quantizer)."""
    pairs = threshold_quantizers(model)
    if not pairs:
        return None
    top = max(float(m.parametrizations.raw_threshold.original.detach().max()) for m, _ in pairs)
    bits = pairs[0][1].bits
    step = max(top, 1e-3) / (2**bits - 1)
    for _, q in pairs:
        q.step.fill_(step)
    return step


def _apply_weights(model: nn.Module, spec: dict | None) -> None:
    remove_weight_quantization(model)
    if spec is None:
        return
    own = spec["per_layer"]
    names = [name for name, _ in weight_layers(model)]
    unknown = sorted(set(own) - set(names))
    if unknown:
        raise ValueError(f"weights per_layer names {unknown}, which are not Conv/Linear layers; layers are {names}")

    def apply(bits: int, skip) -> None:
        method = "binary" if bits == 1 and spec["method"] == "uniform" else spec["method"]
        quantize_weights(model, bits, method, spec["rounding"], skip=skip, per_channel=spec["per_channel"],
                         levels=spec["levels"])

    first_last = {names[0], names[-1]} if spec["keep_first_last"] and names else set()
    rest = [n for n in names if n not in own and n not in set(spec["skip"]) | first_last]
    if rest:
        apply(spec["bits"], [n for n in names if n not in rest])
    for bits in sorted(set(own.values()) - {32}):
        apply(bits, [n for n in names if own.get(n) != bits])
    if spec["folded"]:
        fold_quantizers(model)


def _apply_thresholds(model: nn.Module, spec: dict | None) -> None:
    neurons = [m for _, m in spiking_neurons(model)]
    for m in neurons:
        if parametrize.is_parametrized(m, "raw_threshold"):
            parametrized.remove(m, "raw_threshold", leave_parametrized=False)
    if spec is None:
        return
    if not neurons:
        raise ValueError("threshold quantization needs spiking neurons, but the model has none (an ANN?)")
    for m in neurons:
        parametrized.register(m, "raw_threshold", ThresholdQuantizer(spec["bits"], spec["rounding"]))
    sync_threshold_step(model)


def _apply_membrane(model: nn.Module, spec: dict | None) -> None:
    neurons = spiking_neurons(model)
    if spec is not None and not neurons:
        raise ValueError("membrane quantization needs spiking neurons, but the model has none (an ANN?)")
    own = (spec or {}).get("per_layer") or {}
    unknown = sorted(set(own) - {name for name, _ in neurons})
    if unknown:
        raise ValueError(f"membrane per_layer names {unknown}, which are not neuron layers; neurons are "
                         f"{[name for name, _ in neurons]}")
    for name, m in neurons:
        bits = None if spec is None else own.get(name, spec["bits"])
        m.state_bits = None if bits == 32 else bits
        m.state_rounding = "nearest" if spec is None else spec["rounding"]


_APPLY = {"weights": _apply_weights, "thresholds": _apply_thresholds, "membrane": _apply_membrane}


def apply_quantization(model: nn.Module, spec: dict | None) -> dict:
    """(Re)apply the parts named in ``spec`` (a part set to ``None`` is removed; absent parts are kept).

    Works on any model; on a `qnoise.models.Network` the merged spec is recorded in
    ``model.qnoise_config["quantization"]``. Returns the merged, complete spec.
    """
    given = dict(spec or {})
    current = dict(getattr(model, "qnoise_config", {}).get("quantization") or {})
    merged = quantization_spec({**current, **given})
    for part in given:
        _APPLY[part](model, merged[part])
    if hasattr(model, "qnoise_config"):
        model.qnoise_config["quantization"] = merged
    return merged
