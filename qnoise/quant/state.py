"""Fixed-point quantization of neuron parameters and state.

Membrane potential at ``b`` bits uses a signed code whose step is tied to the threshold::

    Δ = theta / 2^(b-2)        levels Δ * {-2^(b-1), ..., 2^(b-1) - 1}, i.e. range [-2 theta, 2 theta)

so the threshold itself is a level (``theta = 2^(b-2) Δ``) and a membrane up to twice the threshold
is representable, as in fixed-point neuromorphic hardware. Thresholds at ``b`` bits use an unsigned code
shared by the whole model: ``Δ = max(theta) / (2^b - 1)`` unless a step is given.
"""

from __future__ import annotations

import torch

from .uniform import check_bits, quantize


def membrane_step(theta: torch.Tensor, bits: int) -> torch.Tensor:
    """Step Δ of a ``bits``-bit membrane for threshold ``theta``: ``theta / 2^(bits-2)``."""
    check_bits(bits, signed=True)
    return theta / 2.0 ** (bits - 2)


def quantize_membrane(v: torch.Tensor, theta: torch.Tensor, bits: int, rounding: str = "nearest",
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Quantize a membrane potential to ``bits`` bits on the threshold-tied grid (see module docstring)."""
    return quantize(v, bits, rounding, signed=True, scale=membrane_step(theta, bits).detach(),
                    generator=generator)


def quantize_threshold(theta: torch.Tensor, bits: int, rounding: str = "nearest",
                       step: float | torch.Tensor | None = None) -> torch.Tensor:
    """Quantize thresholds to an unsigned ``bits``-bit code (step ``max(theta)/(2^b - 1)`` by default).

    The result is kept strictly positive: a threshold that would round to 0 takes the smallest level. The
    gradient is straight-through everywhere (1 with respect to ``theta``), that lift included: ``torch.maximum``
    split it on the lowest level (0.5) and gave 0 below half a step, where a learned threshold then never moved.
    """
    check_bits(bits, signed=False)
    if step is None:
        step = (theta.detach().max() / (2**bits - 1)).clamp_min(1e-12)
    q = quantize(theta, bits, rounding, signed=False, scale=step)
    step_t = torch.as_tensor(step, dtype=theta.dtype, device=theta.device).detach()
    return q + (step_t - q.detach()).clamp_min(0.0)  # max(q, step), the lift a constant
