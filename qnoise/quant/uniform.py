"""Uniform quantization with a chosen rounding mode.

For step ``Δ`` (``scale``) and integer range ``[qmin, qmax]``::

    nearest     q = clamp(round(x/Δ), qmin, qmax)          error |y - x| <= Δ/2 inside the range
    truncate    q = clamp(floor(x/Δ), qmin, qmax)          never rounds up
    stochastic  q = clamp(floor(x/Δ + u), qmin, qmax)      u ~ U[0, 1): floor, plus one step with
                                                           probability equal to the remainder (unbiased)
    y = Δ * (q - zero_point)

Signed (symmetric) quantization uses ``[qmin, qmax] = [-2^(b-1), 2^(b-1) - 1]`` and, when no scale is given,
``Δ = max|x| / (2^(b-1) - 1)`` so that ``±max|x|`` are levels. Unsigned uses ``[0, 2^b - 1]`` with
``Δ = max(x) / (2^b - 1)``. Asymmetric uses ``[0, 2^b - 1]``, ``Δ = (max - min) / (2^b - 1)`` and an
integer zero point. Values outside the range saturate.

Gradient: straight-through (identity) inside the representable range, zero outside it.
"""

from __future__ import annotations

from typing import Literal

import torch

Rounding = Literal["nearest", "truncate", "stochastic"]
ROUNDINGS: tuple[str, ...] = ("nearest", "truncate", "stochastic")

_TINY = 1e-12


def check_bits(bits: int, *, signed: bool) -> int:
    """Validate a bit width: an integer >= 2 when signed (1 bit signed is `binarize`), >= 1 unsigned."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"bits must be an int, got {bits!r} ({type(bits).__name__})")
    low = 2 if signed else 1
    if not low <= bits <= 32:
        kind = "signed" if signed else "unsigned"
        raise ValueError(f"bits={bits} is out of range for {kind} quantization: expected {low}..32")
    return bits


def check_rounding(rounding: str) -> str:
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding={rounding!r} is not one of {ROUNDINGS}")
    return rounding


def integer_range(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range ``[qmin, qmax]`` of a b-bit code."""
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _reduce_dims(x: torch.Tensor, axis: int | None) -> tuple[int, ...] | None:
    if axis is None:
        return None
    axis = axis % x.dim()
    return tuple(d for d in range(x.dim()) if d != axis)


def _amax(x: torch.Tensor, axis: int | None) -> torch.Tensor:
    dims = _reduce_dims(x, axis)
    return x.abs().amax() if dims is None else x.abs().amax(dim=dims, keepdim=True)


def _amin_amax(x: torch.Tensor, axis: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    dims = _reduce_dims(x, axis)
    if dims is None:
        return x.amin(), x.amax()
    return x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)


def maxabs_scale(x: torch.Tensor, bits: int, signed: bool = True, axis: int | None = None) -> torch.Tensor:
    """Step Δ that maps max|x| (per tensor, or per slice along ``axis``) onto the largest level."""
    qmax = integer_range(bits, signed)[1]
    with torch.no_grad():
        return (_amax(x, axis) / qmax).clamp_min(_TINY)


def round_levels(
    u: torch.Tensor, rounding: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Round real-valued level indices ``u = x/Δ`` to integers with the given rounding mode.

    Indices within a few float ulps of an integer are snapped to it first: a value already on the grid,
    such as ``7 * Δ``, may divide back to ``6.9999995`` and must not fall a level under truncation.
    """
    if rounding == "nearest":
        return torch.round(u)
    nearest = torch.round(u)
    tol = 8 * torch.finfo(u.dtype).eps * nearest.abs().clamp_min(1.0)
    u = torch.where((u - nearest).abs() <= tol, nearest, u)
    if rounding == "truncate":
        return torch.floor(u)
    if rounding == "stochastic":
        noise = torch.rand(u.shape, generator=generator, dtype=u.dtype, device=u.device)
        return torch.where(u == nearest, nearest, torch.floor(u + noise))
    raise ValueError(f"rounding={rounding!r} is not one of {ROUNDINGS}")


def quantize(
    x: torch.Tensor,
    bits: int,
    rounding: Rounding = "nearest",
    signed: bool = True,
    scale: torch.Tensor | float | None = None,
    axis: int | None = None,
    asymmetric: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Uniform, saturating fake-quantization of ``x`` to ``bits`` bits (see the module docstring).

    Args:
        x: any tensor.
        bits: bit width b.
        rounding: ``"nearest"``, ``"truncate"`` or ``"stochastic"``.
        signed: symmetric signed code (True) or unsigned code ``[0, 2^b - 1]`` (False).
        scale: step Δ (a float or a tensor broadcastable to ``x``). Default: from max|x|.
        axis: per-channel scale along this dimension (ignored when ``scale`` is given).
        asymmetric: unsigned code with a zero point spanning ``[min(x), max(x)]``.
        generator: random generator for reproducible stochastic rounding.

    Returns:
        A tensor like ``x`` whose values are ``Δ * (q - zero_point)``; gradient is straight-through
        inside the representable range and zero outside it.
    """
    check_rounding(rounding)
    if asymmetric:
        bits = check_bits(bits, signed=False)
        qmin, qmax = integer_range(bits, signed=False)
        with torch.no_grad():
            lo, hi = _amin_amax(x, axis)
            lo, hi = lo.clamp_max(0.0), hi.clamp_min(0.0)
            step = ((hi - lo) / qmax).clamp_min(_TINY) if scale is None else torch.as_tensor(scale)
            zero_point = torch.round(-lo / step)
    else:
        bits = check_bits(bits, signed=signed)
        qmin, qmax = integer_range(bits, signed)
        if scale is None:
            step = maxabs_scale(x, bits, signed, axis)
        else:
            step = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
            if bool((step <= 0).any()):
                raise ValueError(f"scale (step Δ) must be positive, got {scale!r}")
        zero_point = torch.zeros((), dtype=x.dtype, device=x.device)
    step = step.to(dtype=x.dtype, device=x.device).detach()
    zero_point = zero_point.to(dtype=x.dtype, device=x.device)
    low = (qmin - zero_point) * step
    high = (qmax - zero_point) * step
    clipped = torch.clamp(x, low, high)
    with torch.no_grad():
        q = round_levels(clipped / step, rounding, generator) + zero_point
        q = q.clamp(qmin, qmax)
        y = (q - zero_point) * step
    return straight_through(y, clipped)


def straight_through(value: torch.Tensor, grad_of: torch.Tensor) -> torch.Tensor:
    """``value`` exactly, with the gradient of ``grad_of``: ``value + (g - g.detach())``.

    (The common ``g + (value - g).detach()`` is off by float rounding, so quantized values would leave
    their grid.)
    """
    return value.detach() + (grad_of - grad_of.detach())


def nearest_levels(x: torch.Tensor, levels: int, high: torch.Tensor | float) -> torch.Tensor:
    """Round ``x`` onto ``levels`` + 1 evenly spaced values in ``[0, high]``, half up.

    ``(high/n) * clip(floor(n*x/high + 1/2), 0, n)``: the staircase an IF neuron with ``v[0] = theta/2``
    and reset by subtraction realises over ``n`` timesteps (DESIGN.md, Neurons). Half-way values round up,
    as the neuron fires when its membrane reaches the threshold.
    """
    n = levels
    return (high / n) * torch.clamp(torch.floor(n * x / high + 0.5), 0, n)
