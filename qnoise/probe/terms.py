"""The error terms of DESIGN.md ("Noise: what the probe measures"), as pure functions of whole tensors.

For spiking layer l after t steps (t = 1..T): ``r = r_l(t)`` the SNN rate, ``z = z_l(t)`` its mean input.

Against the ANN twin (its activation ``A = A_l``, its function ``a = a_l``, ``z_hat = f_l^q(A_{l-1})`` the
twin's own input through this layer's quantized weights)::

    r - A = [a(z_hat) - A] + [a(z) - a(z_hat)] + [Q_t(z) - a(z)] + [r - Q_t(z)]
          =     weight     +    propagated     +   quantization  +   sequential

``Q_t(z)`` is the neuron's own mean output after t steps of constant input z from its own initial state
(`best_rate`): ``(theta/t) clip(floor(t z/theta + 1/2), 0, t)`` for ``v[0] = theta/2``, the floor version
for ``v[0] = 0`` (reset by subtraction, float membrane), the neuron's dynamics for anything else
(`constant_input_rate`). A constant input therefore never shows sequential error. For the propagated
``z = S_t / t`` the closed form is taken from the neuron's own membrane (`membrane_count`), which is the same
number in exact arithmetic and the neuron's own count on a constant input in float arithmetic.

Against the float SNN (rate ``r_f``) with ``r_own`` the rate of this layer run at its own precision on the
float SNN's input spikes::

    r - r_f = [r_own - r_f] + [r - r_own] = own + propagated

Each term's share of the squared error is ``contrib_k = mean(e_k * e_total)``: these add up to the total
MSE (each term's own MSE does not).
"""

from __future__ import annotations

import torch

from ..neurons import IF, is_plain_if

ANN_TERMS = ("weight", "prop", "quant", "seq")
SNN_TERMS = ("own", "prop")
RATE_RULES = ("round", "floor", "dynamics")


def step_counts(T: int, like: torch.Tensor) -> torch.Tensor:
    """``t = 1..T`` as a ``[T, 1, ...]`` column that broadcasts against ``like [T, ...]`` (same dtype, device)."""
    return torch.arange(1, T + 1, dtype=like.dtype, device=like.device).view(T, *[1] * (like.dim() - 1))


def cumulative_mean(x: torch.Tensor) -> torch.Tensor:
    """``(1/t) sum_{tau<=t} x[tau]`` along dimension 0 of ``[T, ...]``, for t = 1..T, in the data's precision
    (a layer's rate or mean input, as the CPU kernels' float32 running sums take it); the twin's input, which
    must be a repeated frame exactly, is `qnoise.time_mean.running_mean` (float64)."""
    return x.cumsum(0) / step_counts(x.shape[0], x)


def rate_rule(neuron: IF) -> str:
    """How `best_rate` computes a neuron's ``Q_t``: ``"round"`` (IF, reset by subtraction, float membrane,
    ``v[0] = theta/2``), ``"floor"`` (the same with ``v[0] = 0``) or ``"dynamics"`` (anything else: reset to
    zero, a quantized membrane, a leak). A signed IF counts as IF: on a constant input it never emits a
    negative spike (its membrane stays >= 0 once it has fired)."""
    if is_plain_if(neuron) and neuron.reset == "subtract" and neuron.state_bits is None:
        return "round" if neuron.v_init == "half" else "floor"
    return "dynamics"


def membrane_count(x: torch.Tensor, out: torch.Tensor, theta: torch.Tensor, rule: str) -> torch.Tensor:
    """The closed-form count ``k_t`` of an IF neuron resetting by subtraction (rules ``"round"``/``"floor"``) from
    its own membrane: ``clip(C_t + floor(v_t / theta), 0, t)`` for each t = 1..T of ``x, out [T, ...]`` (its input
    and output; ``theta`` broadcasts against one step), ``C_t`` the net spikes so far and ``v_t`` the membrane
    after step t's reset, repeated here by the neuron's own operations ``v = (v + x) - out`` from ``v_0`` (0, or
    theta/2 for ``"round"``). Since ``v_t = v_0 + S_t - theta C_t`` it is `closed_form_count` of ``S_t / theta``
    in exact arithmetic; in float it is the neuron's own count on a constant input (S_t rounded in float32
    made the closed form one spike more than the neuron at ties, e.g. x = 0.7 at t = 5)."""
    v = theta / 2 if rule == "round" else torch.zeros_like(theta)
    v = v.expand_as(x[0]).to(x.dtype)
    counts = torch.cumsum(torch.sign(out), 0)
    k = torch.empty_like(x)
    for t in range(x.shape[0]):
        v = (v + x[t]) - out[t]
        k[t] = counts[t] + torch.floor(v / theta)
    return torch.minimum(k.clamp_min(0.0), step_counts(x.shape[0], x))


def closed_form_count(u: torch.Tensor, t: torch.Tensor | float, rule: str) -> torch.Tensor:
    """Spikes of an IF neuron after t steps of constant input z, with ``u = t z / theta``:
    ``clip(floor(u + 1/2), 0, t)`` (``"round"``) or ``clip(floor(u), 0, t)`` (``"floor"``)."""
    offset = 0.5 if rule == "round" else 0.0
    return torch.minimum(torch.floor(u + offset).clamp_min(0.0), torch.as_tensor(t, dtype=u.dtype,
                                                                                   device=u.device))


@torch.no_grad()
def constant_input_rate(neuron: IF, z: torch.Tensor, T: int) -> torch.Tensor:
    """``Q_t(z)`` by the neuron's own dynamics: for each t = 1..T, the mean of its output over t steps of the
    constant input ``z[t-1]`` (``z [T, B, ...]``), or of ``z[0]`` for every t when ``z`` has one step.
    Returns ``[T, B, ...]``. The neuron's ``forward`` is called directly (no hooks run)."""
    if z.shape[0] == 1:  # one constant input: a single run of T steps gives every t (the neuron is causal)
        return cumulative_mean(neuron.forward(z.expand(T, *z.shape[1:]).contiguous()))
    out = torch.empty_like(z)
    for t in range(1, T + 1):
        step = z[t - 1:t]
        out[t - 1] = neuron.forward(step.expand(t, *step.shape[1:]).contiguous()).mean(0)
    return out


def best_rate(neuron: IF, z: torch.Tensor, T: int, theta: torch.Tensor) -> torch.Tensor:
    """``Q_t(z)`` for t = 1..T (``z [T, B, ...]`` per t, or ``[1, B, ...]`` for every t) -> ``[T, B, ...]``;
    ``theta`` broadcasts against one step of z."""
    rule = rate_rule(neuron)
    if rule == "dynamics":
        return constant_input_rate(neuron, z, T)
    t = step_counts(T, z)
    return theta * closed_form_count(t * z / theta, t, rule) / t


def decompose_ann(rate: torch.Tensor, a_z: torch.Tensor, a_hat: torch.Tensor, ann: torch.Tensor,
                  q: torch.Tensor) -> dict[str, torch.Tensor]:
    """The four terms against the ANN twin, elementwise (module docstring), from ``rate = r``, ``a_z = a(z)``,
    ``a_hat = a(z_hat)``, ``ann = A`` and ``q = Q_t(z)``; all broadcast against each other."""
    return {"weight": a_hat - ann, "prop": a_z - a_hat, "quant": q - a_z, "seq": rate - q, "total": rate - ann}


def decompose_snn(rate: torch.Tensor, own: torch.Tensor, reference: torch.Tensor) -> dict[str, torch.Tensor]:
    """The two terms against the float SNN, elementwise: ``own = r_own - r_f``, ``prop = r - r_own``."""
    return {"own": own - reference, "prop": rate - own, "total": rate - reference}


def contributions(parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``e_k * e_total`` per term k (their means are the ``err_k_contrib``, which add up to the total MSE)."""
    return {k: v * parts["total"] for k, v in parts.items() if k != "total"}
