"""Quantizers: uniform (nearest, truncate, stochastic), binary/ternary, sum-of-sigmoids, learnable clip,
weight quantization through parametrizations, and fixed-point neuron state."""

from .binary import binarize, ternarize
from .clip import LearnableClip, learnable_clip
from .folded import FoldedWeight, base_quantizer, fold_quantizers
from .sigmoid_sum import SigmoidSumQuantizer, data_levels, linear_temperature, preset_levels, uniform_levels
from .state import membrane_step, quantize_membrane, quantize_threshold
from .uniform import ROUNDINGS, TIES, grid_step, integer_range, maxabs_scale, nearest_levels, quantize, round_half
from .weights import (
    METHODS,
    BinaryWeight,
    QuantizedWeight,
    TernaryWeight,
    UniformWeight,
    float_weight,
    quantize_weights,
    remove_weight_quantization,
    set_temperature,
    weight_bits,
    weight_layers,
    weight_quantizers,
)

__all__ = [
    "ROUNDINGS", "TIES", "grid_step", "round_half", "METHODS", "quantize", "integer_range", "maxabs_scale", "nearest_levels", "binarize",
    "ternarize", "SigmoidSumQuantizer", "data_levels", "linear_temperature", "preset_levels",
    "uniform_levels", "LearnableClip", "learnable_clip", "membrane_step", "quantize_membrane",
    "quantize_threshold", "quantize_weights", "remove_weight_quantization", "weight_quantizers",
    "weight_layers", "float_weight", "weight_bits", "set_temperature", "UniformWeight", "BinaryWeight",
    "TernaryWeight", "QuantizedWeight", "FoldedWeight", "base_quantizer", "fold_quantizers",
]
