"""Running sums per timestep from which every per-layer metric follows, by torch operations over a layer.

The probe keeps only sums over samples and neurons, per layer and step (memory O(layers x T)). For terms
``K`` (`qnoise.probe.terms.ANN_TERMS` or ``SNN_TERMS``) the columns of one step are `columns(K)`::

    e_k                 sum of each term (their means add up to the total's mean)
    e_k2                sum of its square
    total2              sum of e_total^2 (e_total = r - reference)
    e_k_x               sum of e_k * e_total (their means add up to the total MSE)
    rate2               sum of r^2
    events              spikes (nonzero outputs) at this step

and separately ``ref2``, the sum of the reference's square per step. These functions are the definition
on whole tensors (``[T, B, N]``, computed in float64 so the sums do not depend on the thread count); the CPU
kernel (`qnoise.probe.cpu_kernel`) computes the ANN sums in one pass and is tested against them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .terms import (ANN_TERMS, SNN_TERMS, closed_form_count, contributions, decompose_ann, decompose_snn,
                    membrane_count, step_counts)


def columns(terms: tuple[str, ...]) -> tuple[str, ...]:
    """The per-step sums for these terms, in order (module docstring)."""
    return (*terms, *(f"{k}2" for k in terms), "total2", *(f"{k}_x" for k in terms), "rate2", "events")


ANN_SUMS = columns(ANN_TERMS)
SNN_SUMS = columns(SNN_TERMS)
# how the fused CPU kernel gets Q_t (closed forms, or given) and the isolated layer's output
Q_ROUND, Q_FLOOR, Q_GIVEN = 1, 2, 3
ISO_OFF, ISO_CLOSED, ISO_GIVEN = 0, 1, 2


def _total(v: torch.Tensor) -> torch.Tensor:
    return v.sum(tuple(range(1, v.dim())), dtype=torch.float64)


def step_sums(parts: dict[str, torch.Tensor], rate: torch.Tensor, fired: torch.Tensor,
              terms: tuple[str, ...]) -> torch.Tensor:
    """``[T, len(columns(terms))]`` float64 sums over all but the first dimension of the elementwise
    ``parts`` (each term and ``"total"``), the rate and the spikes."""
    contrib = contributions(parts)
    cols = [*(parts[k] for k in terms), *(parts[k] * parts[k] for k in terms), parts["total"] * parts["total"],
            *(contrib[k] for k in terms), rate * rate, fired]
    return torch.stack([_total(c.expand_as(rate)) for c in cols], dim=1)


def ann_sums(x: torch.Tensor, out: torch.Tensor, A: torch.Tensor, a_hat: torch.Tensor, theta: torch.Tensor,
             activation: Callable[[torch.Tensor], torch.Tensor], rule: str, q: torch.Tensor | None = None
             ) -> torch.Tensor:
    """The propagated ANN sums ``[T, len(ANN_SUMS)]`` of one layer.

    ``x``, ``out`` the neuron's input and output ``[T, B, N]``; ``A`` the twin's activation and ``a_hat =
    a(z_hat)`` (``[Tt, B, N]``, Tt = 1 or T); ``theta`` the threshold (0-d or ``[N]``); ``activation`` is
    ``a`` on ``[*, B, N]``; ``rule`` `qnoise.probe.terms.rate_rule`; ``q`` the given ``Q_t(z)`` for rule
    ``"dynamics"``. With running sums ``S``, ``C``: ``z = S/t``, ``r = C/t`` and, for the closed forms,
    ``Q_t = theta k_t / t`` with ``k_t`` `qnoise.probe.terms.membrane_count` (``floor(S/theta + c)`` taken from
    the neuron's own membrane).
    """
    t = step_counts(x.shape[0], x)
    S = x.cumsum(0)
    z, r = S / t, out.cumsum(0) / t
    if q is None:
        q = theta * membrane_count(x, out, theta, rule) / t
    return step_sums(decompose_ann(r, activation(z), a_hat, A, q), r, out != 0, ANN_TERMS)


def ann_isolated_sums(out_iso: torch.Tensor, z_hat: torch.Tensor, A: torch.Tensor, a_hat: torch.Tensor,
                      theta: torch.Tensor, rule: str, q: torch.Tensor | None = None) -> torch.Tensor:
    """The isolated ANN sums ``[T, len(ANN_SUMS)]``: the layer fed ``z_hat`` (its output ``out_iso [T, B, N]``
    on an input whose running mean is ``z_hat [Tt, B, N]``), so ``z = z_hat``, the propagated term is 0 and
    ``Q_t = Q_t(z_hat)``: on a constant ``z_hat`` (Tt = 1) the neuron's own mean output, by definition (so its
    sequential error is 0); for a cumulative twin (Tt = T) the closed form with ``u = t z_hat(t) / theta``; or
    ``q`` given."""
    t = step_counts(out_iso.shape[0], out_iso)
    r = out_iso.cumsum(0) / t
    if q is None:
        q = r if z_hat.shape[0] == 1 else theta * closed_form_count(t * z_hat / theta, t, rule) / t
    return step_sums(decompose_ann(r, a_hat, a_hat, A, q), r, out_iso != 0, ANN_TERMS)


def snn_sums(out: torch.Tensor, out_own: torch.Tensor, out_ref: torch.Tensor, isolated: bool = False) -> torch.Tensor:
    """Sums ``[T, len(SNN_SUMS)]`` against the float SNN: ``out`` the quantized layer's output, ``out_own``
    its output on the float SNN's input spikes, ``out_ref`` the float SNN's output (all ``[T, B, N]``).
    ``isolated``: the layer as fed the float SNN's spikes (its rate is ``r_own``; nothing is propagated)."""
    r_own, r_ref = torch.cumsum(out_own, 0), torch.cumsum(out_ref, 0)
    t = step_counts(out.shape[0], out)
    r_own, r_ref = r_own / t, r_ref / t
    if isolated:
        parts = decompose_snn(r_own, r_own, r_ref)
        return step_sums(parts, r_own, out_own != 0, SNN_TERMS)
    r = out.cumsum(0) / t
    return step_sums(decompose_snn(r, r_own, r_ref), r, out != 0, SNN_TERMS)


def square_sums(v: torch.Tensor) -> torch.Tensor:
    """``[Tt]`` float64: the sum of ``v^2`` over each step of ``[Tt, ...]``."""
    return _total(v * v)


def membrane_sums(x: torch.Tensor, membrane: torch.Tensor, spikes: torch.Tensor, theta: torch.Tensor, neuron
                  ) -> torch.Tensor:
    """Per-step sums ``[T, 2]`` = (``sum v_pre^2``, ``sum (v_q - v_pre)^2``) of a neuron with a quantized
    membrane: ``v_q`` is the stored (quantized) membrane after charging, ``v_pre = beta v_prev + x`` the value
    the quantizer was given (same trajectory), from the neuron's trace (`qnoise.neurons.NeuronTrace`);
    ``theta`` broadcasts against one step. A neuron with its own rule (`qnoise.neuron_kinds`) computes these
    sums itself (its ``membrane_sums`` method)."""
    own = getattr(neuron, "membrane_sums", None)
    if own is not None:
        return own(x, membrane, spikes, theta)
    v0 = (theta / 2).expand_as(x[0]) if neuron.v_init == "half" else torch.zeros_like(x[0])
    post = membrane * (1 - spikes.abs()) if neuron.reset == "zero" else membrane - spikes * theta
    prev = torch.cat([v0.unsqueeze(0), post[:-1]])
    beta = neuron.beta
    leaky = not (isinstance(beta, float) and beta == 1.0)
    pre = beta * prev + x if leaky else prev + x
    dims = tuple(range(1, x.dim()))
    return torch.stack([pre.double().pow(2).sum(dims), (membrane.double() - pre.double()).pow(2).sum(dims)], 1)
