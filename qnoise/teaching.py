"""Small, pure computations for teaching (the dashboard's Learn page and the Spikes page's histogram).

Everything here is a thin call into qnoise's own neurons and quantizers, returning plain numpy arrays:

- `neuron_trace`: one IF neuron fed an input for T steps (`qnoise.neurons.IF.trace`).
- `rate_staircase`: the mean output over T steps of an IF neuron against a constant input, simulated by
  the neuron itself, beside its ANN twin ``clamp(x, 0, theta)`` and the closed form
  `qnoise.quant.nearest_levels` (equal for ``v_init="half"`` and reset by subtraction).
- `sigmoid_sum_curves`: the sum-of-sigmoids quantizer at several temperatures and its hard limit.
- `membrane_levels`: the values a ``bits``-bit membrane can hold (`qnoise.quant.membrane_step`).
- `weight_distribution`: a weight layer's float and quantized weights under a configuration, the grid its
  quantizer maps them onto and the clipping range (what AIMET's QuantAnalyzer draws on its histograms).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .neurons import IF, ClampActivation
from .quant import SigmoidSumQuantizer, membrane_step, nearest_levels


def _inputs(x: float | Sequence[float], timesteps: int) -> torch.Tensor:
    if not (isinstance(timesteps, int) and timesteps >= 1):
        raise ValueError(f"timesteps must be a positive int, got {timesteps!r}")
    values = torch.as_tensor(x, dtype=torch.float32).flatten()
    if values.numel() == 1:
        values = values.expand(timesteps)
    if values.numel() != timesteps:
        raise ValueError(f"input has {values.numel()} values but timesteps={timesteps}")
    return values.reshape(timesteps, 1, 1).contiguous()


def neuron_trace(x: float | Sequence[float], threshold: float = 1.0, timesteps: int = 8, v_init: str = "half",
                 reset: str = "subtract", signed: bool = False, state_bits: int | None = None) -> dict[str, np.ndarray]:
    """One IF neuron over ``timesteps`` steps; ``x`` is a constant or one value per step.

    Returns numpy arrays of length T: ``input``, ``membrane`` (after charging, before reset), ``spikes``
    (-1/0/1) and ``out`` (``theta * spikes``).
    """
    neuron = IF(threshold=threshold, v_init=v_init, reset=reset, signed=signed, state_bits=state_bits)
    xs = _inputs(x, timesteps)
    with torch.no_grad():
        tr = neuron.trace(xs)
    flat = lambda a: a.reshape(timesteps).numpy().astype(float)  # noqa: E731
    return {"input": flat(xs), "membrane": flat(tr.membrane), "spikes": flat(tr.spikes), "out": flat(tr.out)}


def rate_staircase(x: Sequence[float] | np.ndarray, threshold: float = 1.0, timesteps: int = 8,
                   v_init: str = "half", reset: str = "subtract", signed: bool = False) -> dict[str, np.ndarray]:
    """Mean output over T steps of an IF neuron for each constant input in ``x`` (simulated), its ANN twin
    ``clamp(x, 0, theta)``, and the closed-form staircase ``(theta/T) clip(round(T x / theta), 0, T)``."""
    xs = torch.as_tensor(np.asarray(x, dtype=np.float32)).flatten()
    if xs.numel() == 0:
        raise ValueError("rate_staircase needs at least one input value")
    neuron = IF(threshold=threshold, v_init=v_init, reset=reset, signed=signed)
    with torch.no_grad():
        rate = neuron(xs.reshape(1, 1, -1).expand(timesteps, 1, -1).contiguous()).mean(0).flatten()
        relu = ClampActivation(neuron)(xs)
        formula = nearest_levels(xs, timesteps, float(threshold))
    return {"x": xs.numpy().astype(float), "rate": rate.numpy().astype(float), "relu": relu.numpy().astype(float),
            "formula": formula.numpy().astype(float)}


def sigmoid_sum_curves(x: Sequence[float] | np.ndarray, temperatures: Sequence[float], levels: str | int = "ternary",
                       scale_from: float | None = None) -> dict:
    """The sum-of-sigmoids quantizer's soft output at each temperature and its hard (inference) output.

    ``levels``: ``"binary"``, ``"ternary"`` or a bit width; ``scale_from`` sets ``q = max|x|`` of its
    initialisation (default: max|x| of the grid). Returns ``{"x", "curves": {T: y}, "hard", "levels"}``.
    """
    xs = torch.as_tensor(np.asarray(x, dtype=np.float32)).flatten()
    if xs.numel() == 0:
        raise ValueError("sigmoid_sum_curves needs at least one input value")
    # the quantizer's initialisation data: spread over [-q, q] (k-means on one value would stack its steps)
    init = torch.linspace(-float(scale_from), float(scale_from), 1001) if scale_from else xs
    q = SigmoidSumQuantizer(levels, init_from=init)
    curves = {}
    with torch.no_grad():
        for temp in temperatures:
            q.set_temperature(float(temp))
            curves[float(temp)] = q.soft(xs).numpy().astype(float)
        hard = q.hard(xs).numpy().astype(float)
        lv = (q.alpha * q.levels).numpy().astype(float)
    return {"x": xs.numpy().astype(float), "curves": curves, "hard": hard, "levels": lv}


def membrane_levels(threshold: float, bits: int) -> np.ndarray:
    """All values of a ``bits``-bit membrane for threshold ``theta``: ``Δ * {-2^(b-1), ..., 2^(b-1) - 1}``
    with ``Δ = theta / 2^(b-2)`` (`qnoise.quant.state`)."""
    step = float(membrane_step(torch.tensor(float(threshold)), bits))
    return step * np.arange(-(2 ** (bits - 1)), 2 ** (bits - 1), dtype=float)


MAX_GRID = 4096  # a grid with more values than this is described by its step, not listed


def weight_distribution(model: nn.Module, layer: str, weight_bits: int | None = None,
                        rounding: str = "nearest") -> dict:
    """One Conv/Linear layer's weights under a configuration (`qnoise.probe.configured`: ``weight_bits`` None
    keeps the model's own quantization, 32 is float), on a private copy of ``model``.

    Returns ``{"float", "quantized"}`` (flat numpy arrays), ``"bits"`` (32 for float), ``"grid"`` (every value
    the quantizer can output: ``Δ * {-2^(b-1), ..., 2^(b-1) - 1}`` for a per-tensor uniform quantizer; else
    the distinct quantized values; None for float weights), ``"clip"`` (the range the quantizer saturates to,
    the grid's ends; None for float) and ``"quantizer"`` (its description)."""
    from .probe import configured
    from .probe.copying import private_copy
    from .quant import float_weight, integer_range, maxabs_scale, weight_layers, weight_quantizers
    from .quant.weights import UniformWeight

    m = private_copy(model)
    with torch.no_grad(), configured(m, weight_bits=weight_bits, rounding=rounding):
        layers = dict(weight_layers(m))
        if layer not in layers:
            raise ValueError(f"{layer!r} is not a Conv/Linear layer of the model; layers are {sorted(layers)}")
        module = layers[layer]
        w = float_weight(module).detach().double()
        q = module.weight.detach().double()
        quantizer = weight_quantizers(m).get(layer)
        grid = clip = None
        bits = 32
        if quantizer is not None:
            bits = int(getattr(quantizer, "bits", 32))
            if isinstance(quantizer, UniformWeight) and not quantizer.per_channel and bits <= 12:
                lo, hi = integer_range(bits, signed=True)
                fixed = getattr(quantizer, "step", None)
                if fixed is None:  # from max|w|: the levels reach +-max|w|, never -2^(b-1) steps
                    lo = -hi
                step = float(fixed) if fixed is not None else float(maxabs_scale(float_weight(module).detach(), bits))
                grid = step * np.arange(lo, hi + 1, dtype=float)
            else:
                values = torch.unique(q)
                grid = values.numpy() if values.numel() <= MAX_GRID else None
            lo_hi = (float(grid.min()), float(grid.max())) if grid is not None else (float(q.min()), float(q.max()))
            clip = lo_hi
    return {"float": w.flatten().numpy(), "quantized": q.flatten().numpy(), "bits": bits, "grid": grid,
            "clip": clip, "quantizer": "float" if quantizer is None else quantizer.extra_repr() or
            type(quantizer).__name__}
