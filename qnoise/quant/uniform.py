"""Uniform quantization with a chosen rounding mode.

For step ``Δ`` (``scale``) and integer range ``[qmin, qmax]``::

    nearest     q = clamp(round(x/Δ), qmin, qmax)          error |y - x| <= Δ/2 inside the range
    truncate    q = clamp(floor(x/Δ), qmin, qmax)          never rounds up
    stochastic  q = clamp(floor(x/Δ + u), qmin, qmax)      u ~ U[0, 1): floor, plus one step with
                                                           probability equal to the remainder (unbiased)
    y = Δ * (q - zero_point)

Signed (symmetric) quantization uses ``[qmin, qmax] = [-2^(b-1), 2^(b-1) - 1]`` and, when no scale is given,
``Δ = max|x| / (2^(b-1) - 1)`` so that ``±max|x|`` are levels. Unsigned uses ``[0, 2^b - 1]`` with
``Δ = max(x) / (2^b - 1)``. Asymmetric uses ``[0, 2^b - 1]``, ``Δ = (max(x, 0) - min(x, 0)) / (2^b - 1)`` (the
range widened to hold 0, so that 0 is a level: torch.ao's convention) and an integer zero point. Values outside
the range saturate.

Ties (a value exactly half-way between two levels) under ``"nearest"`` round as ``ties`` says: ``"half-even"``
(to the even level, torch's and IEEE's default), ``"half-away"`` (away from zero, C's ``round``) or ``"half-up"``
(towards +inf, ``floor(u + 1/2)``, as a neuron that fires at its threshold). A given step Δ (``scale``) keeps a
hardware's grid, e.g. Loihi's 8-bit weights with step 2; `grid_step` finds the grid values already sit on.

Gradient: straight-through (identity) inside the representable range, zero outside it.
"""

from __future__ import annotations

from typing import Literal

import torch

Rounding = Literal["nearest", "truncate", "stochastic"]
ROUNDINGS: tuple[str, ...] = ("nearest", "truncate", "stochastic")
TIES: tuple[str, ...] = ("half-even", "half-away", "half-up")

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


def check_ties(ties: str) -> str:
    if ties not in TIES:
        raise ValueError(f"ties={ties!r} is not one of {TIES}")
    return ties


def round_half(u: torch.Tensor, ties: str = "half-even") -> torch.Tensor:
    """Round to the nearest integer; exact halves as ``ties`` says (module docstring). Computed from
    ``floor(u)`` and the exact remainder ``u - floor(u)``, never from ``u + 1/2`` (which rounds in float)."""
    if check_ties(ties) == "half-even":
        return torch.round(u)
    f = torch.floor(u)
    r = u - f  # exact for |u| < 2^mantissa
    up = (r > 0.5) | ((r == 0.5) & ((u > 0) if ties == "half-away" else torch.ones_like(u, dtype=torch.bool)))
    return f + up.to(u.dtype)


def grid_step(w: torch.Tensor, bits: int, rel_tol: float = 1e-5) -> float | None:
    """The step Δ of a b-bit signed grid that every value of ``w`` already sits on (``w = k Δ`` with integer k in
    ``[-2^(b-1), 2^(b-1) - 1]``), the largest such Δ; None when there is none (or ``bits > 16``, or ``w`` is all
    zero). E.g. Loihi's weights ``2 * int8`` give Δ = 2 at 8 bits. A value is on the grid when ``|w/Δ - k|`` is at
    most ``rel_tol`` of a step plus four units in the last place of ``w``'s type at ``w/Δ`` (what storing ``k Δ``
    in that type can add): a tolerance relative to ``k`` alone was a third of a step at k = 32767, and random
    weights of small layers found a 16-bit "grid". Float weights are told apart by their smallest and largest
    magnitude alone (no grid when the largest spans more than ``2^(b-1)`` of the smallest); only weights that
    pass that test are sorted."""
    if bits > 16:
        return None
    ulps = 4 * torch.finfo(w.dtype).eps if w.dtype.is_floating_point else 0.0

    def on_grid(v: torch.Tensor) -> torch.Tensor:  # v in steps
        return (v - v.round()).abs() <= rel_tol + ulps * v.abs()

    mags = w.detach().abs().double().flatten()
    nonzero = mags[mags > 0]
    if nonzero.numel() == 0:
        return None
    qmax = 2 ** (bits - 1)
    smallest, largest = nonzero.min(), nonzero.max()
    # the most steps the smallest magnitude can span (up to rel_tol: the weights' own rounding must not floor
    # k_0 to k_0 - 1; every candidate is checked on all weights below)
    top = int(qmax / float(largest / smallest) * (1 + rel_tol))
    if top < 1:  # float weights, as a rule: no sort of every magnitude needed to say so
        return None
    a = torch.unique(nonzero)
    ratios = a / a[0]  # each value in units of the smallest: k_i / k_0
    probe = ratios[: 256]
    for start in range(1, top + 1, 1024):
        k0 = torch.arange(start, min(start + 1024, top + 1), dtype=torch.float64).unsqueeze(1)
        scaled = probe.unsqueeze(0) * k0
        ok = on_grid(scaled).all(1)
        for k in k0[ok, 0].tolist():
            step = float(a[0]) / k
            q = w.detach().double() / step
            if bool(on_grid(q).all()) and \
                    float(q.round().max()) <= qmax - 1 and float(q.round().min()) >= -qmax:
                return step
    return None


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
    u: torch.Tensor, rounding: str, generator: torch.Generator | None = None, ties: str = "half-even"
) -> torch.Tensor:
    """Round real-valued level indices ``u = x/Δ`` to integers with the given rounding mode (``ties``: how
    ``"nearest"`` rounds exact halves).

    Indices within a few float ulps of an integer are snapped to it first: a value already on the grid,
    such as ``7 * Δ``, may divide back to ``6.9999995`` and must not fall a level under truncation.
    """
    if rounding == "nearest":
        return round_half(u, ties)
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
    ties: str = "half-even",
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
        ties: how ``"nearest"`` rounds exact halves: ``"half-even"``, ``"half-away"`` or ``"half-up"``.

    Returns:
        A tensor like ``x`` whose values are ``Δ * (q - zero_point)``; gradient is straight-through
        inside the representable range and zero outside it.
    """
    check_rounding(rounding)
    check_ties(ties)
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
        q = round_levels(clipped / step, rounding, generator, ties) + zero_point
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
