"""Weight quantization of any torch model through ``torch.nn.utils.parametrize``.

``quantize_weights(model, bits, method)`` registers a quantizer as a parametrization of every
``Conv{1,2,3}d`` / ``Linear`` weight: ``module.weight`` then returns the quantized weight while the float
weight stays at ``module.parametrizations.weight.original``. ``remove_weight_quantization`` restores the
float weights bit for bit. No new layer classes are needed, so any model can be quantized and inspected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from .. import parametrized
from .binary import binarize, ternarize
from .sigmoid_sum import PRESETS as SIGMOID_LEVELS
from .sigmoid_sum import SigmoidSumQuantizer, data_levels, preset_levels
from .uniform import check_bits, check_rounding, check_ties, grid_step, quantize

Method = Literal["uniform", "sigmoid", "binary", "ternary"]
METHODS: tuple[str, ...] = ("uniform", "sigmoid", "binary", "ternary")
WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class UniformWeight(nn.Module):
    """Parametrization ``w -> quantize(w, bits, rounding)`` (symmetric, per tensor or per output channel).

    ``step``: a fixed step Δ (a hardware's grid, e.g. 2.0 for Loihi's 8-bit weights): levels ``k Δ`` with k in
    ``[-2^(b-1), 2^(b-1) - 1]``, and a weight already on that grid is returned as it is, bit for bit. None: Δ from
    max|w|. ``ties``: how exact halves round (`qnoise.quant.uniform.TIES`).
    """

    def __init__(self, bits: int, rounding: str = "nearest", per_channel: bool = False, step: float | None = None,
                 ties: str = "half-even") -> None:
        super().__init__()
        self.bits = check_bits(bits, signed=True)
        self.rounding = check_rounding(rounding)
        self.per_channel = per_channel
        self.ties = check_ties(ties)
        if step is not None and not (isinstance(step, (int, float)) and math.isfinite(step) and step > 0):
            raise ValueError(f"step must be a positive number, got {step!r}")
        self.step = None if step is None else float(step)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.step is None:
            return quantize(w, self.bits, self.rounding, signed=True, axis=0 if self.per_channel else None,
                            ties=self.ties)
        y = quantize(w, self.bits, self.rounding, signed=True, scale=self.step, ties=self.ties)
        on_grid = (y.detach() - w.detach()).abs() <= 1e-5 * self.step  # already a level: keep its exact value
        return torch.where(on_grid, w, y)

    def extra_repr(self) -> str:
        step = f", step={self.step:.6g}" if self.step is not None else ""
        return f"bits={self.bits}, rounding={self.rounding}, per_channel={self.per_channel}{step}, ties={self.ties}"


class BinaryWeight(nn.Module):
    """Parametrization ``w -> mean|w| * sign(w)`` (per tensor or per output channel). 1 bit per weight."""

    bits = 1

    def __init__(self, per_channel: bool = False) -> None:
        super().__init__()
        self.per_channel = per_channel

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return binarize(w, axis=0 if self.per_channel else None)


class TernaryWeight(nn.Module):
    """Parametrization ``w -> a * sign(w) * [|w| > 0.7 mean|w|]``. 2 bits per weight."""

    bits = 2

    def __init__(self, per_channel: bool = False) -> None:
        super().__init__()
        self.per_channel = per_channel

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return ternarize(w, axis=0 if self.per_channel else None)


@dataclass(frozen=True)
class QuantizedWeight:
    """One quantized weight: the module's name, its quantizer and the bits each weight is stored in."""

    name: str
    module: nn.Module
    quantizer: nn.Module
    bits: int


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """All Conv/Linear modules of ``model`` in definition order, with their qualified names."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]


def make_weight_quantizer(weight: torch.Tensor, bits: int, method: str = "uniform",
                          rounding: str = "nearest", per_channel: bool = False,
                          levels: str = "uniform", step: float | str | None = None,
                          ties: str = "half-even") -> nn.Module:
    """Build the parametrization module for one weight tensor.

    ``method="sigmoid"`` (`SigmoidSumQuantizer`, initialised from ``weight``): bits 1 is binary {-1, 1},
    bits 2 ternary {-1, 0, 1}; for more bits ``levels="uniform"`` (integers ``-(2^(k-1)-1) .. 2^(k-1)-1``),
    ``"pow2"`` (the paper's power-of-two-like set, e.g. {-4, -2, -1, 0, 1, 2, 4} at 3 bits) or ``"data"``
    (k-means on |w|, a qnoise extension). ``method="uniform"`` with bits 1 is binary, as everywhere.
    ``method="ternary"`` ignores ``bits``. For ``"uniform"``, ``step`` is a fixed step Δ, ``"maxabs"`` the step from
    max|w|, None (default) the grid ``weight`` already sits on at ``bits`` (`grid_step`; so b bits applied to
    weights on a b-bit grid leave them as they are: bit for bit for a power-of-two step, else within two units
    in the last place), else max|w|.
    """
    if method == "uniform" and bits == 1:
        method = "binary"
    if method == "uniform":
        if step is None:
            step = grid_step(weight, bits) if bits >= 2 else None
        elif step == "maxabs":
            step = None
        return UniformWeight(bits, rounding, per_channel, step, ties)
    if method == "binary":
        return BinaryWeight(per_channel)
    if method == "ternary":
        return TernaryWeight(per_channel)
    if method == "sigmoid":
        if levels not in SIGMOID_LEVELS:
            raise ValueError(f"levels={levels!r}: expected one of {SIGMOID_LEVELS}")
        if bits == 1:
            lv: str | int | torch.Tensor = "binary"
        elif levels == "data":
            lv = data_levels(weight, bits)
        else:
            lv = preset_levels(levels, bits)
        return SigmoidSumQuantizer(lv, init_from=weight)
    raise ValueError(f"method={method!r} is not one of {METHODS}")


def quantize_weights(
    model: nn.Module,
    bits: int,
    method: Method = "uniform",
    rounding: str = "nearest",
    skip: Iterable[str] = (),
    keep_first_last: bool = False,
    per_channel: bool = False,
    levels: str = "uniform",
    step: float | str | None = None,
    ties: str = "half-even",
) -> list[QuantizedWeight]:
    """Quantize every Conv/Linear weight of ``model`` in place through a parametrization.

    Args:
        model: any ``nn.Module``.
        bits: bits per weight (1 is binary whatever the method; ``method="binary"`` implies 1, ``"ternary"`` 2).
        method: ``"uniform"`` (STE), ``"sigmoid"`` (sum of sigmoids), ``"binary"`` or ``"ternary"``.
        rounding: rounding mode of ``"uniform"``: ``"nearest"``, ``"truncate"`` or ``"stochastic"``.
        skip: qualified module names left at full precision.
        keep_first_last: also leave the first and the last weight layer at full precision.
        per_channel: one scale per output channel instead of per tensor.
        levels: for ``"sigmoid"`` with ``bits >= 3``, ``"uniform"``, ``"pow2"`` or ``"data"`` levels.
        step: ``"uniform"`` only: a fixed step Δ (a hardware's grid), ``"maxabs"``, or None: each weight's own
            b-bit grid when it already sits on one (kept as it is), else from max|w| (`make_weight_quantizer`).
        ties: ``"uniform"`` nearest rounding of exact halves: ``"half-even"``, ``"half-away"``, ``"half-up"``.

    Returns:
        One `QuantizedWeight` per quantized layer. A layer that is already quantized is re-quantized.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {METHODS}")
    check_ties(ties)
    if step is not None and step != "maxabs" and method != "uniform":
        raise ValueError(f"step={step!r} applies to method='uniform' only, not {method!r}")
    layers = weight_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Conv/Linear layer to quantize")
    names = {name for name, _ in layers}
    skip = set(skip)
    unknown = skip - names
    if unknown:
        raise ValueError(f"skip names {sorted(unknown)} are not Conv/Linear layers; layers are {sorted(names)}")
    if keep_first_last:
        skip |= {layers[0][0], layers[-1][0]}
    done = []
    for name, module in layers:
        if name in skip:
            continue
        if parametrize.is_parametrized(module, "weight"):
            parametrized.remove(module, "weight", leave_parametrized=False)
        quantizer = make_weight_quantizer(module.weight, bits, method, rounding, per_channel, levels, step, ties)
        parametrized.register(module, "weight", quantizer)
        done.append(QuantizedWeight(name, module, quantizer, int(getattr(quantizer, "bits", bits))))
    return done


def remove_weight_quantization(model: nn.Module) -> int:
    """Remove every weight parametrization, restoring the float weights exactly. Returns how many."""
    count = 0
    for _, module in weight_layers(model):
        if parametrize.is_parametrized(module, "weight"):
            parametrized.remove(module, "weight", leave_parametrized=False)
            count += 1
    return count


def weight_quantizers(model: nn.Module) -> dict[str, nn.Module]:
    """Map of layer name -> weight quantizer, for the layers that have one."""
    out = {}
    for name, module in weight_layers(model):
        if parametrize.is_parametrized(module, "weight"):
            out[name] = module.parametrizations.weight[0]
    return out


def float_weight(module: nn.Module) -> torch.Tensor:
    """The full-precision weight of a Conv/Linear, whether or not it is quantized."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def weight_bits(module: nn.Module, float_bits: int = 32) -> int:
    """Bits per stored weight of a Conv/Linear: its quantizer's width, or ``float_bits``."""
    if parametrize.is_parametrized(module, "weight"):
        return int(getattr(module.parametrizations.weight[0], "bits", float_bits))
    return float_bits


def set_temperature(model: nn.Module, value: float) -> int:
    """Set the temperature of every `SigmoidSumQuantizer` in ``model``; returns how many were set."""
    n = 0
    for m in model.modules():
        if isinstance(m, SigmoidSumQuantizer):
            m.set_temperature(value)
            n += 1
    return n
