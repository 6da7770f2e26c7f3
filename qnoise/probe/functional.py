"""Pure math of the probe: the error decomposition of DESIGN.md and the fused per-timestep statistics.

For spiking layer l with threshold theta, after t timesteps (t = 1..T)::

    r(t) = (1/t) sum_{tau<=t} out[tau]                  SNN rate
    z(t) = (1/t) sum_{tau<=t} x[tau]                    mean input (= f_l(r_{l-1}(t)) when f_l is affine)
    a(z) = clamp(z, 0, theta)                           the ANN twin's activation function
    Q_t(z) = (theta/t) clip(floor(t z/theta + 1/2), 0, t)   best t-step rate (`qnoise.quant.nearest_levels`)
    A                                                   the ANN twin's activation for the same sample

    r - A = [Q_t(z) - a(z)] + [r - Q_t(z)] + [a(z) - A]
          =   quantization  +  sequential  + propagated

`decompose` is the definition on whole tensors; `propagated_step` and `isolated_step` compute, for one
timestep, the running sums from which every per-layer metric follows (memory O(T) per layer, not
O(samples)); `complete_stats` fills in the sums that follow exactly from others. The tests check the sums
against `decompose`. `qnoise.probe.cpu_kernel` computes the same sums in one pass over a layer (on the CPU).
"""

from __future__ import annotations

import torch

from ..neurons import IF, LIF, SIGNED_EPS
from ..quant import nearest_levels

# running sums per layer and timestep, in this order (``2`` = sum of squares; ``ref`` = A; ``rate`` = r)
PROP_STATS = ("quant", "seq", "prop", "total", "quant2", "seq2", "prop2", "total2", "ref2", "rate2", "cross",
              "events")
ISO_STATS = PROP_STATS  # isolated mode: the same sums (its propagated error is a(Z) - A, 0 for a clamp twin)


def cumulative_mean(x: torch.Tensor) -> torch.Tensor:
    """``(1/t) sum_{tau<=t} x[tau]`` along dimension 0 of ``[T, ...]``, for t = 1..T."""
    steps = torch.arange(1, x.shape[0] + 1, dtype=x.dtype, device=x.device)
    return x.cumsum(0) / steps.view(-1, *([1] * (x.dim() - 1)))


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


def _sum(u: torch.Tensor) -> torch.Tensor:
    return u.sum(dtype=torch.float64)


# what `propagated_step` reduces per step; the rest of PROP_STATS follows from these (`complete_stats`)
KERNEL_PROP = ("quant", "seq", "prop", "quant2", "seq2", "prop2", "total2", "rate2")


ISO_OFF, ISO_DYNAMICS, ISO_GIVEN, ISO_FLOOR, ISO_ROUND = 0, 1, 2, 3, 4


def kernel_iso_names(iso: int, count_events: bool, given_ann: bool) -> tuple[str, ...]:
    """The isolated-mode sums `isolated_step` returns for isolated mode ``iso``: spike counts only when they
    cannot be derived (signed or per-channel neurons), the propagated part only for a reference whose
    activation is not the clamp; with the rounding closed form the sequential part vanishes."""
    if iso == ISO_ROUND:
        return ("quant", "quant2", "rate2")
    return (("quant", "seq", "quant2", "seq2", "total2", "rate2") + (("events",) if count_events else ())
            + (("prop", "prop2") if given_ann else ()))


def isolated_mode(neuron, static_twin: bool, clamp_twin: bool) -> int:
    """How the isolated layer is computed. A plain IF neuron (unsigned, reset by subtraction, float
    membrane, one threshold) fed the constant input Z of a static twin has the closed-form count
    ``clip(floor(t Z/theta + c), 0, t)`` after t steps (c = 1/2 for ``v_init="half"``, 0 for ``"zero"``:
    DESIGN.md's identity, proven in tests/test_neurons.py), so no dynamics need to run. Other IF/LIF
    neurons run their dynamics inside the kernel; any other neuron (quantized membrane, subclasses) runs
    its own forward."""
    if type(neuron) not in (IF, LIF) or neuron.state_bits is not None:
        return ISO_GIVEN
    plain = (type(neuron) is IF and not neuron.signed and neuron.reset == "subtract" and not neuron.per_channel)
    if plain and static_twin and clamp_twin:
        return ISO_ROUND if neuron.v_init == "half" else ISO_FLOOR
    return ISO_DYNAMICS


def propagated_step(x_t: torch.Tensor, o_t: torch.Tensor, S: torch.Tensor, C: torch.Tensor, Z_t: torch.Tensor,
                    A_t: torch.Tensor | None, theta: torch.Tensor, t: torch.Tensor):
    """One timestep of the probe for one neuron layer (propagated mode), tensors flattened to ``[B, N]``.

    Args:
        x_t, o_t: the neuron's input and output at step t.
        S, C: running sums of inputs and outputs over steps < t (updated and returned).
        Z_t: the ANN twin's pre-activation (input of its activation) for this step's reference.
        A_t: the twin's activation, or None for ``clamp(Z_t, 0, theta)``.
        theta: the threshold, a 0-d tensor or ``[N]`` (per element). ``t``: the step (1-based), 0-d.

    Returns:
        ``(S, C, sums)``: float64 sums over the batch and neurons named by `KERNEL_PROP`.
    """
    inv_t, inv_theta = 1.0 / t, 1.0 / theta  # the products below are those of `qnoise.probe.cpu_kernel`
    S = S + x_t
    C = C + o_t
    r = C * inv_t
    A = torch.minimum(Z_t.clamp_min(0.0), theta) if A_t is None else A_t
    q = theta * inv_t * torch.clamp(torch.floor(S * inv_theta + 0.5), min=0.0).minimum(t)  # t z/theta = S/theta
    a = torch.minimum((S * inv_t).clamp_min(0.0), theta)
    e_q, e_s, e_p, e_t = q - a, r - q, a - A, r - A
    sums = torch.stack([_sum(e_q), _sum(e_s), _sum(e_p), _sum(e_q * e_q), _sum(e_s * e_s), _sum(e_p * e_p),
                        _sum(e_t * e_t), _sum(r * r)])
    return S, C, sums


def reference_sums(Z_t: torch.Tensor, A_t: torch.Tensor | None, theta: torch.Tensor) -> torch.Tensor:
    """``[sum A^2, sum A]`` (float64) of the twin's activation ``A`` (``clamp(Z_t, 0, theta)`` when not given)
    over a ``[B, N]`` step."""
    A = torch.minimum(Z_t.clamp_min(0.0), theta) if A_t is None else A_t
    return torch.stack([_sum(A * A), _sum(A)])


def isolated_step(Z_t: torch.Tensor, A_t: torch.Tensor | None, theta: torch.Tensor, t: torch.Tensor, iso: int,
                  x_iso_t: torch.Tensor | None, o_iso_t: torch.Tensor | None, v: torch.Tensor | None,
                  Ci: torch.Tensor | None, cnt: torch.Tensor | None, beta: torch.Tensor, leaky: bool,
                  signed: bool, reset_zero: bool, count_events: bool):
    """One timestep of a neuron layer fed the twin's input (isolated mode), tensors flattened to ``[B, N]``.

    Args:
        Z_t, A_t, theta, t: as `propagated_step`.
        iso: how the isolated neuron is computed (`isolated_mode`): 1 its IF/LIF dynamics run here on
            ``x_iso_t`` with state ``v``, ``Ci`` (output sum) and ``cnt`` (net spike count, signed
            neurons); 2 ``o_iso_t`` is its output, computed by the neuron itself; 3 / 4 the closed-form
            count of a plain IF neuron on the constant input ``Z_t`` (``v_init`` zero / half).
        beta, leaky, signed, reset_zero: the neuron's dynamics (`qnoise.neurons.neuron_multistep`).
        count_events: count its spikes here (else `complete_stats` derives them).

    Returns:
        ``(v, Ci, cnt, sums)``: float64 sums named by `kernel_iso_names`.
    """
    inv_t = 1.0 / t
    u = t * Z_t * (1.0 / theta)  # t Z / theta
    A = torch.minimum(Z_t.clamp_min(0.0), theta) if A_t is None else A_t
    qi = theta * inv_t * torch.clamp(torch.floor(u + 0.5), min=0.0).minimum(t)
    if iso == ISO_ROUND:  # rate == Q_t(Z): no sequential error
        i_q = qi - A
        return v, Ci, cnt, torch.stack([_sum(i_q), _sum(i_q * i_q), _sum(qi * qi)])
    o_iso = None
    if iso == ISO_FLOOR:
        ri = theta * inv_t * torch.clamp(torch.floor(u), min=0.0).minimum(t)
    else:
        if iso == ISO_DYNAMICS:
            v = beta * v + x_iso_t if leaky else v + x_iso_t
            s = (v - theta >= 0).to(v.dtype)
            if signed:
                s = s - (-v - SIGNED_EPS * theta >= 0).to(v.dtype) * (cnt > 0).to(v.dtype)
                cnt = cnt + s
            v = v * (1 - s.abs()) if reset_zero else v - s * theta
            o_iso = theta * s
        else:
            o_iso = o_iso_t
        Ci = Ci + o_iso
        ri = Ci * inv_t
    ai = torch.minimum(Z_t.clamp_min(0.0), theta)  # the isolated layer's mean input is the twin's own
    i_q, i_s, i_t = qi - ai, ri - qi, ri - A
    parts = [_sum(i_q), _sum(i_s), _sum(i_q * i_q), _sum(i_s * i_s), _sum(i_t * i_t), _sum(ri * ri)]
    if count_events:
        parts.append(_sum((o_iso != 0).to(Z_t.dtype)))
    if A_t is not None:
        i_p = ai - A
        parts += [_sum(i_p), _sum(i_p * i_p)]
    return v, Ci, cnt, torch.stack(parts)


def complete_stats(kernel: torch.Tensor, names: tuple[str, ...], ref2: torch.Tensor,
                   events: torch.Tensor | None = None, ref_sum: torch.Tensor | None = None,
                   theta: float | None = None) -> torch.Tensor:
    """The full `PROP_STATS` ``[T, 12]`` from a kernel's ``[T, len(names)]`` sums and ``ref2 = sum A^2`` per
    step. The other sums follow from these::

        total = quant + seq + prop                    (r - A = quant + seq + prop, summed)
        cross = (rate2 + ref2 - total2) / 2           (<r, A> from ||r - A||^2 = ||r||^2 - 2<r, A> + ||A||^2)
        prop = prop2 = 0                              (isolated mode, clamp twin: a(Z) == A)
        seq = seq2 = 0, total2 = quant2               (isolated plain IF with v_init="half": r == Q_t(Z))
        events: given, or (unsigned neurons, one threshold) from the rate:
                spikes over steps 1..t = t * sum(r(t)) / theta, sum(r) = total + sum(A) = total + ref_sum
    """
    col = {n: kernel[:, i] for i, n in enumerate(names)}
    zero = torch.zeros_like(ref2)
    for name in ("seq", "seq2", "prop", "prop2"):  # absent: zero by construction
        col.setdefault(name, zero)
    col.setdefault("total2", col["quant2"])  # only quant is left
    col["total"] = col["quant"] + col["seq"] + col["prop"]
    col["ref2"] = ref2
    col["cross"] = (col["rate2"] + ref2 - col["total2"]) / 2
    if "events" not in col:
        if events is None:
            steps = torch.arange(1, len(ref2) + 1, dtype=ref2.dtype, device=ref2.device)
            cumulative = steps * (col["total"] + ref_sum) / theta
            events = torch.diff(cumulative, prepend=torch.zeros_like(cumulative[:1]))
        col["events"] = events
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
