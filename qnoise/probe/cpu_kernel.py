"""The probe's ANN-twin sums for one neuron layer in a single pass over its tensors, on the CPU (numba).

`qnoise.probe.sums` defines the sums with torch operations over whole ``[T, B, N]`` tensors (running sums by
``cumsum``, a dozen temporaries of the layer's size). This kernel computes the same sums in one pass. Each
parallel job takes one sample and a chunk of at most ``CHUNK`` of its neurons, and walks the T steps with the
running sums held in chunk-sized scratch arrays (in cache), so memory traffic falls to one read of the
neuron's input and output and of the twin's tensors: what the probe costs on a CPU.

For step t (1-based) and element i, with running sums ``S = sum_{tau<=t} x``, ``C = sum_{tau<=t} out``::

    z = S/t, r = C/t, Q = (theta/t) clip(floor(S/theta + c), 0, t)   (c = 1/2 "round", 0 "floor"; or given)
    weight = a(z_hat) - A, prop = a(z) - a(z_hat), quant = Q - a(z), seq = r - Q, total = r - A

with ``a`` the twin's activation rule (`qnoise.probe.activation.ActivationRule`). Per step the kernel returns
the sums `qnoise.probe.sums.ANN_SUMS` for the SNN as it ran (propagated mode) and for the layer fed the
twin's input z_hat (isolated mode: in closed form for an IF neuron on a constant input, else from the
neuron's own output on that input, computed by its forward), the sum of A^2, and the synaptic operations
the spikes cause, ``sum_i spike_i * fanout[i, s]`` for each weight layer s they reach. The neuron's rule is
never re-implemented here: only the closed forms, which tests/test_neurons.py proves equal to the neuron.
Each sum is accumulated in the data's precision over one chunk, then in float64.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

import numba
import numpy as np
import torch
from numba import njit, prange

from .sums import ANN_SUMS, ISO_CLOSED, ISO_GIVEN, ISO_OFF, Q_GIVEN, Q_ROUND

CHUNK = 8192  # neurons of one sample per parallel job: the job's scratch arrays stay in the core's L2 cache
NS = len(ANN_SUMS)

_FASTMATH = {"reassoc", "nsz"}  # reassociation lets the sums vectorize; no other IEEE shortcut is taken
_PARALLEL = {"parallel": True, "fastmath": _FASTMATH, "error_model": "numpy", "boundscheck": False, "cache": True}


_KERNELS = ("_layer_sums", "_snn_sums", "_input_sums")
_DTYPES = (torch.float32, torch.float64)  # the signatures `warm_up` compiles
_cache_checked = False


def _ensure_cache() -> None:
    """Make this process load the kernels from numba's on-disk cache rather than compile them itself.

    Numba optimizes a ``parallel=True`` function it has just compiled differently from the same function
    loaded from its cache (numba issue 10617): with reassociated sums the two give results that differ in
    the last bits, so the first run after installation would not repeat. When the cache lacks a kernel's
    signatures, they are compiled in a child process (`warm_up`) that writes the cache, and this process
    then loads them like every later one. Checked once per process; any failure leaves numba to compile
    here as usual."""
    global _cache_checked
    if _cache_checked:
        return
    _cache_checked = True
    try:
        missing = any(len(globals()[k]._cache._cache_file._load_index()) < len(_DTYPES) for k in _KERNELS)
    except Exception:  # noqa: BLE001 - numba's private cache API, or no cache at all
        return
    if missing:
        subprocess.run([sys.executable, "-c", "from qnoise.probe.cpu_kernel import warm_up; warm_up()"],
                       check=False, capture_output=True)


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
def _activation(z, lo, hi, levels, zero, half, one):
    """``a(z)``: ``clip(z, lo, hi)``, or ``hi * floor(clip(z/hi, 0, 1) * n + 1/2) / n`` with n levels."""
    if levels > zero:
        return hi * (np.floor(_clip(z / hi, zero, one) * levels + half) / levels)
    return _clip(z, lo, hi)


@njit(inline="always", fastmath=_FASTMATH)
def _add_terms(acc, r, q, a_z, a_hat, ref, fired):
    """``acc`` (the sums of a chunk so far, `ANN_SUMS` order) plus one element's terms."""
    ew = a_hat - ref
    ep = a_z - a_hat
    eq = q - a_z
    es = r - q
    et = r - ref
    return (acc[0] + ew, acc[1] + ep, acc[2] + eq, acc[3] + es,
            acc[4] + ew * ew, acc[5] + ep * ep, acc[6] + eq * eq, acc[7] + es * es, acc[8] + et * et,
            acc[9] + ew * et, acc[10] + ep * et, acc[11] + eq * et, acc[12] + es * et,
            acc[13] + r * r, acc[14] + fired)


@njit(inline="always")
def _flush(acc, out):
    for i in range(len(acc)):
        out[i] += acc[i]


@njit(**_PARALLEL)
def _layer_sums(x, o, A, Zh, Ah, theta, lo, hi, levels, q_rule, Qp, iso, o_iso, Qi, fanout, zero, half, one):
    T, B, N = x.shape
    Tt = A.shape[0]
    M = fanout.shape[0]
    chunks = (N + CHUNK - 1) // CHUNK
    jobs = B * chunks
    prop = np.zeros((jobs, T, NS))
    isol = np.zeros((jobs, T, NS))
    ref2 = np.zeros((jobs, Tt))
    ops = np.zeros((jobs, T, M))
    offset = half if q_rule == Q_ROUND else zero
    for job in prange(jobs):
        b = job // chunks
        n0 = (job % chunks) * CHUNK
        n1 = min(N, n0 + CHUNK)
        m = n1 - n0
        th = theta[n0:n1]
        hh = hi[n0:n1]
        S = np.zeros(m, dtype=x.dtype)  # running sum of the input
        C = np.zeros(m, dtype=x.dtype)  # running sum of the output
        G = np.empty(m, dtype=x.dtype)  # spikes at this step (1 where the output is nonzero)
        K = np.zeros(m, dtype=x.dtype)  # isolated neuron: its count (closed form) or running sum of its output
        tf = zero
        for t in range(T):
            k = min(t, Tt - 1)
            tf += one  # t + 1 in the data's precision (an int would promote float32 to float64)
            inv_t = one / tf
            Ak = A[k, b, n0:n1]
            Ahk = Ah[k, b, n0:n1]
            if t == k:  # a new twin step: the sum of A^2
                a2 = zero
                for j in range(m):
                    a2 += Ak[j] * Ak[j]
                ref2[job, k] += a2
            # propagated: the SNN as it ran
            xt = x[t, b, n0:n1]
            ot = o[t, b, n0:n1]
            acc = (zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero)
            for j in range(m):
                Sj = S[j] + xt[j]
                Cj = C[j] + ot[j]
                S[j] = Sj
                C[j] = Cj
                fired = zero + (ot[j] != zero)
                G[j] = fired
                if q_rule == Q_GIVEN:
                    q = Qp[t, b, n0 + j]
                else:
                    q = th[j] * _clip(np.floor(Sj / th[j] + offset), zero, tf) * inv_t
                a_z = _activation(Sj * inv_t, lo, hh[j], levels, zero, half, one)
                acc = _add_terms(acc, Cj * inv_t, q, a_z, Ahk[j], Ak[j], fired)
            _flush(acc, prop[job, t])
            for s in range(M):  # synaptic operations: each spike reaches fanout[s, i] weights of layer s
                Fs = fanout[s, n0:n1]
                reached = zero
                for j in range(m):
                    reached += G[j] * Fs[j]
                ops[job, t, s] += reached
            if iso == ISO_OFF:
                continue
            # isolated: the layer fed the twin's input through its own weights, its mean input z_hat
            acc = (zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero)
            Zk = Zh[k, b, n0:n1]
            if iso == ISO_CLOSED:  # an IF neuron on the constant input z_hat: its count is the closed form
                for j in range(m):
                    count = _clip(np.floor(tf * Zk[j] / th[j] + offset), zero, tf)
                    fired = count - K[j]
                    K[j] = count
                    q = th[j] * count * inv_t
                    acc = _add_terms(acc, q, q, Ahk[j], Ahk[j], Ak[j], fired)
            else:  # ISO_GIVEN: the neuron's own output on the twin's input, and Q_t(z_hat)
                oit = o_iso[t, b, n0:n1]
                for j in range(m):
                    K[j] += oit[j]
                    fired = zero + (oit[j] != zero)
                    acc = _add_terms(acc, K[j] * inv_t, Qi[t, b, n0 + j], Ahk[j], Ahk[j], Ak[j], fired)
            _flush(acc, isol[job, t])
    return prop.sum(0), isol.sum(0), ref2.sum(0), ops.sum(0)


@njit(**_PARALLEL)
def _snn_sums(o, own, ref, fanout, zero, one):
    """Against the float SNN (`qnoise.probe.sums.SNN_SUMS`): with running sums of the quantized layer's output
    ``C``, of its output on the float SNN's spikes ``Co`` and of the float SNN's ``Cr``, per element
    ``own = Co/t - Cr/t``, ``prop = C/t - Co/t``, ``total = C/t - Cr/t``; isolated: the layer's rate is
    ``Co/t`` (own error only)."""
    T, B, N = o.shape
    M = fanout.shape[0]
    chunks = (N + CHUNK - 1) // CHUNK
    jobs = B * chunks
    prop = np.zeros((jobs, T, 9))
    isol = np.zeros((jobs, T, 9))
    ref2 = np.zeros((jobs, T))
    ops = np.zeros((jobs, T, M))
    for job in prange(jobs):
        b = job // chunks
        n0 = (job % chunks) * CHUNK
        n1 = min(N, n0 + CHUNK)
        m = n1 - n0
        C = np.zeros(m, dtype=o.dtype)
        Co = np.zeros(m, dtype=o.dtype)
        Cr = np.zeros(m, dtype=o.dtype)
        G = np.empty(m, dtype=o.dtype)
        tf = zero
        for t in range(T):
            tf += one
            inv_t = one / tf
            ot, wt, ft = o[t, b, n0:n1], own[t, b, n0:n1], ref[t, b, n0:n1]
            p0 = p1 = p2 = p3 = p4 = p5 = p6 = p7 = p8 = zero
            i0 = i2 = i7 = i8 = zero
            rr = zero
            for j in range(m):
                C[j] += ot[j]
                Co[j] += wt[j]
                Cr[j] += ft[j]
                r = C[j] * inv_t
                ro = Co[j] * inv_t
                rf = Cr[j] * inv_t
                e_own = ro - rf
                e_prop = r - ro
                e_t = r - rf
                fired = zero + (ot[j] != zero)
                G[j] = fired
                p0 += e_own
                p1 += e_prop
                p2 += e_own * e_own
                p3 += e_prop * e_prop
                p4 += e_t * e_t
                p5 += e_own * e_t
                p6 += e_prop * e_t
                p7 += r * r
                p8 += fired
                i0 += e_own
                i2 += e_own * e_own
                i7 += ro * ro
                i8 += zero + (wt[j] != zero)
                rr += rf * rf
            pr = prop[job, t]
            pr[0] += p0
            pr[1] += p1
            pr[2] += p2
            pr[3] += p3
            pr[4] += p4
            pr[5] += p5
            pr[6] += p6
            pr[7] += p7
            pr[8] += p8
            iso = isol[job, t]
            iso[0] += i0
            iso[2] += i2
            iso[4] += i2
            iso[5] += i2
            iso[7] += i7
            iso[8] += i8
            ref2[job, t] += rr
            for s in range(M):
                Fs = fanout[s, n0:n1]
                reached = zero
                for j in range(m):
                    reached += G[j] * Fs[j]
                ops[job, t, s] += reached
    return prop.sum(0), isol.sum(0), ref2.sum(0), ops.sum(0)


def snn_sums(out: torch.Tensor, out_own: torch.Tensor, out_ref: torch.Tensor, fanout: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sums against the float SNN of one layer (``[T, B, N]`` outputs of the quantized layer, of the layer
    on the float SNN's spikes, of the float SNN): ``propagated [T, 9]``, ``isolated [T, 9]`` (`SNN_SUMS`),
    ``reference [T]`` (sum of the float SNN's rate squared) and ``synops [T, M]``, float64."""
    dtype = out.dtype if out.dtype in (torch.float32, torch.float64) else torch.float32
    real = np.float32 if dtype == torch.float32 else np.float64

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().to(dtype).contiguous().numpy()

    fan = arr(fanout.T) if fanout is not None else np.zeros((0, out.shape[2]), real)
    _ensure_cache()
    with _torch_threads():
        prop, isol, ref2, ops = _snn_sums(arr(out), arr(out_own), arr(out_ref), fan, real(0.0), real(1.0))
    return torch.from_numpy(prop), torch.from_numpy(isol), torch.from_numpy(ref2), torch.from_numpy(ops)


@njit(**_PARALLEL)
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
    _ensure_cache()
    with _torch_threads():
        ops, binary = _input_sums(xs, fanout.T.to(dtype).contiguous().numpy(), real(0.0), real(1.0))
    return torch.from_numpy(ops), bool(binary)


def layer_sums(x: torch.Tensor, out: torch.Tensor, A: torch.Tensor, z_hat: torch.Tensor, a_hat: torch.Tensor,
               theta: torch.Tensor, lo: float, hi: torch.Tensor, levels: int, q_rule: int,
               q: torch.Tensor | None = None,
               iso: int = ISO_OFF, out_iso: torch.Tensor | None = None, q_iso: torch.Tensor | None = None,
               fanout: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The per-step ANN sums of one neuron layer, propagated and isolated, and the synaptic operations of its
    spikes.

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
    dtype = x.dtype
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"the CPU kernel takes float32 or float64 tensors, got {dtype}")
    if q_rule == Q_GIVEN and q is None:
        raise ValueError("q_rule=Q_GIVEN needs Q_t(z) (q)")
    if iso == ISO_GIVEN and (out_iso is None or q_iso is None):
        raise ValueError("iso=ISO_GIVEN needs the neuron's output on the twin's input and Q_t(z_hat)")
    if iso == ISO_CLOSED and (A.shape[0] != 1 or q_rule == Q_GIVEN):
        raise ValueError("iso=ISO_CLOSED needs a constant twin input (Tt = 1) and a closed-form q_rule")
    real = np.float32 if dtype == torch.float32 else np.float64
    empty = np.zeros((1, 1, 1), real)

    def arr(t: torch.Tensor | None) -> np.ndarray:
        return empty if t is None else t.detach().to(dtype).contiguous().numpy()

    fan = arr(fanout.T) if fanout is not None else np.zeros((0, x.shape[2]), real)
    _ensure_cache()
    with _torch_threads():
        prop, isol, ref2, ops = _layer_sums(
            arr(x), arr(out), arr(A), arr(z_hat), arr(a_hat), arr(theta), real(lo), arr(hi), real(levels),
            int(q_rule), arr(q), int(iso), arr(out_iso), arr(q_iso), fan, real(0.0), real(0.5), real(1.0))
    steps = np.minimum(np.arange(x.shape[0]), A.shape[0] - 1)
    return torch.from_numpy(prop), torch.from_numpy(isol), torch.from_numpy(ref2[steps]), torch.from_numpy(ops)


def warm_up() -> None:
    """Compile the kernels for float32 and float64 data now (numba keeps them in its on-disk cache, so later
    processes load them in about a second instead of compiling them). ``make setup`` runs this, and so does a
    process that finds the cache without them (`_ensure_cache`)."""
    global _cache_checked
    _cache_checked = True  # this is the compilation `_ensure_cache` asks for
    for dtype in _DTYPES:
        x = torch.zeros(2, 1, 3, dtype=dtype)
        one = torch.ones(3, dtype=dtype)
        fan = torch.ones(3, 1, dtype=torch.float64)
        layer_sums(x, x, x[:1], x[:1], x[:1], one, 0.0, one, 0, Q_ROUND, iso=ISO_CLOSED, fanout=fan)
        snn_sums(x, x, x, fan)
        input_sums(x, fan)
