"""Differentiable sum-of-sigmoids quantizer (Quantization Networks, Yang et al., CVPR 2019).

With sorted levels ``Y[0] < ... < Y[n]``, steps ``s_i = Y[i+1] - Y[i]``, biases ``b_i = (Y[i] + Y[i+1]) / 2``
(the midpoints) and offset ``o = sum(s_i) / 2``::

    y = alpha * (sum_i s_i * sigmoid(T * (beta * x - b_i)) - o)

The temperature ``T`` is raised over training (``linear_temperature``); as ``T -> inf`` each sigmoid becomes a
unit step ``H(beta * x - b_i)`` and ``y`` takes values in ``alpha * Y`` (for levels symmetric about zero).
In eval mode the quantizer uses the unit step. Initialisation: ``beta = 5p / (4q)`` with ``p = max|Y|`` and
``q = max|x|``, and ``alpha = 1 / beta``. ``alpha`` and ``beta`` are learnable.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def uniform_levels(bits: int) -> torch.Tensor:
    """Symmetric integer levels of a k-bit code, ``{-(2^(k-1) - 1), ..., 2^(k-1) - 1}`` (k >= 2)."""
    if bits < 2:
        raise ValueError(f"uniform_levels needs bits >= 2 (use preset 'binary' for 1 bit), got {bits}")
    m = 2 ** (bits - 1) - 1
    return torch.arange(-m, m + 1, dtype=torch.float32)


def data_levels(x: torch.Tensor, bits: int, iters: int = 30) -> torch.Tensor:
    """Symmetric levels fitted to the data: Lloyd's k-means on ``|x|`` for the positive half, mirrored.

    Gives ``2^(k-1) - 1`` positive levels, their negatives and 0 (``2^k - 1`` levels in all), normalised
    so the largest is 1.
    """
    n_pos = 2 ** (bits - 1) - 1
    if n_pos < 1:
        raise ValueError(f"data_levels needs bits >= 2, got {bits}")
    mag = x.detach().abs().flatten().double()
    if mag.numel() == 0 or float(mag.max()) == 0.0:
        return uniform_levels(bits) / max(n_pos, 1)
    # k-means over |x| with n_pos positive centres and one centre pinned at 0
    centres = torch.quantile(mag, torch.linspace(0.5, 1.0, n_pos + 2, dtype=torch.float64)[1:-1])
    for _ in range(iters):
        all_c = torch.cat([torch.zeros(1, dtype=mag.dtype), centres])
        assign = (mag[:, None] - all_c[None, :]).abs().argmin(dim=1)
        for k in range(n_pos):
            members = mag[assign == k + 1]
            if members.numel():
                centres[k] = members.mean()
        centres = centres.sort().values
    pos = (centres / centres.max()).float()
    return torch.cat([-pos.flip(0), torch.zeros(1), pos])


def preset_levels(preset: str | int) -> torch.Tensor:
    """Levels for ``"binary"`` ({-1, 1}), ``"ternary"`` ({-1, 0, 1}) or k bits (uniform, max 1)."""
    if preset == "binary" or preset == 1:
        return torch.tensor([-1.0, 1.0])
    if preset == "ternary":
        return torch.tensor([-1.0, 0.0, 1.0])
    if isinstance(preset, int) and not isinstance(preset, bool):
        lv = uniform_levels(preset)
        return lv / lv.abs().max()
    raise ValueError(f"unknown level preset {preset!r}: expected 'binary', 'ternary' or a bit width (int)")


def linear_temperature(epoch: float, slope: float = 10.0, start: float = 1.0, cap: float = 1000.0) -> float:
    """Temperature schedule ``T = min(start + slope * epoch, cap)``: linear in the epoch, capped."""
    if slope < 0 or start <= 0 or cap < start:
        raise ValueError(f"need slope >= 0, start > 0 and cap >= start; got {slope=}, {start=}, {cap=}")
    return float(min(start + slope * epoch, cap))


class SigmoidSumQuantizer(nn.Module):
    """Sum-of-sigmoids quantizer with learnable ``alpha``, ``beta`` and a caller-driven temperature.

    Usable as a ``torch.nn.utils.parametrize`` parametrization of a weight (``forward(w) -> w_q``).

    Args:
        levels: preset (``"binary"``, ``"ternary"``, bit width) or an explicit 1-D tensor of levels.
        init_from: tensor used to set ``beta = 5p/(4q)``, ``alpha = 1/beta`` (q = max|init_from|).
        temperature: initial temperature T.
    """

    def __init__(self, levels: str | int | torch.Tensor, init_from: torch.Tensor | None = None,
                 temperature: float = 1.0) -> None:
        super().__init__()
        y = levels.detach().float().flatten() if isinstance(levels, torch.Tensor) else preset_levels(levels)
        y = torch.sort(y).values
        if y.numel() < 2 or bool((y[1:] == y[:-1]).any()):
            raise ValueError(f"levels must hold at least two distinct values, got {y.tolist()}")
        self.register_buffer("levels", y)
        self.register_buffer("steps", y[1:] - y[:-1])
        self.register_buffer("biases", (y[1:] + y[:-1]) / 2)
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        p = float(y.abs().max())
        q = float(init_from.detach().abs().max()) if init_from is not None else 1.0
        beta = 5.0 * p / (4.0 * max(q, 1e-12))
        self.beta = nn.Parameter(torch.tensor(beta))
        self.alpha = nn.Parameter(torch.tensor(1.0 / beta))

    @property
    def offset(self) -> torch.Tensor:
        """``o = sum(s_i) / 2``."""
        return self.steps.sum() / 2

    def set_temperature(self, value: float) -> None:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"temperature must be a positive finite number, got {value}")
        self.temperature.fill_(float(value))

    def soft(self, x: torch.Tensor) -> torch.Tensor:
        """Training form: ``alpha * (sum_i s_i sigmoid(T (beta x - b_i)) - o)``."""
        z = self.beta * x.unsqueeze(-1) - self.biases
        return self.alpha * ((self.steps * torch.sigmoid(self.temperature * z)).sum(-1) - self.offset)

    def hard(self, x: torch.Tensor) -> torch.Tensor:
        """Inference form: the sigmoids become unit steps, ``H(beta x - b_i)`` (1 where >= 0)."""
        z = self.beta * x.unsqueeze(-1) - self.biases
        return self.alpha * ((self.steps * (z >= 0).to(x.dtype)).sum(-1) - self.offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.soft(x) if self.training else self.hard(x)

    def extra_repr(self) -> str:
        return f"levels={self.levels.tolist()}, temperature={float(self.temperature):g}"
