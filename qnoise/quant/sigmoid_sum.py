"""Sum-of-sigmoids weight quantizer (Quantization Networks, Yang et al., CVPR 2019), as the binary-weight SNN
paper adopts it (docs/methods.md).

Integer levels ``Y[0] < ... < Y[n]`` (binary {-1, 1}, ternary {-1, 0, 1}, k-bit uniform, or the paper's
power-of-two-like sets such as {-4, -2, -1, 0, 1, 2, 4}), steps ``s_i = Y[i+1] - Y[i]``, offset
``o = sum(s_i) / 2``, learned per layer: output scale ``alpha``, input scale ``beta`` and step positions ``b_i``::

    training    y = alpha * (sum_i s_i * sigmoid(clamp(T * (beta * x - b_i), -10, 10)) - o)
    inference   y = alpha * (sum_i s_i * H(beta * x - b_i) - o)          H(z) = 1 where z > 0 (unit step)

so at inference ``y`` takes values in ``alpha * Y``. Initialisation (DESIGN.md, the authors' code):

- ``beta = 5p / (4q)`` with ``p = max|Y|``, ``q = max|x|`` of the weight: ``beta * x`` spans ``[-5p/4, 5p/4]``;
  ``alpha = 1 / beta``.
- binary: ``b = 0``. ternary: ``b = -0.05, +0.05`` (on ``beta * x``: a small share of the weights, about 5-20 %
  for Gaussian weights, starts at 0). More levels: 1-D k-means with ``|Y|`` clusters on ``beta * x``, ``b_i`` =
  midpoints of adjacent centres, and the two steps either side of the level 0 set to -0.05 and +0.05 (with no
  zero level and an odd number of steps, the middle step at 0).

Temperature: ``T = k * (epoch + 1)`` with ``k`` in {5, 10, 20, 40} (the paper's recipes; the authors' code
defaults to 10), capped at 2000 (`paper_temperature`). Deviations from the authors' code, on purpose: the step
positions ``b_i`` are learned (DESIGN.md; the code keeps its k-means ``b_i`` fixed, ``learn_biases=False``
does the same), and they are sorted in the forward so the hard form never leaves ``alpha * Y``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .uniform import straight_through

CLAMP = 10.0           # |T * (beta x - b)| is clamped here (the authors' weight quantizer)
TEMPERATURE_K = 10.0   # T = k * (epoch + 1): the authors' default k
TEMPERATURE_CAP = 2000.0
ZERO_STEP = 0.05       # the steps either side of the level 0 start at -/+ this on beta * x
PRESETS = ("uniform", "pow2", "data")


def uniform_levels(bits: int) -> torch.Tensor:
    """Symmetric integer levels of a k-bit code, ``{-(2^(k-1) - 1), ..., 2^(k-1) - 1}`` (k >= 2; k = 2: ternary)."""
    if bits < 2:
        raise ValueError(f"uniform_levels needs bits >= 2 (use preset 'binary' for 1 bit), got {bits}")
    m = 2 ** (bits - 1) - 1
    return torch.arange(-m, m + 1, dtype=torch.float32)


def pow2_levels(bits: int) -> torch.Tensor:
    """The paper's power-of-two-like set in k bits: ``{0, +-1, +-2, ..., +-2^(m-1)}`` with ``m = 2^(k-1) - 1``
    magnitudes, so ``2^k - 1`` levels (k = 2: ternary; k = 3: {-4, -2, -1, 0, 1, 2, 4})."""
    if bits < 2:
        raise ValueError(f"pow2_levels needs bits >= 2, got {bits}")
    mags = 2.0 ** torch.arange(2 ** (bits - 1) - 1, dtype=torch.float32)
    return torch.cat([-mags.flip(0), torch.zeros(1), mags])


def sorted_quantiles(v: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``torch.quantile(v, q)`` (linear interpolation) of an already sorted 1-D ``v``, of any length
    (`torch.quantile` refuses inputs of more than 2^24 values, fewer than one VGG-16 fully connected layer has)."""
    pos = q.to(v.dtype) * (v.numel() - 1)
    below = pos.floor()
    return torch.lerp(v[below.long()], v[pos.ceil().long()], pos - below)  # torch.quantile's own arithmetic


def data_levels(x: torch.Tensor, bits: int, iters: int = 30) -> torch.Tensor:
    """Levels fitted to the data (a qnoise extension, not the paper's integer sets): Lloyd's k-means on ``|x|``
    for the positive half, mirrored, with 0; ``2^k - 1`` levels normalised so the largest is 1."""
    n_pos = 2 ** (bits - 1) - 1
    if n_pos < 1:
        raise ValueError(f"data_levels needs bits >= 2, got {bits}")
    mag = x.detach().abs().flatten().double()
    if mag.numel() == 0 or float(mag.max()) == 0.0:
        return uniform_levels(bits) / max(n_pos, 1)
    centres = sorted_quantiles(mag.sort().values, torch.linspace(0.5, 1.0, n_pos + 2, dtype=torch.float64)[1:-1])
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


def preset_levels(preset: str | int, bits: int | None = None) -> torch.Tensor:
    """Integer levels: ``"binary"`` (or 1), ``"ternary"``, a bit width k (uniform), or ``("pow2", k)`` given as
    ``preset="pow2", bits=k``."""
    if preset == "binary" or (preset == 1 and not isinstance(preset, bool)):
        return torch.tensor([-1.0, 1.0])
    if preset == "ternary":
        return torch.tensor([-1.0, 0.0, 1.0])
    if preset == "pow2" and bits is not None:
        return pow2_levels(bits)
    if preset == "uniform" and bits is not None:
        return preset_levels(bits)
    if isinstance(preset, int) and not isinstance(preset, bool):
        return uniform_levels(preset)
    raise ValueError(f"unknown level preset {preset!r}: expected 'binary', 'ternary', a bit width (int), or "
                     f"'uniform'/'pow2' with bits")


def kmeans_1d(values: torch.Tensor, clusters: int, iters: int = 100) -> torch.Tensor:
    """Sorted centres of Lloyd's k-means on 1-D ``values`` (float64), started at evenly spaced quantiles.

    Each iteration assigns by the midpoints between centres (exact for 1-D) using prefix sums over the sorted
    values, so it costs O(clusters log n) after one sort.
    """
    v = values.detach().flatten().double().sort().values
    n = v.numel()
    if n == 0:
        raise ValueError("kmeans_1d needs at least one value")
    csum = torch.cat([torch.zeros(1, dtype=v.dtype), v.cumsum(0)])
    centres = sorted_quantiles(v, (torch.arange(clusters, dtype=v.dtype) + 0.5) / clusters)
    for _ in range(iters):
        cuts = torch.searchsorted(v, (centres[1:] + centres[:-1]) / 2)
        edges = torch.cat([torch.zeros(1, dtype=cuts.dtype), cuts, torch.tensor([n])])
        counts = edges[1:] - edges[:-1]
        sums = csum[edges[1:]] - csum[edges[:-1]]
        new = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
        new = new.sort().values
        if torch.equal(new, centres):
            break
        centres = new
    return centres


def init_biases(levels: torch.Tensor, scaled: torch.Tensor) -> torch.Tensor:
    """Initial step positions ``b`` for ``levels`` given the scaled weights ``beta * x`` (module docstring)."""
    n = levels.numel() - 1
    if n == 1:
        return torch.zeros(1)
    centres = kmeans_1d(scaled, n + 1)
    b = ((centres[1:] + centres[:-1]) / 2).float()
    zero = (levels == 0).nonzero().flatten()
    if zero.numel():
        j = int(zero[0])
        if j > 0:
            b[j - 1] = -ZERO_STEP
        if j < n:
            b[j] = ZERO_STEP
    elif n % 2 == 1:
        b[n // 2] = 0.0
    return b.sort().values


def paper_temperature(epoch: int, k: float = TEMPERATURE_K, cap: float = TEMPERATURE_CAP) -> float:
    """The paper's schedule ``T = min(k * (epoch + 1), cap)`` for the 0-based ``epoch``."""
    if k <= 0 or cap <= 0:
        raise ValueError(f"need k > 0 and cap > 0, got {k=}, {cap=}")
    return float(min(k * (epoch + 1), cap))


def linear_temperature(epoch: float, slope: float = TEMPERATURE_K, start: float = TEMPERATURE_K,
                       cap: float = TEMPERATURE_CAP) -> float:
    """``T = min(start + slope * epoch, cap)``; ``start = slope = k`` is the paper's ``k * (epoch + 1)``."""
    if slope < 0 or start <= 0 or cap < start:
        raise ValueError(f"need slope >= 0, start > 0 and cap >= start; got {slope=}, {start=}, {cap=}")
    return float(min(start + slope * epoch, cap))


class SigmoidSumQuantizer(nn.Module):
    """Sum-of-sigmoids quantizer with learned ``alpha``, ``beta`` and step positions ``biases`` (``b_i``).

    Usable as a ``torch.nn.utils.parametrize`` parametrization of a weight (``forward(w) -> w_q``): the soft
    form in training mode, the unit step in eval mode. The caller sets the temperature (`set_temperature`,
    `paper_temperature`).

    Args:
        levels: ``"binary"``, ``"ternary"``, a bit width (uniform integer levels) or a 1-D tensor of levels.
        init_from: the weight that sets ``beta = 5p/(4q)`` (``q = max|init_from|``) and the initial ``b_i``
            (k-means on ``beta * init_from``); without it ``q = 1`` and ``b_i`` come from uniform data.
        temperature: initial temperature T.
        learn_biases: learn ``b_i`` (DESIGN.md); False keeps them fixed as the authors' released code does.
    """

    def __init__(self, levels: str | int | torch.Tensor, init_from: torch.Tensor | None = None,
                 temperature: float = 1.0, learn_biases: bool = True) -> None:
        super().__init__()
        y = levels.detach().float().flatten() if isinstance(levels, torch.Tensor) else preset_levels(levels)
        y = torch.sort(y).values
        if y.numel() < 2 or bool((y[1:] == y[:-1]).any()):
            raise ValueError(f"levels must hold at least two distinct values, got {y.tolist()}")
        if float(y[0]) != -float(y[-1]):  # else the output is alpha * (Y - (Y[0] + Y[n]) / 2), not alpha * Y
            raise ValueError(f"levels must be symmetric (lowest = -highest), got {y.tolist()}: the offset "
                             f"o = sum(s_i)/2 centres the output on 0")
        self.register_buffer("levels", y)
        self.register_buffer("steps", y[1:] - y[:-1])
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        data = init_from.detach().float().flatten() if init_from is not None else torch.linspace(-1, 1, 1001)
        p = float(y.abs().max())
        q = float(data.abs().max()) if data.numel() else 1.0
        beta = 5.0 * p / (4.0 * (q if q > 0 else 1.0))
        self.beta = nn.Parameter(torch.tensor(beta))
        self.alpha = nn.Parameter(torch.tensor(1.0 / beta))
        b = init_biases(y, beta * data if data.numel() else torch.linspace(-1, 1, 1001))
        if learn_biases:
            self.biases = nn.Parameter(b)
        else:
            self.register_buffer("biases", b)
        self.bits = max(1, math.ceil(math.log2(y.numel())))

    @property
    def offset(self) -> torch.Tensor:
        """``o = sum(s_i) / 2``."""
        return self.steps.sum() / 2

    def set_temperature(self, value: float) -> None:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"temperature must be a positive finite number, got {value}")
        self.temperature.fill_(float(value))

    def _z(self, x: torch.Tensor) -> torch.Tensor:
        """``beta * x - b_i`` with the ``b_i`` in ascending order, shape ``[*x.shape, n]``."""
        return self.beta * x.unsqueeze(-1) - torch.sort(self.biases).values

    def soft(self, x: torch.Tensor) -> torch.Tensor:
        """Training form: ``alpha * (sum_i s_i sigmoid(clamp(T (beta x - b_i), -10, 10)) - o)``."""
        arg = (self.temperature * self._z(x)).clamp(-CLAMP, CLAMP)
        return self.alpha * ((self.steps * torch.sigmoid(arg)).sum(-1) - self.offset)

    def hard(self, x: torch.Tensor) -> torch.Tensor:
        """Inference form: ``alpha * (sum_i s_i H(beta x - b_i) - o)``, ``H(z) = 1`` where ``z > 0``.

        Where a gradient is wanted in eval mode (fine-tuning a converted SNN, which runs the deployed values)
        the staircase passes the soft form's gradient to ``x``, ``beta`` and ``b_i`` (straight-through: its
        value is the hard one exactly); ``alpha``'s gradient is the hard form's own. Without it the step
        function would give ``x`` no gradient at all (a qnoise choice; the paper only trains the soft form)."""
        z = self._z(x)
        stair = (self.steps * (z > 0).to(x.dtype)).sum(-1) - self.offset
        if torch.is_grad_enabled() and (x.requires_grad or self.beta.requires_grad or self.biases.requires_grad):
            soft = (self.steps * torch.sigmoid((self.temperature * z).clamp(-CLAMP, CLAMP))).sum(-1)
            stair = straight_through(stair, soft)
        return self.alpha * stair

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.soft(x) if self.training else self.hard(x)

    def extra_repr(self) -> str:
        return f"levels={self.levels.tolist()}, temperature={float(self.temperature):g}"
