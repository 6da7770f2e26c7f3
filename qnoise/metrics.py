"""Error metrics, one definition each (torch.ao numeric-suite conventions; DESIGN.md, Noise).

For a reference ``x`` and an approximation ``y``::

    sqnr_db = 20 * log10(||x|| / ||x - y||)      (+inf when y == x; -inf when x == 0 != y)
    mse     = mean((x - y)^2)
    nmse    = ||x - y||^2 / ||x||^2
    cosine  = <x, y> / (||x|| ||y||)
"""

from __future__ import annotations

import math

import torch


def _pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != y.shape:
        raise ValueError(f"reference and approximation differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    return x.detach().double().flatten(), y.detach().double().flatten()


def sqnr_db(x: torch.Tensor, y: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: ``20 log10(||x|| / ||x - y||)``."""
    x, y = _pair(x, y)
    return sqnr_from_norms(float(x.norm()), float((x - y).norm()))


def sqnr_from_norms(signal_norm: float, noise_norm: float) -> float:
    """``20 log10(signal_norm / noise_norm)`` with the limits spelled out (+inf: no noise)."""
    if noise_norm == 0.0:
        return math.inf
    if signal_norm == 0.0:
        return -math.inf
    return 20.0 * math.log10(signal_norm / noise_norm)


def mse(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error ``mean((x - y)^2)``."""
    x, y = _pair(x, y)
    return float(((x - y) ** 2).mean())


def nmse(x: torch.Tensor, y: torch.Tensor) -> float:
    """Normalised MSE ``||x - y||^2 / ||x||^2`` (nan when x == 0)."""
    x, y = _pair(x, y)
    den = float((x**2).sum())
    return float(((x - y) ** 2).sum()) / den if den else math.nan


def cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    """Cosine similarity ``<x, y> / (||x|| ||y||)`` (nan when either is zero)."""
    x, y = _pair(x, y)
    den = float(x.norm() * y.norm())
    return float((x * y).sum()) / den if den else math.nan
