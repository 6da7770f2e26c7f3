"""Pure math of the probe: the error decomposition of DESIGN.md and the fused per-timestep statistics.

For spiking layer l with threshold theta, after t timesteps (t = 1..T)::

    r(t) = (1/t) sum_{tau<=t} out[tau]                  SNN rate
    z(t) = (1/t) sum_{tau<=t} x[tau]                    mean input (= f_l(r_{l-1}(t)) when f_l is affine)
    a(z) = clamp(z, 0, theta)                           the ANN twin's activation function
    Q_t(z) = (theta/t) clip(floor(t z/theta + 1/2), 0, t)   best t-step rate (`qnoise.quant.nearest_levels`)
    A                                                   the ANN twin's activation for the same sample

    r - A = [Q_t(z) - a(z)] + [r - Q_t(z)] + [a(z) - A]
          =   quantization  +  sequential  + propagated

`decompose` is the definition on whole tensors. `propagated_sums` and `isolated_sums` reduce one batch
of a layer to the sums per step from which every per-layer metric follows (`SUMS`; the probe keeps only
these, memory O(T) per layer, not O(samples)); `complete_stats` adds the sums that follow exactly from
them. The tests check the sums against `decompose`; `qnoise.probe.cpu_kernel` computes the same sums in
one pass over a layer on the CPU, and is checked against these functions.
"""

from __future__ import annotations

import torch

from ..neurons import IF, LIF
from ..quant import nearest_levels

# running sums per layer and timestep, in this order (``2`` = sum of squares; ``ref`` = A; ``rate`` = r)
PROP_STATS = ("quant", "seq", "prop", "total", "quant2", "seq2", "prop2", "total2", "ref2", "rate2", "cross",
              "events")


def step_counts(T: int, like: torch.Tensor) -> torch.Tensor:
    """``t = 1..T`` as a ``[T, 1, ...]`` column that broadcasts against ``like [T, ...]`` (same dtype, device)."""
    return torch.arange(1, T + 1, dtype=like.dtype, device=like.device).view(T, *[1] * (like.dim() - 1))


def cumulative_mean(x: torch.Tensor) -> torch.Tensor:
    """``(1/t) sum_{tau<=t} x[tau]`` along dimension 0 of ``[T, ...]``, for t = 1..T."""
    return x.cumsum(0) / step_counts(x.shape[0], x)


def clamp_activation(z: torch.Tensor, theta: torch.Tensor | float) -> torch.Tensor:
    """The ANN twin's activation ``a(z) = clamp(z, 0, theta)`` (theta may be a tensor that broadcasts)."""
    return torch.minimum(z.clamp_min(0.0), torch.as_tensor(theta, dtype=z.dtype, device=z.device))


def decompose(rate: torch.Tensor, z: torch.Tensor, ann: torch.Tensor, theta: torch.Tensor | float,
              t: int | torch.Tensor) -> dict[str, torch.Tensor]:
    """The exact decomposition ``r - A = quant + seq + prop`` (see the module docstring), elementwise.

    ``t`` is the number of timesteps averaged: an int, or a ``[T, 1, ...]`` tensor of steps for ``[T, ...]``
    inputs (one per row). Returns ``{"quant", "seq", "prop", "total"}``.
    """
    if torch.is_tensor(t) and t.numel() > 1:
        q = torch.stack([nearest_levels(z[i], int(t.reshape(-1)[i]), theta) for i in range(z.shape[0])])
    else:
        q = nearest_levels(z, int(t), theta)
    a = clamp_activation(z, theta)
    return {"quant": q - a, "seq": rate - q, "prop": a - ann, "total": rate - ann}


ISO_OFF, ISO_DYNAMICS, ISO_GIVEN, ISO_FLOOR, ISO_ROUND = 0, 1, 2, 3, 4


def isolated_mode(neuron, static_twin: bool, clamp_twin: bool) -> int:
    """How `qnoise.probe.cpu_kernel` computes the isolated layer. A plain IF neuron (unsigned, reset by
    subtraction, float membrane, one threshold) fed the constant input Z of a static twin has the
    closed-form count ``clip(floor(t Z/theta + c), 0, t)`` after t steps (c = 1/2 for ``v_init="half"``,
    0 for ``"zero"``: DESIGN.md's identity, proven in tests/test_neurons.py), so no dynamics need to run.
    Other IF/LIF neurons run their dynamics inside the kernel; any other neuron (quantized membrane,
    subclasses) runs its own forward. (`isolated_sums` always takes the neuron's own output.)"""
    if type(neuron) not in (IF, LIF) or neuron.state_bits is not None:
        return ISO_GIVEN
    plain = (type(neuron) is IF and not neuron.signed and neuron.reset == "subtract" and not neuron.per_channel)
    if plain and static_twin and clamp_twin:
        return ISO_ROUND if neuron.v_init == "half" else ISO_FLOOR
    return ISO_DYNAMICS


# what an implementation sums per step: see `step_sums`
SUMS = ("quant", "seq", "prop", "quant2", "seq2", "prop2", "total2", "rate2", "events")


def step_sums(z: torch.Tensor, u: torch.Tensor, r: torch.Tensor, A: torch.Tensor, theta: torch.Tensor,
              fired: torch.Tensor) -> torch.Tensor:
    """The `SUMS` per step ``[T, 9]`` (float64) from ``[T, B, N]`` tensors of one layer after t = 1..T steps.

    ``z`` is the mean input, ``u = t z / theta`` as the caller computed it, ``r`` the rate, ``A`` the twin's
    activation (``[Tt, B, N]``, Tt = 1 or T), ``theta`` a 0-d tensor or ``[N]``, ``fired`` the spikes of each
    step (bool). With ``q = Q_t(z) = (theta/t) clip(floor(u + 1/2), 0, t)`` and ``a = clamp(z, 0, theta)``:
    the sums over the batch and neurons of quant = q - a, seq = r - q, prop = a - A, their squares,
    total^2 = (r - A)^2, r^2 and the number of spikes.
    """
    T = z.shape[0]
    t = step_counts(T, z)
    q = theta * (1.0 / t) * torch.clamp(torch.floor(u + 0.5), min=0.0).minimum(t)
    a = clamp_activation(z, theta)
    e_q, e_s, e_p, e_t = q - a, r - q, a - A, r - A

    def total(v: torch.Tensor) -> torch.Tensor:  # accumulated in float64: the same whatever the thread count
        return v.sum((1, 2), dtype=torch.float64)

    return torch.stack([total(e_q), total(e_s), total(e_p), total(e_q * e_q), total(e_s * e_s), total(e_p * e_p),
                        total(e_t * e_t), total(r * r), total(fired)], dim=1)


def twin_activation(Z: torch.Tensor, A: torch.Tensor | None, theta: torch.Tensor) -> torch.Tensor:
    """The twin's activation: ``A`` as given, else ``clamp(Z, 0, theta)``."""
    return clamp_activation(Z, theta) if A is None else A


def propagated_sums(x: torch.Tensor, out: torch.Tensor, Z: torch.Tensor, A: torch.Tensor | None,
                    theta: torch.Tensor) -> torch.Tensor:
    """`step_sums` of the SNN as it ran: ``x``, ``out`` the neuron's input and output ``[T, B, N]``; ``Z``,
    ``A`` the twin's pre-activation and activation ``[Tt, B, N]`` (A None: the clamp of Z). The running
    sums ``S = sum_{tau<=t} x``, ``C = sum_{tau<=t} out`` give ``z = S/t``, ``u = S/theta``, ``r = C/t``."""
    inv_t = 1.0 / step_counts(x.shape[0], x)
    S = x.cumsum(0)
    return step_sums(S * inv_t, S * (1.0 / theta), out.cumsum(0) * inv_t, twin_activation(Z, A, theta), theta,
                     out != 0)


def isolated_sums(Z: torch.Tensor, A: torch.Tensor | None, theta: torch.Tensor, out_iso: torch.Tensor) -> torch.Tensor:
    """`step_sums` of the layer fed the twin's input (isolated mode): ``out_iso [T, B, N]`` is the neuron's
    output on an input whose running mean is the twin's ``Z`` (`qnoise.probe.kernel.isolated_input`), so the
    layer's mean input is Z itself: ``z = Z``, ``u = t Z / theta``."""
    t = step_counts(out_iso.shape[0], out_iso)
    z = Z.expand_as(out_iso)
    return step_sums(z, t * z * (1.0 / theta), out_iso.cumsum(0) * (1.0 / t), twin_activation(Z, A, theta), theta,
                     out_iso != 0)


def reference_sums(Z: torch.Tensor, A: torch.Tensor | None, theta: torch.Tensor) -> torch.Tensor:
    """``[Tt]`` (float64): the sum of ``A^2`` over each twin step of ``[Tt, B, N]``."""
    A = twin_activation(Z, A, theta)
    return (A * A).sum(tuple(range(1, A.dim())), dtype=torch.float64)


def complete_stats(sums: torch.Tensor, ref2: torch.Tensor) -> torch.Tensor:
    """The full `PROP_STATS` ``[T, 12]`` from the `SUMS` ``[T, 9]`` and the twin's sum of A^2 per step
    ``[T]``::

        total = quant + seq + prop                    (r - A = quant + seq + prop, summed)
        cross = (rate2 + ref2 - total2) / 2           (<r, A> from ||r - A||^2 = ||r||^2 - 2<r, A> + ||A||^2)
    """
    col = {n: sums[:, i] for i, n in enumerate(SUMS)}
    col["total"] = col["quant"] + col["seq"] + col["prop"]
    col["ref2"] = ref2
    col["cross"] = (col["rate2"] + col["ref2"] - col["total2"]) / 2
    return torch.stack([col[n] for n in PROP_STATS], dim=1)


def membrane_noise(x: torch.Tensor, membrane: torch.Tensor, spikes: torch.Tensor, theta: torch.Tensor,
                   beta: torch.Tensor | float, v_init: str, reset: str) -> torch.Tensor:
    """Per-step sums ``[T, 2]`` = (``sum v_pre^2``, ``sum (v_q - v_pre)^2``) of a neuron with a quantized
    membrane: ``v_q`` is the stored (quantized) membrane after charging, ``v_pre = beta v_prev + x`` the value
    the quantizer was given (same trajectory), from the neuron's trace (`qnoise.neurons.NeuronTrace`).
    """
    if v_init == "half":
        v0 = (theta / 2).expand_as(x[0])
    else:
        v0 = torch.zeros_like(x[0])
    post = membrane * (1 - spikes.abs()) if reset == "zero" else membrane - spikes * theta
    prev = torch.cat([v0.unsqueeze(0), post[:-1]])
    leaky = not (isinstance(beta, float) and beta == 1.0)
    pre = beta * prev + x if leaky else prev + x
    dims = tuple(range(1, x.dim()))
    return torch.stack([pre.double().pow(2).sum(dims), (membrane.double() - pre.double()).pow(2).sum(dims)], 1)
