"""What a model costs: synaptic operations priced at their operands' widths, and memory at real widths.

Widths (bits; 32 means float32, `qnoise.metrics.FLOAT_BITS`) per weight layer ("synapse"):

- ``weight``: the layer's weight bits (`qnoise.quant.weight_bits`: a quantizer's width, else 32);
- ``acc``: the accumulator the products land in: the membrane of the neuron layer the synapse feeds, at its
  state bits (32: a float membrane); the readout accumulates in float32;
- an operation is an accumulate (AC) when its input is a spike or a binary data value, or when the weight
  is binary/ternary (a sign flip); else a multiply-accumulate (MAC) with float32 data.

SNN energy (per sample, over steps 1..t) = ``ACs * ac_pj(weight, acc) + MACs * mac_pj(weight, 32, acc)``
(`qnoise.metrics.EnergyModel`), plus, with ``memory_access``, every weight read (weight bits per operation)
and each neuron's membrane read and written once per step. The ANN twin's energy for one inference is every
dense MAC of its weight layers at the twin's widths (float weights for ``"ann"`` and ``"snn"``, the SNN's
for ``"ann-quantized"``, a given ANN's own; activations float unless the ANN quantizes them), sign weights
as accumulates, plus its weight and input reads with ``memory_access``.

Memory (`memory_parts`): every stored quantity at its real width: weights at their bits, their scales
(one per tensor, or one per output channel for per-channel or folded quantizers) at 32 bits, biases and
batch-norm scale and shift at 32 bits, thresholds at the threshold quantizer's bits (the model's shared
threshold step at 32), one membrane per neuron at the state bits, a LIF's decay at 32 bits, and a signed
IF's spike counter (``ceil(log2(T + 1))`` bits per neuron: its net count lies in 0..T).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn
from torch.nn.utils import parametrize

from ..metrics import FLOAT_BITS, EnergyModel
from ..models import threshold_quantizers
from ..neurons import IF, LIF
from ..quant import (
    BinaryWeight,
    FoldedWeight,
    LearnableClip,
    SigmoidSumQuantizer,
    TernaryWeight,
    base_quantizer,
    weight_bits,
    weight_layers,
)
from ..train.convert import batchnorm_after
from .structure import INPUT, Structure


def weights_are_signs(module: nn.Module) -> bool:
    """True when a weight layer's weights are binary or ternary ({-a, +a} or {-a, 0, +a}): every
    product with such a weight is a sign flip, counted as an accumulate."""
    if not parametrize.is_parametrized(module, "weight"):
        return False
    q = base_quantizer(module.parametrizations.weight[0])
    if isinstance(q, (BinaryWeight, TernaryWeight)):
        return True
    return isinstance(q, SigmoidSumQuantizer) and q.levels.numel() <= 3


def scale_count(module: nn.Module) -> int:
    """Scales stored with a weight layer's quantized weights: one per output channel (per-channel or folded
    quantizers), one per tensor otherwise, none for float weights."""
    if not parametrize.is_parametrized(module, "weight"):
        return 0
    q = module.parametrizations.weight[0]
    if isinstance(q, FoldedWeight) or getattr(q, "per_channel", False):
        return int(module.weight.shape[0])
    return 1


@dataclass(frozen=True)
class SynapseWidths:
    """Operand widths of one weight layer (module docstring); ``signs``: binary/ternary weights."""

    weight: int
    acc: int
    signs: bool


def synapse_widths(model: nn.Module, structure: Structure) -> dict[str, SynapseWidths]:
    """`SynapseWidths` of every weight layer the structure found."""
    mods = dict(model.named_modules())
    out = {}
    for layer in structure.layers:
        neuron = mods[layer.neuron] if layer.neuron is not None else None
        acc = (neuron.state_bits or FLOAT_BITS) if neuron is not None else FLOAT_BITS
        for s in layer.synapses:
            out[s] = SynapseWidths(weight_bits(mods[s]), acc, weights_are_signs(mods[s]))
    return out


def snn_energy_pj(ac, mac, widths: SynapseWidths, energy: EnergyModel):
    """Energy of one weight layer's operations (``ac``, ``mac``: counts, scalars or arrays), in pJ."""
    ops = energy.ac_pj(widths.weight, widths.acc) * ac + energy.mac_pj(widths.weight, FLOAT_BITS, widths.acc) * mac
    return ops + energy.bits_moved_pj(widths.weight * (ac + mac))


def membrane_energy_pj(neurons: int, steps, state_bits: int, energy: EnergyModel):
    """Reading and writing ``neurons`` membranes of ``state_bits`` once per step, over ``steps`` steps."""
    return energy.bits_moved_pj(2 * state_bits * neurons * steps)


def _source_of(structure: Structure) -> dict[str, str]:
    """Weight layer -> the spike source feeding it (a neuron layer, or the data)."""
    return {syn: src for src, (_, names) in structure.fanout.items() for syn in names}


def ann_energy_pj(model: nn.Module, structure: Structure, reference: str, ann: nn.Module | None,
                  activations: dict[str, nn.Module] | None, energy: EnergyModel) -> float:
    """Energy of one dense inference of the reference ANN (module docstring), in pJ.

    ``reference``: the reference's name; ``ann`` the given ANN (matched to the model's weight layers in
    order) and ``activations`` its activation per neuron name, for ``"source"`` / ``"ann-given"``."""
    ours = dict(model.named_modules())
    theirs = list(weight_layers(ann)) if ann is not None and reference not in ("ann", "ann-quantized", "snn") else []
    by_order = {name: m for (name, _), (_, m) in zip(weight_layers(model), theirs, strict=False)}
    sources = _source_of(structure)
    total = 0.0
    for name, macs in structure.macs.items():
        mod = by_order.get(name) or (ours[name] if reference == "ann-quantized" else None)
        w = weight_bits(mod) if mod is not None else FLOAT_BITS
        act = (activations or {}).get(sources.get(name, INPUT)) if theirs else None
        a = act.bits if isinstance(act, LearnableClip) and act.bits is not None else FLOAT_BITS
        add = energy.float_add if max(w, a) >= FLOAT_BITS else energy.int_add_32  # integers: an int32 accumulator
        per = add if mod is not None and weights_are_signs(mod) else energy.mult_pj(max(w, a)) + add
        total += macs * per + energy.bits_moved_pj(macs * (w + a))
    return total


def threshold_bits(neuron: IF) -> int:
    """Bits a neuron's threshold is stored in (its quantizer's, else 32)."""
    if parametrize.is_parametrized(neuron, "raw_threshold"):
        return int(neuron.parametrizations.raw_threshold[0].bits)
    return FLOAT_BITS


def counter_bits(T: int) -> int:
    """Bits of a signed IF's net spike counter over T steps (values 0..T)."""
    return max(1, math.ceil(math.log2(T + 1)))


def memory_parts(model: nn.Module, structure: Structure, T: int) -> dict[str, list[tuple[int, int]]]:
    """Per layer of the table, the ``(count, bits)`` of everything it stores (module docstring)."""
    mods = dict(model.named_modules())
    bns = batchnorm_after(model)
    shared_step = bool(threshold_quantizers(model))
    parts: dict[str, list[tuple[int, int]]] = {}
    for i, layer in enumerate(structure.layers):
        items: list[tuple[int, int]] = []
        for s in layer.synapses:
            m = mods[s]
            items.append((m.weight.numel(), weight_bits(m)))
            items.append((scale_count(m), FLOAT_BITS))
            if getattr(m, "bias", None) is not None:
                items.append((m.bias.numel(), FLOAT_BITS))
            if id(m) in bns:
                items.append((2 * bns[id(m)].num_features, FLOAT_BITS))
        if layer.neuron is not None:
            n: IF = mods[layer.neuron]
            size = structure.neuron_size[layer.neuron]
            items.append((n.threshold.numel(), threshold_bits(n)))
            if shared_step and i == 0:
                items.append((1, FLOAT_BITS))
            if isinstance(n, LIF):
                items.append((n.raw_beta.numel(), FLOAT_BITS))
            items += getattr(n, "stored_parameters", list)()  # an imported neuron's rule (decays, gains, ...)
            items.append((size * getattr(n, "state_variables", 1), n.state_bits or FLOAT_BITS))
            if n.signed:
                items.append((size, counter_bits(T)))
        parts[layer.name] = [(c, b) for c, b in items if c]
    return parts
