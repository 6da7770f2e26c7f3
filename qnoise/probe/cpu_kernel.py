"""The probe's sums for one neuron layer in a single pass over its tensors, on the CPU (numba).

`qnoise.probe.functional` defines the sums with torch operations over whole ``[T, B, N]`` tensors (running
sums by ``cumsum``, a dozen temporaries of the layer's size). This kernel computes the same sums in one
pass. Each parallel job takes one sample and a chunk of at most ``CHUNK`` of its neurons, and walks the T
steps with the running sums held in chunk-sized scratch arrays (in cache), so memory traffic falls to one
read of the neuron's input and output (and of the twin's tensors): what the probe costs on a CPU.

For step t (1-based) and element i, with running sums ``S = sum_{tau<=t} x``, ``C = sum_{tau<=t} out``::

    z = S/t, r = C/t, q = (theta/t) clip(floor(S/theta + 1/2), 0, t), a = clamp(z, 0, theta)
    quant = q - a, seq = r - q, prop = a - A, total = r - A

and per step the kernel returns the sums over the batch and neurons of quant, seq, prop, their squares,
total^2, r^2 and the number of spikes (`qnoise.probe.functional.SUMS`), for the SNN as it ran (propagated
mode) and for the layer fed the twin's input (isolated mode, the modes of
`qnoise.probe.functional.isolated_mode`); the sum of A^2; and the synaptic operations the spikes cause,
``sum_i spike_i * fanout[i, s]`` for each weight layer s they reach. Each sum is accumulated in the
data's precision over one chunk, then in float64.
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np
import torch
from numba import njit, prange

from ..neurons import SIGNED_EPS
from .functional import ISO_DYNAMICS, ISO_FLOOR, ISO_GIVEN, ISO_ROUND

CHUNK = 8192  # neurons of one sample per parallel job: the job's scratch arrays stay in the core's L2 cache

_FASTMATH = {"reassoc", "nsz"}  # reassociation lets the sums vectorize; no other IEEE shortcut is taken


@contextlib.contextmanager
def _torch_threads():
    """Run numba's parallel loops on as many threads as torch uses (``torch.set_num_threads``), so a sweep
    worker given one core stays on one core. Numba's OpenMP layer shares torch's OpenMP runtime, and
    starting its thread pool (on first use) resets that runtime's thread count: torch's is restored."""
    n = torch.get_num_threads()
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


@njit(inline="always", fastmath=_FASTMATH)
def _clip(v, lo, hi):
    v = v if v > lo else lo
    return v if v < hi else hi


@njit(inline="always", fastmath=_FASTMATH)
def _best_rate(u, theta, inv_t, tf, zero, half):
    """``Q_t(z) = (theta/t) clip(floor(u + 1/2), 0, t)`` with ``u = t z / theta``: the best t-step rate."""
    return theta * inv_t * _clip(np.floor(u + half), zero, tf)


@njit(inline="always", fastmath=_FASTMATH)
def _add_terms(acc, r, q, a, ref, fired):
    """``acc`` (the nine sums of a chunk so far) plus one element's terms: rate r, best t-step rate q, clamped
    mean input a, the twin's activation ref, and its spikes at this step."""
    eq = q - a
    es = r - q
    ep = a - ref
    et = r - ref
    return (acc[0] + eq, acc[1] + es, acc[2] + ep, acc[3] + eq * eq, acc[4] + es * es, acc[5] + ep * ep,
            acc[6] + et * et, acc[7] + r * r, acc[8] + fired)


@njit(inline="always")
def _flush(acc, out):
    for i in range(9):
        out[i] += acc[i]


@njit(parallel=True, fastmath=_FASTMATH, error_model="numpy", boundscheck=False, cache=True)
def _layer_sums(x, o, Z, A, a_lo, a_hi, theta, inv_theta, fanout, iso, o_iso, beta, v_half, signed, reset_zero,
                eps, zero, half, one):
    T, B, N = x.shape
    Tt = Z.shape[0]
    M = fanout.shape[0]
    chunks = (N + CHUNK - 1) // CHUNK
    jobs = B * chunks
    prop = np.zeros((jobs, T, 9))
    isol = np.zeros((jobs, T, 9))
    ref2 = np.zeros((jobs, Tt))
    ops = np.zeros((jobs, T, M))
    for job in prange(jobs):
        b = job // chunks
        n0 = (job % chunks) * CHUNK
        n1 = min(N, n0 + CHUNK)
        m = n1 - n0
        th = theta[n0:n1]
        ith = inv_theta[n0:n1]
        S = np.zeros(m, dtype=x.dtype)  # running sum of the input
        C = np.zeros(m, dtype=x.dtype)  # running sum of the output
        G = np.empty(m, dtype=x.dtype)  # spikes at this step (1 where the output is nonzero)
        R = np.empty(m, dtype=x.dtype)  # the twin's activation A at this step
        V = th * half if v_half else np.zeros(m, dtype=x.dtype)  # isolated neuron: membrane
        Ci = np.zeros(m, dtype=x.dtype)  # isolated neuron: running sum of the output
        K = np.zeros(m, dtype=x.dtype)  # isolated neuron: spike count (net count of a signed neuron)
        F = np.empty(m, dtype=x.dtype)  # isolated neuron: spikes at this step
        tf = zero
        for t in range(T):
            k = min(t, Tt - 1)
            tf += one  # t + 1 in the data's precision (an int would promote float32 to float64)
            inv_t = one / tf
            Zk = Z[k, b, n0:n1]
            if t == k:  # a new twin step: its activation, and the sum of A^2
                Ak = A[k, b, n0:n1]
                a2 = zero
                for j in range(m):
                    a = _clip(Ak[j], a_lo, a_hi * th[j])
                    R[j] = a
                    a2 += a * a
                ref2[job, k] += a2
            # propagated: the SNN as it ran
            xt = x[t, b, n0:n1]
            ot = o[t, b, n0:n1]
            acc = (zero, zero, zero, zero, zero, zero, zero, zero, zero)
            for j in range(m):
                Sj = S[j] + xt[j]
                Cj = C[j] + ot[j]
                S[j] = Sj
                C[j] = Cj
                fired = zero + (ot[j] != zero)
                G[j] = fired
                q = _best_rate(Sj * ith[j], th[j], inv_t, tf, zero, half)  # t z / theta = S / theta
                acc = _add_terms(acc, Cj * inv_t, q, _clip(Sj * inv_t, zero, th[j]), R[j], fired)
            _flush(acc, prop[job, t])
            for s in range(M):  # synaptic operations: each spike reaches fanout[s, i] weights of layer s
                Fs = fanout[s, n0:n1]
                reached = zero
                for j in range(m):
                    reached += G[j] * Fs[j]
                ops[job, t, s] += reached
            if iso == 0:
                continue
            # isolated: the layer fed the twin's input, its mean input the twin's Z
            acc = (zero, zero, zero, zero, zero, zero, zero, zero, zero)
            if iso == ISO_ROUND or iso == ISO_FLOOR:  # the count of a plain IF neuron on constant input
                offset = half if iso == ISO_ROUND else zero  # v_init half: rounding; zero: truncation
                for j in range(m):
                    u = tf * Zk[j] * ith[j]
                    count = _clip(np.floor(u + offset), zero, tf)
                    fired = count - K[j]
                    K[j] = count
                    q = _best_rate(u, th[j], inv_t, tf, zero, half)
                    acc = _add_terms(acc, th[j] * inv_t * count, q, _clip(Zk[j], zero, th[j]), R[j], fired)
            else:  # the neuron runs: its output so far (Ci) and its spikes (F) first, then the sums
                if iso == ISO_DYNAMICS:  # IF/LIF dynamics on the input whose running mean is Z
                    Zp = Z[max(k - 1, 0), b, n0:n1]
                    c1 = one if (Tt == 1 or t == 0) else tf  # x_iso = t Z(t) - (t - 1) Z(t - 1)
                    c2 = zero if (Tt == 1 or t == 0) else tf - one
                    for j in range(m):
                        v = beta * V[j] + (c1 * Zk[j] - c2 * Zp[j])
                        s = zero + (v >= th[j])
                        s -= signed * (zero + (v <= -eps * th[j])) * (zero + (K[j] > zero))
                        K[j] += s
                        V[j] = v * (one - abs(s)) if reset_zero else v - s * th[j]
                        F[j] = abs(s)
                        Ci[j] += th[j] * s
                else:  # ISO_GIVEN: the neuron's own output on the twin's input
                    oit = o_iso[t, b, n0:n1]
                    for j in range(m):
                        F[j] = zero + (oit[j] != zero)
                        Ci[j] += oit[j]
                for j in range(m):
                    q = _best_rate(tf * Zk[j] * ith[j], th[j], inv_t, tf, zero, half)
                    acc = _add_terms(acc, Ci[j] * inv_t, q, _clip(Zk[j], zero, th[j]), R[j], F[j])
            _flush(acc, isol[job, t])
    return prop.sum(0), isol.sum(0), ref2.sum(0), ops.sum(0)


@njit(parallel=True, fastmath=_FASTMATH, error_model="numpy", boundscheck=False, cache=True)
def _input_sums(x, fanout, zero, one):
    T, B, N = x.shape
    M = fanout.shape[0]
    chunks = (N + CHUNK - 1) // CHUNK
    jobs = B * chunks
    ops = np.zeros((jobs, T, M))
    other = np.zeros(jobs)  # values outside {0, +1, -1}
    for job in prange(jobs):
        b = job // chunks
        n0 = (job % chunks) * CHUNK
        n1 = min(N, n0 + CHUNK)
        for t in range(T):
            xt = x[t, b, n0:n1]
            for s in range(M):
                Fs = fanout[s, n0:n1]
                acc = zero
                for j in range(n1 - n0):
                    acc += (zero + (xt[j] != zero)) * Fs[j]
                ops[job, t, s] += acc
            count = zero
            for j in range(n1 - n0):
                count += zero + ((xt[j] != zero) & (abs(xt[j]) != one))
            other[job] += count
    return ops.sum(0), other.sum() == 0


def input_sums(x: torch.Tensor, fanout: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``(ops [T, M], binary)`` for the data ``x [T, B, N]``: per step the weights its nonzero values reach
    (``sum_i [x_i != 0] * fanout[i, s]``, float64), and whether every value is 0, +1 or -1."""
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    real = np.float32 if dtype == torch.float32 else np.float64
    xs = x.detach().to(dtype).reshape(x.shape[0], x.shape[1], -1).contiguous().numpy()
    with _torch_threads():
        ops, binary = _input_sums(xs, fanout.T.to(dtype).contiguous().numpy(), real(0.0), real(1.0))
    return torch.from_numpy(ops), bool(binary)


def layer_sums(x: torch.Tensor, out: torch.Tensor, Z: torch.Tensor, A: torch.Tensor | None, theta: torch.Tensor,
               fanout: torch.Tensor | None = None, iso: int = 0, out_iso: torch.Tensor | None = None,
               beta: float = 1.0, v_half: bool = False, signed: bool = False, reset_zero: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The per-step sums of one neuron layer, propagated and isolated, and the synaptic operations of its spikes.

    Args:
        x, out: the neuron's input and output, ``[T, B, N]`` (CPU, float32 or float64).
        Z: the twin's pre-activation ``[Tt, B, N]`` (Tt = 1, or T for a cumulative twin).
        A: the twin's activation ``[Tt, B, N]``, or None for ``clamp(Z, 0, theta)``.
        theta: the threshold per element of a sample, ``[N]``.
        fanout: ``[N, M]``, the weights of each of M weight layers that a spike of each neuron reaches
            (`qnoise.probe.structure`); None: M = 0.
        iso: isolated mode (`qnoise.probe.functional.isolated_mode`); 0 computes no isolated sums.
        out_iso: for ``iso == ISO_GIVEN``, the neuron's output ``[T, B, N]`` on the twin's input.
        beta, v_half, signed, reset_zero: the neuron's dynamics, for ``iso == ISO_DYNAMICS`` (beta 1: IF).

    Returns:
        ``propagated [T, 9]`` and ``isolated [T, 9]`` (zero when ``iso == 0``), named by
        `qnoise.probe.functional.SUMS`;
        ``reference [T]``: the sum of A^2 over the twin's step for step t; ``synops [T, M]``:
        accumulates caused by the spikes of step t (a spike is a nonzero output, so negative spikes of
        signed neurons count). All float64.
    """
    dtype = x.dtype
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"the CPU kernel takes float32 or float64 tensors, got {dtype}")
    if iso == ISO_GIVEN and out_iso is None:
        raise ValueError("isolated mode ISO_GIVEN needs the neuron's output on the twin's input (out_iso)")
    real = np.float32 if dtype == torch.float32 else np.float64

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().to(dtype).contiguous().numpy()

    xs, os_, Zs, theta_np = arr(x), arr(out), arr(Z), arr(theta)
    if A is None:  # the reference is clamp(Z, 0, theta): clip Z between 0 and 1 * theta
        As, lo, hi = Zs, real(0.0), real(1.0)
    else:  # a given activation is used as it is
        As, lo, hi = arr(A), real(-np.inf), real(np.inf)
    fan = arr(fanout.T) if fanout is not None else np.zeros((0, x.shape[2]), real)
    oi = arr(out_iso) if iso == ISO_GIVEN else np.zeros((1, 1, 1), real)
    with _torch_threads():
        prop, isol, ref2, ops = _layer_sums(
            xs, os_, Zs, As, lo, hi, theta_np, (1.0 / theta_np).astype(real), fan, int(iso), oi, real(beta),
            bool(v_half), real(bool(signed)), bool(reset_zero), real(SIGNED_EPS), real(0.0), real(0.5), real(1.0))
    steps = np.minimum(np.arange(x.shape[0]), Z.shape[0] - 1)
    return torch.from_numpy(prop), torch.from_numpy(isol), torch.from_numpy(ref2[steps]), torch.from_numpy(ops)


def warm_up() -> None:
    """Compile the kernels for float32 data now (numba keeps them in its on-disk cache, so later processes
    load them in about a second instead of compiling for about 35 s). ``make setup`` runs this."""
    x = torch.zeros(2, 1, 3)
    layer_sums(x, x, x[:1], None, torch.ones(3), torch.ones(3, 1, dtype=torch.float64))
    input_sums(x, torch.ones(3, 1, dtype=torch.float64))
