"""The probe's sums for one neuron layer on the CPU: the numba kernels of `qnoise.probe.cpu_numba` on torch tensors.

`AnnSteps` and `SnnSteps` take a batch one timestep at a time (a step-major run feeds them each step while it
is fresh; `layer_sums` and `snn_sums`, the layer-major order, feed them ``x[t]`` in turn, so both orders give
the same numbers). `AnnSteps.neuron_step` also steps the neuron itself, in the same pass. `iso_sums` computes
what does not depend on the SNN's run (isolated mode, the weight term, the reference's square) for all steps
at once.
"""

from __future__ import annotations

import numpy as np
import torch

from ..neuron_step import kernel_threads
from ..neuron_add import warm_up as neuron_add_warm_up
from ..neuron_pool import warm_up as neuron_pool_warm_up
from ..neuron_step import warm_up as neuron_warm_up
from ..pooling import warm_up as pooling_warm_up
from .cpu_numba import (
    CHUNK,
    NS,
    NSNN,
    STEP_COLUMNS,
    _input_sums,
    _iso_sums,
    _neuron_first,
    _neuron_next,
    _prop_step,
    _snn_count_step,
    _snn_step,
    cache_checked,
    ensure_cache,
)
from .sums import ISO_CLOSED, ISO_GIVEN, ISO_OFF, Q_GIVEN, Q_ROUND

__all__ = ["CHUNK", "AnnSteps", "SnnSteps", "SpikeSteps", "input_sums", "iso_sums", "layer_sums", "snn_sums",
           "warm_up"]


def _real(dtype: torch.dtype):
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"the CPU kernel takes float32 or float64 tensors, got {dtype}")
    return np.float32 if dtype == torch.float32 else np.float64


def _arr(t: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    return t.detach().to(dtype).contiguous().numpy()


def _fanout(fanout: torch.Tensor | None, N: int) -> np.ndarray:
    """``fanout [N, M]`` as the kernels take it: ``[M, N]`` float64, as the counts of synaptic operations are
    summed (M = 0 for None)."""
    return _arr(fanout.T, torch.float64) if fanout is not None else np.zeros((0, N))


def count_dtype(T: int, real) -> type:
    """The smallest type that holds a net spike count in -T..T and converts to the data's float exactly."""
    return np.int8 if T < 128 else np.int16 if T < 32768 else real


def _jobs(B: int, N: int) -> int:
    return B * ((N + CHUNK - 1) // CHUNK)


def input_sums(x: torch.Tensor, fanout: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(binary [T, M], other [T, M])`` for the data ``x [T, B, N]``: per step the weights its nonzero values
    reach (``sum_i [x_i != 0] * fanout[i, s]``, float64), over the samples whose every value is 0, +1 or -1 (binary
    events) and over the others."""
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    real = _real(dtype)
    T, B = x.shape[:2]
    xs = x.detach().to(dtype).reshape(T, B, -1).contiguous().numpy()
    ensure_cache()
    with kernel_threads():
        ops, other = _input_sums(xs, _fanout(fanout, xs.shape[2]), real(0.0), real(1.0), True)
    per_sample = ops.reshape(B, -1, *ops.shape[1:]).sum(1)  # [B, T, M]: a sample's chunks are consecutive jobs
    binary = other.reshape(B, -1).sum(1) == 0
    return torch.from_numpy(per_sample[binary].sum(0)), torch.from_numpy(per_sample[~binary].sum(0))


class SpikeSteps:
    """A neuron layer's spikes and the synaptic operations they cause, a step at a time (the probe without a
    reference): `step` on each step's output ``[B, ...]`` in order, then `result`. A spike is a nonzero output;
    the counts are `_input_sums`' with one more row of ones in the fan-out (its sum is the spike count)."""

    def __init__(self, T: int, N: int, fanout: torch.Tensor | None) -> None:
        self.fan = np.concatenate([_fanout(fanout, N), np.ones((1, N))])
        self.counts = np.zeros((T, self.fan.shape[0]))
        self.t = 0
        ensure_cache()

    def step(self, out: torch.Tensor) -> None:
        dtype = out.dtype if out.dtype in (torch.float32, torch.float64) else torch.float32
        real = _real(dtype)
        o = out.detach().to(dtype).reshape(1, out.shape[0], -1).contiguous().numpy()
        with kernel_threads():
            self.counts[self.t] = _input_sums(o, self.fan, real(0.0), real(1.0), False)[0].sum(0)[0]
        self.t += 1

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(spikes [T], synops [T, M])``, float64: the nonzero outputs of each step over the batch, and the
        weights of each of the M weight layers they reach."""
        if self.t != self.counts.shape[0]:
            raise RuntimeError(f"{self.t} of {self.counts.shape[0]} steps were added")
        counts = torch.from_numpy(self.counts)
        return counts[:, -1], counts[:, :-1]


def spike_sums(out: torch.Tensor, fanout: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """`SpikeSteps` over ``out [T, B, ...]``: ``(spikes [T], synops [T, M])``, float64."""
    steps = SpikeSteps(out.shape[0], out[0, 0].numel(), fanout)
    for t in range(out.shape[0]):
        steps.step(out[t])
    return steps.result()


class AnnSteps:
    """The propagated ANN sums of one neuron layer over one batch, a step at a time.

    ``A, a_hat [Tt, B, N]`` the twin's activation and ``a(z_hat)`` (Tt = 1, or T for a cumulative twin; the same
    tensor when the twin's input is its own); ``theta, hi [N]`` the threshold and the activation's upper clip
    per element of a sample, ``lo`` and ``levels`` the rest of the activation rule; ``q_rule`` ``Q_ROUND`` /
    ``Q_FLOOR`` (closed forms) or ``Q_GIVEN`` (each `step` then passes ``Q_t(z)``); ``fanout [N, M]`` or None.
    Call `step` (or `neuron_step`) on each step in order, then `result`. Holds a running sum and a spike count
    per neuron (``[B, N]``), and for `step` with a closed form the neuron's membrane as its operations leave it
    (`qnoise.probe.cpu_numba._membrane`), nothing of size T but the sums.
    """

    def __init__(self, A: torch.Tensor, a_hat: torch.Tensor, theta: torch.Tensor, lo: float, hi: torch.Tensor,
                 levels: int, q_rule: int, T: int, fanout: torch.Tensor | None, dtype: torch.dtype) -> None:
        real = _real(dtype)
        self.dtype, self.T, self.q_rule = dtype, T, q_rule
        self.A = _arr(A, dtype)
        self.Ah = self.A if a_hat is A else _arr(a_hat, dtype)
        B, N = A.shape[1], A.shape[2]
        self.S, self.C = np.empty((B, N), real), np.empty((B, N), count_dtype(T, real))
        self.V = np.empty((B, N) if q_rule != Q_GIVEN else (B, 0), real)  # the shadow membrane (`step`)
        self.theta, self.hi = _arr(theta, dtype), _arr(hi, dtype)
        self.fan = _fanout(fanout, N)
        self.consts = (real(lo), real(levels), real(0.5 if q_rule == Q_ROUND else 0.0))  # v0: v_init / theta
        self.fusable = levels == 0 and q_rule != Q_GIVEN  # what `neuron_step` computes
        self.sums = np.zeros((T, _jobs(B, N), len(STEP_COLUMNS)))
        self.ops = np.zeros((T, _jobs(B, N), self.fan.shape[0]))
        self.t = 0
        self._fused_any = False  # `neuron_step` took a step: the shadow membrane was not kept
        ensure_cache()

    def _scale(self) -> np.ndarray:
        """``theta / t`` per neuron at this step (t = self.t + 1), the one factor of both rates (the kernels'
        `_rates`), computed here once so that every kernel multiplies by the same value."""
        real = _real(self.dtype)
        return self.theta * (real(1.0) / real(self.t + 1))

    def _twin(self) -> tuple[np.ndarray, np.ndarray]:
        k = min(self.t, self.A.shape[0] - 1)
        return self.A[k], self.Ah[k]

    def step(self, x: torch.Tensor, out: torch.Tensor, q: torch.Tensor | None = None) -> None:
        """Add step t's sums: ``x, out [B, N]`` the neuron's input and output (``q``: ``Q_t(z)`` for
        ``Q_GIVEN``)."""
        if self.q_rule == Q_GIVEN and q is None:
            raise ValueError("q_rule=Q_GIVEN needs Q_t(z) at every step")
        if self._fused_any and q is None:
            raise RuntimeError("a closed-form step after fused steps: the shadow membrane was not kept")
        t, real = self.t, _real(self.dtype)
        xs = _arr(x, self.dtype)
        lo, levels, v0 = self.consts
        with kernel_threads():
            _prop_step(xs, _arr(out, self.dtype), self.S, self.C, self.V, *self._twin(), self.theta, self.hi,
                       self._scale(), xs if q is None else _arr(q, self.dtype), lo, levels, v0, q is not None,
                       real(t + 1), t == 0, self.fan, real(0.0), real(0.5), real(1.0), self.sums[t], self.ops[t])
        self.t += 1

    def neuron_step(self, x: torch.Tensor, v: torch.Tensor, theta: torch.Tensor, v0) -> torch.Tensor:
        """The step of an unsigned IF layer (reset by subtraction, float membrane) and this step's sums in one
        pass (`qnoise.probe.cpu_numba._neuron_first` / ``_next``; needs `fusable`): ``x [B, N]`` the input,
        ``v [B, N]`` the membrane (updated; written at the first step, from ``v0 * theta``), ``theta [N]`` the
        neuron's threshold; returns its output ``[B, N]``."""
        t, real = self.t, _real(self.dtype)
        lo = self.consts[0]
        out = torch.empty_like(x)
        kernel = _neuron_first if t == 0 else _neuron_next
        self._fused_any = True
        with kernel_threads():
            kernel(x.numpy(), v.numpy(), out.numpy(), theta.numpy(), v0, self.S, self.C, *self._twin(), self.hi,
                   self._scale(), lo, real(t + 1), self.fan, real(0.0), real(1.0), self.sums[t], self.ops[t])
        self.t += 1
        return out

    def result(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(propagated [T, NS], synops [T, M])``, float64; ``weight [T, 2]`` the weight term's sums
        (`iso_sums`), which do not depend on the SNN."""
        if self.t != self.T:
            raise RuntimeError(f"{self.t} of {self.T} steps were added")
        prop = np.zeros((self.T, NS))
        prop[:, list(STEP_COLUMNS)] = self.sums.sum(1)
        prop[:, [0, 4]] = weight.numpy()
        return torch.from_numpy(prop), torch.from_numpy(self.ops.sum(1))


def iso_sums(z_hat: torch.Tensor, A: torch.Tensor, a_hat: torch.Tensor, theta: torch.Tensor, iso: int, q_rule: int,
             T: int, out_iso: torch.Tensor | None = None, q_iso: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(isolated [T, NS], weight [T, 2], reference [T])`` of one layer and batch from the reference alone
    (`qnoise.probe.cpu_numba._iso_sums`): ``z_hat, A, a_hat [Tt, B, N]``; ``iso`` ``ISO_OFF`` (zeros),
    ``ISO_CLOSED`` (Tt = 1, a closed-form ``q_rule``) or ``ISO_GIVEN`` with the neuron's output on the twin's
    input and ``Q_t(z_hat)`` (``[T, B, N]``); ``weight`` the sums of ``a(z_hat) - A`` and of its square for
    step t; ``reference[t]`` the sum of A^2 over the twin's step for step t."""
    dtype = A.dtype
    real = _real(dtype)
    if iso == ISO_GIVEN and (out_iso is None or q_iso is None):
        raise ValueError("iso=ISO_GIVEN needs the neuron's output on the twin's input and Q_t(z_hat)")
    if iso == ISO_CLOSED and (A.shape[0] != 1 or q_rule == Q_GIVEN):
        raise ValueError("iso=ISO_CLOSED needs a constant twin input (Tt = 1) and a closed-form q_rule")
    Tt, B, N = A.shape
    a = _arr(A, dtype)
    empty = np.zeros((1, 1, 1), real)
    jobs = _jobs(B, N)
    isol, weight, ref2 = np.zeros((jobs, T, NS)), np.zeros((jobs, T, 2)), np.zeros((jobs, Tt))
    ensure_cache()
    with kernel_threads():
        _iso_sums(_arr(z_hat, dtype) if iso == ISO_CLOSED else empty, a, a if a_hat is A else _arr(a_hat, dtype),
                  _arr(theta, dtype), empty if out_iso is None else _arr(out_iso, dtype),
                  empty if q_iso is None else _arr(q_iso, dtype), int(iso), real(0.5 if q_rule == Q_ROUND else 0.0),
                  T, real(0.0), real(1.0), isol, weight, ref2)
    steps = np.minimum(np.arange(T), Tt - 1)
    return torch.from_numpy(isol.sum(0)), torch.from_numpy(weight.sum(0)), torch.from_numpy(ref2.sum(0)[steps])


def layer_sums(x: torch.Tensor, out: torch.Tensor, A: torch.Tensor, z_hat: torch.Tensor, a_hat: torch.Tensor,
               theta: torch.Tensor, lo: float, hi: torch.Tensor, levels: int, q_rule: int,
               q: torch.Tensor | None = None,
               iso: int = ISO_OFF, out_iso: torch.Tensor | None = None, q_iso: torch.Tensor | None = None,
               fanout: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The per-step ANN sums of one neuron layer over a whole batch (the layer-major order): `AnnSteps` on
    each ``x[t]`` and `iso_sums`, the numbers a step-major run accumulates.

    Args:
        x, out: the neuron's input and output, ``[T, B, N]`` (CPU, float32 or float64).
        A, z_hat, a_hat: the twin's activation, its input through this layer's quantized weights and
            ``a(z_hat)``, ``[Tt, B, N]`` (Tt = 1, or T for a cumulative twin).
        theta: the threshold per element of a sample, ``[N]``.
        lo, hi, levels: the activation rule ``a`` (`qnoise.probe.activation.ActivationRule`; hi ``[N]``).
        q_rule, q: ``Q_ROUND`` / ``Q_FLOOR`` (closed forms) or ``Q_GIVEN`` with ``q = Q_t(z) [T, B, N]``.
        iso, out_iso, q_iso: ``ISO_OFF``, ``ISO_CLOSED`` (closed form on a constant z_hat: Tt = 1 and a
            closed-form q_rule) or ``ISO_GIVEN`` with the neuron's output on the twin's input and
            ``Q_t(z_hat)``, both ``[T, B, N]``.
        fanout: ``[N, M]``, the weights of each of M weight layers that a spike of each neuron reaches
            (`qnoise.probe.structure`); None: M = 0.

    Returns:
        ``propagated [T, NS]`` and ``isolated [T, NS]`` (zero when ``iso == ISO_OFF``), named by
        `qnoise.probe.sums.ANN_SUMS`; ``reference [T]``: the sum of A^2 over the twin's step for step t;
        ``synops [T, M]``: accumulates caused by the spikes of step t (a spike is a nonzero output, so
        negative spikes of signed neurons count). All float64.
    """
    _real(x.dtype)
    if q_rule == Q_GIVEN and q is None:
        raise ValueError("q_rule=Q_GIVEN needs Q_t(z) (q)")
    T = x.shape[0]
    isol, weight, ref2 = iso_sums(z_hat, A, a_hat, theta, iso, q_rule, T, out_iso, q_iso)
    steps = AnnSteps(A, a_hat, theta, lo, hi, levels, q_rule, T, fanout, x.dtype)
    for t in range(T):
        steps.step(x[t], out[t], None if q is None else q[t])
    prop, ops = steps.result(weight)
    return prop, isol, ref2, ops


class SnnSteps:
    """The sums against the float SNN of one neuron layer over one batch, a step at a time
    (`qnoise.probe.cpu_numba._snn_step`): call `step` on each step's ``out, out_own, out_ref [B, N]`` in order,
    then `result`. ``thetas``: the layer's and the float SNN's thresholds ``[N]`` when both are IF neurons
    (outputs ``theta * s``): the running sums are then spike counts (`_snn_count_step`)."""

    def __init__(self, B: int, N: int, T: int, fanout: torch.Tensor | None, dtype: torch.dtype,
                 thetas: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        real = _real(dtype)
        self.dtype, self.T = dtype, T
        self.thetas = None if thetas is None else tuple(_arr(th, dtype) for th in thetas)
        sums = real if thetas is None else count_dtype(T, real)
        self.C, self.Co, self.Cr = (np.empty((B, N), sums) for _ in range(3))
        self.fan = _fanout(fanout, N)
        jobs = _jobs(B, N)
        self.prop, self.isol = np.zeros((T, jobs, NSNN)), np.zeros((T, jobs, NSNN))
        self.ref2, self.ops = np.zeros((T, jobs)), np.zeros((T, jobs, self.fan.shape[0]))
        self.t = 0
        ensure_cache()

    def step(self, out: torch.Tensor, out_own: torch.Tensor, out_ref: torch.Tensor) -> None:
        t, real = self.t, _real(self.dtype)
        outs = (_arr(out, self.dtype), _arr(out_own, self.dtype), _arr(out_ref, self.dtype))
        with kernel_threads():
            if self.thetas is None:
                _snn_step(*outs, self.C, self.Co, self.Cr, t == 0, real(t + 1), self.fan, real(0.0), real(1.0),
                          self.prop[t], self.isol[t], self.ref2[t], self.ops[t])
            else:
                _snn_count_step(*outs, *self.thetas, self.C, self.Co, self.Cr, t == 0, real(t + 1), self.fan,
                                real(0.0), real(1.0), self.prop[t], self.isol[t], self.ref2[t], self.ops[t])
        self.t += 1

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(propagated [T, 9], isolated [T, 9], reference [T], synops [T, M])``, float64."""
        if self.t != self.T:
            raise RuntimeError(f"{self.t} of {self.T} steps were added")
        return tuple(torch.from_numpy(a.sum(1)) for a in (self.prop, self.isol, self.ref2, self.ops))


def snn_sums(out: torch.Tensor, out_own: torch.Tensor, out_ref: torch.Tensor, fanout: torch.Tensor | None = None,
             thetas: tuple[torch.Tensor, torch.Tensor] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sums against the float SNN of one layer (``[T, B, N]`` outputs of the quantized layer, of the layer
    on the float SNN's spikes, of the float SNN): ``propagated [T, 9]``, ``isolated [T, 9]`` (`SNN_SUMS`),
    ``reference [T]`` (sum of the float SNN's rate squared) and ``synops [T, M]``, float64; `SnnSteps` on each
    step, the numbers a step-major run accumulates."""
    dtype = out.dtype if out.dtype in (torch.float32, torch.float64) else torch.float32
    T, B, N = out.shape
    steps = SnnSteps(B, N, T, fanout, dtype, thetas)
    for t in range(T):
        steps.step(out[t], out_own[t], out_ref[t])
    return steps.result()


def warm_up() -> None:
    """Compile the kernels for float32 and float64 data now (numba keeps them in its on-disk cache, so later
    processes load them in about a second instead of compiling them); the neuron's inference kernels (alone,
    fused with the pooling after it or the addition before it) and the pooling's too.
    ``make setup`` runs this, and so does a process that finds the cache without them (`ensure_cache`)."""
    cache_checked()  # this is the compilation `ensure_cache` asks for
    for dtype in (torch.float32, torch.float64):
        real = _real(dtype)
        x = torch.zeros(2, 1, 3, dtype=dtype)
        one = torch.ones(3, dtype=dtype)
        fan = torch.ones(3, 1, dtype=torch.float64)
        layer_sums(x, x, x[:1], x[:1], x[:1], one, 0.0, one, 0, Q_ROUND, iso=ISO_CLOSED, fanout=fan)
        layer_sums(x, x, x, x, x, one, 0.0, one, 0, Q_GIVEN, q=x, iso=ISO_GIVEN, out_iso=x, q_iso=x, fanout=fan)
        steps = AnnSteps(x[:1], x[:1], one, 0.0, one, 0, Q_ROUND, 2, fan, dtype)
        v = torch.zeros(1, 3, dtype=dtype)
        for t in range(2):
            steps.neuron_step(x[t], v, one, real(0.5))
        snn_sums(x, x, x, fan)
        snn_sums(x, x, x, fan, (one, one))
        input_sums(x, fan)
    neuron_warm_up()
    neuron_pool_warm_up()
    neuron_add_warm_up()
    pooling_warm_up()
