"""Small, pure computations for teaching (the dashboard's Learn page and the Spikes page's histogram).

Everything here is a thin call into qnoise's own neurons and quantizers, returning plain numpy arrays:

- `neuron_trace`: one IF neuron fed an input for T steps (`qnoise.neurons.IF.trace`).
- `rate_staircase`: the mean output over T steps of an IF neuron against a constant input, simulated by
  the neuron itself, beside its ANN twin ``clamp(x, 0, theta)`` and the closed form
  `qnoise.quant.nearest_levels` (equal for ``v_init="half"`` and reset by subtraction).
- `sigmoid_sum_curves`: the sum-of-sigmoids quantizer at several temperatures and its hard limit.
- `membrane_levels`: the values a ``bits``-bit membrane can hold (`qnoise.quant.membrane_step`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

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
    init = torch.tensor([float(scale_from)]) if scale_from else xs
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
