"""The probe's numba kernels: one neuron layer's sums on the CPU, a timestep at a time (`qnoise.probe.cpu_kernel`
wraps them).

`qnoise.probe.sums` defines the sums with torch operations over whole ``[T, B, N]`` tensors. These kernels
compute the same sums one step at a time, with per element a running sum of the input ``S`` (float) and a net
spike count ``C`` (int8 / int16) kept in memory between steps, so that a step-major run (`qnoise.stepping`)
adds them while each step's tensors are fresh and keeps nothing of size T. Each parallel job takes one sample
and a chunk of at most ``CHUNK`` of its neurons; a chunk's sums are accumulated in the data's precision, then
in float64; synaptic operations (whole counts, exact only in float64 past 2^24) in float64 throughout.

For step t (1-based) and element i, with ``S = sum_{tau<=t} x``, ``C`` the net spikes so far::

    z = S/t, r = theta C / t, Q = (theta/t) clip(C + floor(v/theta), 0, t)   (or given)
    weight = a(z_hat) - A, prop = a(z) - a(z_hat), quant = Q - a(z), seq = r - Q, total = r - A

with ``v`` the neuron's membrane after this step's reset: an IF neuron resetting by subtraction has
``v = v0 + S - theta C``, so ``C + floor(v/theta) = floor(S/theta + v0/theta)``, DESIGN.md's closed form (c = 1/2
for v_init "half", 0 for "zero"), computed from the neuron's own float state: on a constant input it is the
neuron's own count, so the sequential error is exactly 0 (S rounded in float32 made ``floor(S/theta + 1/2)``
one more than the neuron's count at ties such as x = 0.7, t = 5). Where the neuron is not stepped by the kernel,
a shadow membrane ``v = (v + x) - out`` repeats its operations (`_membrane`).

with ``a`` the twin's activation rule (`qnoise.probe.activation.ActivationRule`); ``r = theta C / t`` because an
IF neuron's output is ``theta * s``, s in {-1, 0, 1} (only IF neurons have an ANN twin).

- `_prop_step`: one step's propagated sums (`qnoise.probe.sums.ANN_SUMS`) from the neuron's input and output,
  and the synaptic operations its spikes cause (``sum_i spike_i * fanout[i, s]`` per weight layer s reached);
  the columns of the weight term (``weight``, ``weight2``) do not depend on the SNN and come from `_iso_sums`;
- `_neuron_first` / `_neuron_next`: the same fused with the neuron's own step, for an unsigned IF layer with a
  float membrane in a step-major run: x, the output and the membrane are read once, by the neuron
  (`qnoise.neuron_step.charge` and `fire`: its rule, which tests/test_stepping.py holds to
  `qnoise.neurons.neuron_multistep`); two kernels so the first step's branches fold away;
- `_iso_sums`: what does not depend on the SNN's run, for all steps at once: the isolated sums (the layer fed
  the twin's input z_hat: closed form for an IF neuron on a constant input, else the neuron's own output on it,
  computed by its forward), the weight term's columns and the sum of A^2;
- `_snn_step`: one step's sums against the float SNN (`qnoise.probe.sums.SNN_SUMS`); `_snn_count_step` the
  same with spike counts for IF neurons;
- `_input_sums`: the data's synaptic operations per sample and whether each sample is binary; without the check,
  a layer's spikes and the operations they cause (`qnoise.probe.cpu_kernel.SpikeSteps`, no reference).

The neuron's rule is never re-implemented here: only the closed forms, which tests/test_neurons.py proves equal
to the neuron, and the neuron's own step functions.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch
from numba import njit, prange

from ..neuron_step import charge, fire, job_span
from .sums import ANN_SUMS, ISO_CLOSED, ISO_OFF, SNN_SUMS

CHUNK = 8192  # neurons of one sample per parallel job
NS = len(ANN_SUMS)
NSNN = len(SNN_SUMS)
STEP_COLUMNS = (1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)  # the ANN_SUMS a step kernel adds (not weight, weight2)
CLOSED_COLUMNS = (2, 6, 8, 9, 11, 13, 14)  # the isolated closed form's sums that are not 0 (besides the weight's)

# reassociation lets the sums vectorize; no other IEEE shortcut is taken. Not contraction: fusing a product into
# the subtraction after it (``fma(a, b, -c)``) is a choice the compiler makes per kernel, so the fused and the
# unfused step kernels rounded ``Q - a(z)`` differently (and ``a * b - c * d`` was not 0 where the products are
# equal); it cost nothing measurable (0.447 against 0.438 ns per neuron and step). Differences that must be
# exactly 0 for equal counts are taken from the counts (`_rates`, `_snn_rates`).
_FASTMATH = {"reassoc", "nsz"}
_PARALLEL = {"parallel": True, "fastmath": _FASTMATH, "error_model": "numpy", "boundscheck": False, "cache": True}

_KERNELS = ("_prop_step", "_neuron_first", "_neuron_next", "_iso_sums", "_snn_step", "_snn_count_step", "_input_sums")
_DTYPES = (torch.float32, torch.float64)  # the signatures `qnoise.probe.cpu_kernel.warm_up` compiles
_cache_checked = False


def ensure_cache() -> None:
    """Make this process load the kernels from numba's on-disk cache rather than compile them itself.

    Numba optimizes a ``parallel=True`` function it has just compiled differently from the same function
    loaded from its cache (numba issue 10617): with reassociated sums the two give results that differ in
    the last bits, so the first run after installation would not repeat. When the cache lacks a kernel's
    signatures, they are compiled in a child process (`qnoise.probe.cpu_kernel.warm_up`) that writes the cache,
    and this process then loads them like every later one. Checked once per process; any failure leaves numba
    to compile here as usual."""
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


def cache_checked() -> None:
    """Record that this process compiles the kernels itself (`warm_up`: no child process needed)."""
    global _cache_checked
    _cache_checked = True


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


@njit
def _membrane(start, x, out):
    """``(start + x) - out``: an IF neuron's membrane after charging by ``x`` and resetting by its output (reset by
    subtraction), the neuron's own two operations in its order: compiled without fast-math, so the kernels'
    reassociation cannot make it ``start + (x - out)``."""
    return (start + x) - out


@njit(inline="always", fastmath=_FASTMATH)
def _rates(scale, n, k):
    """``(r, q, r - q)`` for an IF layer's count ``n`` and closed-form count ``k`` at one step, ``scale = theta / t``
    (given per neuron and step, so that no kernel can reassociate it differently): the difference from the
    counts, ``scale (n - k)``, so equal counts give a sequential error of exactly 0 (``scale n - scale k`` under
    fast-math reassociation or a fused multiply-add need not)."""
    return scale * n, scale * k, scale * (n - k)


@njit(inline="always", fastmath=_FASTMATH)
def _snn_rates(scale, scale_ref, c, co, cr):
    """``(r, ro, rf, ro - rf, r - ro, r - rf)`` of IF counts ``c, co, cr`` (the layer's, on the float SNN's
    spikes, the float SNN's) with ``scale = theta / t`` and the float SNN's ``scale_ref``: differences from the
    counts (``scale (co - cr) + (scale - scale_ref) cr``), exactly 0 where counts and thresholds are equal (a
    model compared with itself showed own errors of 1e-9)."""
    shift = (scale - scale_ref) * cr
    return (scale * c, scale * co, scale_ref * cr, scale * (co - cr) + shift, scale * (c - co),
            scale * (c - cr) + shift)


@njit(inline="always", fastmath=_FASTMATH)
def _add_step(acc, r, q, es, a_z, a_hat, ref, fired):
    """``acc`` (a chunk's `STEP_COLUMNS` so far) plus one element's terms at one step; ``es = r - q`` computed by
    the caller from the counts (`_rates`)."""
    ew = a_hat - ref
    ep = a_z - a_hat
    eq = q - a_z
    et = r - ref
    return (acc[0] + ep, acc[1] + eq, acc[2] + es, acc[3] + ep * ep, acc[4] + eq * eq, acc[5] + es * es,
            acc[6] + et * et, acc[7] + ew * et, acc[8] + ep * et, acc[9] + eq * et, acc[10] + es * et,
            acc[11] + r * r, acc[12] + fired)


@njit(inline="always", fastmath=_FASTMATH)
def _add_terms(acc, r, q, a_z, a_hat, ref, fired):
    """``acc`` (a chunk's sums so far, `ANN_SUMS` order) plus one element's terms."""
    ew = a_hat - ref
    ep = a_z - a_hat
    eq = q - a_z
    es = r - q
    et = r - ref
    return (acc[0] + ew, acc[1] + ep, acc[2] + eq, acc[3] + es,
            acc[4] + ew * ew, acc[5] + ep * ep, acc[6] + eq * eq, acc[7] + es * es, acc[8] + et * et,
            acc[9] + ew * et, acc[10] + ep * et, acc[11] + eq * et, acc[12] + es * et,
            acc[13] + r * r, acc[14] + fired)


@njit(inline="always", fastmath=_FASTMATH)
def _add_closed(acc, q, a_hat, ref, fired):
    """``acc`` (`CLOSED_COLUMNS`) plus one element of the layer fed the constant z_hat: its rate is ``q = Q_t``
    and ``a(z) = a(z_hat)``, so prop = seq = 0 and quant = ``q - a(z_hat)``; only the sums that are not 0."""
    eq = q - a_hat
    et = q - ref
    return (acc[0] + eq, acc[1] + eq * eq, acc[2] + et * et, acc[3] + (a_hat - ref) * et, acc[4] + eq * et,
            acc[5] + q * q, acc[6] + fired)


@njit(inline="always")
def _flush(acc, out):
    for i in range(len(acc)):
        out[i] += acc[i]


@njit(inline="always", fastmath=_FASTMATH)
def _synops(G, fanout, n0, n1, ops):
    """``ops[s] += sum_i G_i fanout[s, n0 + i]``: the weights of layer s the chunk's spikes reach, in float64
    (``fanout`` float64: whole counts stay exact in any order up to 2^53; float32 would round above 2^24)."""
    for s in range(fanout.shape[0]):
        Fs = fanout[s, n0:n1]
        reached = 0.0
        for j in range(n1 - n0):
            reached += G[j] * Fs[j]
        ops[s] += reached


@njit(**_PARALLEL)
def _prop_step(x, o, S, C, V, A, Ah, theta, hi, scale, Q, lo, levels, v0, q_given, tf, first, fanout, zero, half,
               one, sums, ops):
    """One step t (``tf`` = t, 1-based, in the data's precision) of the propagated sums: ``x, o [B, N]`` the
    neuron's input and output at this step, ``S, C, V [B, N]`` the running sum, the net spike count and the
    shadow membrane (read unless ``first``, written; ``V`` from ``v0 * theta`` and unused when ``q_given``),
    ``A, Ah [B, N]`` the twin's activation and ``a(z_hat)`` for this step (often the same array), ``theta, hi
    [N]``, ``scale [N]`` = theta / t (`_rates`), ``Q [B, N]`` the given ``Q_t(z)`` when ``q_given``; adds
    `STEP_COLUMNS` to ``sums [jobs, 13]`` and the synaptic operations to ``ops [jobs, M]`` (float64)."""
    B, N = x.shape
    chunks = (N + CHUNK - 1) // CHUNK
    inv_t = one / tf
    for job in prange(B * chunks):
        b, n0, n1 = job_span(job, chunks, N, CHUNK)
        xt, ot, St, Ct, Vt = x[b, n0:n1], o[b, n0:n1], S[b, n0:n1], C[b, n0:n1], V[b, n0:n1]
        Ak, Ahk, Qk, th, hh, sc = A[b, n0:n1], Ah[b, n0:n1], Q[b, n0:n1], theta[n0:n1], hi[n0:n1], scale[n0:n1]
        G = np.empty(n1 - n0, dtype=x.dtype)  # spikes at this step (1 where the output is nonzero)
        acc = (zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero)
        for j in range(n1 - n0):
            Sj = xt[j] if first else St[j] + xt[j]
            oj = ot[j]
            n = (zero if first else Ct[j]) + ((zero + (oj > zero)) - (oj < zero))
            St[j] = Sj
            Ct[j] = n
            fired = zero + (oj != zero)
            G[j] = fired
            if q_given:
                r, q, es = sc[j] * n, Qk[j], sc[j] * n - Qk[j]
            else:
                vj = _membrane(th[j] * v0 if first else Vt[j], xt[j], oj)
                Vt[j] = vj
                r, q, es = _rates(sc[j], n, _clip(n + np.floor(vj / th[j]), zero, tf))
            a_z = _activation(Sj * inv_t, lo, hh[j], levels, zero, half, one)
            acc = _add_step(acc, r, q, es, a_z, Ahk[j], Ak[j], fired)
        _flush(acc, sums[job])
        _synops(G, fanout, n0, n1, ops[job])


@njit(inline="always", fastmath=_FASTMATH)
def _neuron_job(x, v, o, th, S, C, A, Ah, hh, sc, lo, tf, inv_t, v0, zero, one, first, G):
    """One chunk of a fused step (`_neuron_first` / `_neuron_next`): the neuron, then the sums; returns the
    chunk's `STEP_COLUMNS`."""
    acc = (zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero)
    for j in range(x.shape[0]):
        xj = x[j]
        tj = th[j]
        oj, vj = fire(charge(v[j], xj, tj, one, v0, first), tj, zero, False)
        v[j] = vj
        o[j] = oj
        Sj = xj if first else S[j] + xj
        n = (zero if first else C[j]) + (zero + (oj > zero))
        S[j] = Sj
        C[j] = n
        fired = zero + (oj != zero)
        G[j] = fired
        r, q, es = _rates(sc[j], n, _clip(n + np.floor(vj / tj), zero, tf))
        acc = _add_step(acc, r, q, es, _clip(Sj * inv_t, lo, hh[j]), Ah[j], A[j], fired)
    return acc


@njit(**_PARALLEL)
def _neuron_first(x, v, o, theta, v0, S, C, A, Ah, hi, scale, lo, tf, fanout, zero, one, sums, ops):
    """The first step of an unsigned IF layer (reset by subtraction, float membrane, v = theta * v0 before it)
    and of its propagated sums in one pass (closed-form ``Q_t``, the twin's activation a clamp ``[lo, hi]``):
    ``v, o [B, N]`` written from ``x [B, N]``; otherwise as `_prop_step`."""
    B, N = x.shape
    chunks = (N + CHUNK - 1) // CHUNK
    inv_t = one / tf
    for job in prange(B * chunks):
        b, n0, n1 = job_span(job, chunks, N, CHUNK)
        G = np.empty(n1 - n0, dtype=x.dtype)
        acc = _neuron_job(x[b, n0:n1], v[b, n0:n1], o[b, n0:n1], theta[n0:n1], S[b, n0:n1], C[b, n0:n1],
                          A[b, n0:n1], Ah[b, n0:n1], hi[n0:n1], scale[n0:n1], lo, tf, inv_t, v0, zero, one,
                          True, G)
        _flush(acc, sums[job])
        _synops(G, fanout, n0, n1, ops[job])


@njit(**_PARALLEL)
def _neuron_next(x, v, o, theta, v0, S, C, A, Ah, hi, scale, lo, tf, fanout, zero, one, sums, ops):
    """A later step of `_neuron_first`: the membrane ``v`` and the running sums are read and written."""
    B, N = x.shape
    chunks = (N + CHUNK - 1) // CHUNK
    inv_t = one / tf
    for job in prange(B * chunks):
        b, n0, n1 = job_span(job, chunks, N, CHUNK)
        G = np.empty(n1 - n0, dtype=x.dtype)
        acc = _neuron_job(x[b, n0:n1], v[b, n0:n1], o[b, n0:n1], theta[n0:n1], S[b, n0:n1], C[b, n0:n1],
                          A[b, n0:n1], Ah[b, n0:n1], hi[n0:n1], scale[n0:n1], lo, tf, inv_t, v0, zero, one,
                          False, G)
        _flush(acc, sums[job])
        _synops(G, fanout, n0, n1, ops[job])


@njit(**_PARALLEL)
def _iso_sums(Zh, A, Ah, theta, O, Q, iso, v0, T, zero, one, isol, weight, ref2):
    """What does not depend on the SNN's run, for all T steps: ``Zh, A, Ah [Tt, B, N]`` (z_hat, the twin's
    activation, ``a(z_hat)``). Adds to ``isol [jobs, T, NS]`` the isolated sums: the layer fed the constant z_hat
    (``iso == ISO_CLOSED``, Tt = 1: an IF neuron resetting by subtraction, stepped here by its own `charge` and
    `fire` from ``v0 * theta``; its mean output is ``Q_t(z_hat)`` by definition, so its sequential error is 0) or
    the given output ``O`` and ``Q_t(z_hat)`` ``Q`` (``ISO_GIVEN``, ``[T, B, N]``; ``ISO_OFF``: none); to
    ``weight [jobs, T, 2]`` the sums of the weight term ``a(z_hat) - A`` and of its square (the same in both
    modes); to ``ref2 [jobs, Tt]`` the sum of A^2."""
    Tt, B, N = A.shape
    chunks = (N + CHUNK - 1) // CHUNK
    for job in prange(B * chunks):
        b, n0, n1 = job_span(job, chunks, N, CHUNK)
        m = n1 - n0
        th = theta[n0:n1]
        K = np.zeros(m, dtype=A.dtype)  # the isolated neuron's count or running sum of its output
        Vi = np.zeros(m, dtype=A.dtype)  # ISO_CLOSED: its membrane after reset
        tf = zero
        w0 = w1 = zero
        for t in range(T):
            k = min(t, Tt - 1)
            tf += one  # t + 1 in the data's precision (an int would promote float32 to float64)
            inv_t = one / tf
            Ak, Ahk = A[k, b, n0:n1], Ah[k, b, n0:n1]
            if t == k:  # a new twin step: the sum of A^2 and the weight term
                a2 = w0 = w1 = zero
                for j in range(m):
                    a2 += Ak[j] * Ak[j]
                    ew = Ahk[j] - Ak[j]
                    w0 += ew
                    w1 += ew * ew
                ref2[job, k] += a2
            weight[job, t, 0] += w0
            weight[job, t, 1] += w1
            if iso == ISO_OFF:
                continue
            if iso == ISO_CLOSED:  # an IF neuron on the constant input z_hat, stepped by its own rule
                Zk = Zh[k, b, n0:n1]
                acc7 = (zero, zero, zero, zero, zero, zero, zero)
                for j in range(m):
                    spike, Vi[j] = fire(charge(Vi[j], Zk[j], th[j], one, v0, t == 0), th[j], zero, False)
                    fired = zero + (spike != zero)
                    K[j] += fired
                    acc7 = _add_closed(acc7, th[j] * K[j] * inv_t, Ahk[j], Ak[j], fired)
                out = isol[job, t]
                out[0] += w0
                out[4] += w1
                for i in range(7):
                    out[CLOSED_COLUMNS[i]] += acc7[i]
                continue
            acc = (zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero)
            Ot, Qt = O[t, b, n0:n1], Q[t, b, n0:n1]  # ISO_GIVEN: the neuron's output on z_hat, and Q_t(z_hat)
            for j in range(m):
                K[j] += Ot[j]
                fired = zero + (Ot[j] != zero)
                acc = _add_terms(acc, K[j] * inv_t, Qt[j], Ahk[j], Ahk[j], Ak[j], fired)
            _flush(acc, isol[job, t])


@njit(inline="always", fastmath=_FASTMATH)
def _add_snn(acc, r, ro, rf, e_own, e_prop, e_t, fired, fired_own):
    """``acc`` plus one element's terms against the float SNN: ``r, ro, rf`` the rates of the layer, of the layer
    on the float SNN's spikes and of the float SNN, and their differences ``e_own = ro - rf``, ``e_prop = r - ro``,
    ``e_t = r - rf`` (from the counts: `_snn_rates`); the propagated `SNN_SUMS` (9), then the isolated run's
    ``ro^2`` and spikes, then ``rf^2``."""
    return (acc[0] + e_own, acc[1] + e_prop, acc[2] + e_own * e_own, acc[3] + e_prop * e_prop, acc[4] + e_t * e_t,
            acc[5] + e_own * e_t, acc[6] + e_prop * e_t, acc[7] + r * r, acc[8] + fired, acc[9] + ro * ro,
            acc[10] + fired_own, acc[11] + rf * rf)


@njit(**_PARALLEL)
def _snn_step(o, own, ref, C, Co, Cr, first, tf, fanout, zero, one, prop, isol, ref2, ops):
    """One step against the float SNN (`qnoise.probe.sums.SNN_SUMS`): ``o, own, ref [B, N]`` the quantized
    layer's output, its output on the float SNN's spikes, the float SNN's; ``C, Co, Cr [B, N]`` their running
    sums. Per element ``own = Co/t - Cr/t``, ``prop = C/t - Co/t``, ``total = C/t - Cr/t``; isolated: the
    layer's rate is ``Co/t`` (own error only: its sums are the own term's). Adds to ``prop, isol [jobs,
    NSNN]``, ``ref2 [jobs]`` (the float SNN's rate squared) and ``ops [jobs, M]``."""
    B, N = o.shape
    chunks = (N + CHUNK - 1) // CHUNK
    inv_t = one / tf
    for job in prange(B * chunks):
        b, n0, n1 = job_span(job, chunks, N, CHUNK)
        ot, wt, ft = o[b, n0:n1], own[b, n0:n1], ref[b, n0:n1]
        Ct, Cot, Crt = C[b, n0:n1], Co[b, n0:n1], Cr[b, n0:n1]
        G = np.empty(n1 - n0, dtype=o.dtype)
        acc = (zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero)
        for j in range(n1 - n0):
            c = ot[j] if first else Ct[j] + ot[j]
            co = wt[j] if first else Cot[j] + wt[j]
            cr = ft[j] if first else Crt[j] + ft[j]
            Ct[j] = c
            Cot[j] = co
            Crt[j] = cr
            fired = zero + (ot[j] != zero)
            G[j] = fired
            acc = _add_snn(acc, c * inv_t, co * inv_t, cr * inv_t, (co - cr) * inv_t, (c - co) * inv_t,
                           (c - cr) * inv_t, fired, zero + (wt[j] != zero))
        pr = prop[job]
        for i in range(9):
            pr[i] += acc[i]
        iso = isol[job]
        iso[0] += acc[0]
        iso[2] += acc[2]
        iso[4] += acc[2]
        iso[5] += acc[2]
        iso[7] += acc[9]
        iso[8] += acc[10]
        ref2[job] += acc[11]
        _synops(G, fanout, n0, n1, ops[job])


@njit(**_PARALLEL)
def _snn_count_step(o, own, ref, theta, theta_ref, C, Co, Cr, first, tf, fanout, zero, one, prop, isol, ref2, ops):
    """`_snn_step` for IF neurons, whose outputs are ``theta * s`` (s in {-1, 0, 1}; ``theta [N]`` the layer's
    threshold, also its copy's on the float SNN's spikes, ``theta_ref [N]`` the float SNN's): the running sums
    are net spike counts (``C, Co, Cr [B, N]``, int8 / int16) and a rate is ``theta C / t``: a quarter of the
    memory traffic."""
    B, N = o.shape
    chunks = (N + CHUNK - 1) // CHUNK
    inv_t = one / tf
    for job in prange(B * chunks):
        b, n0, n1 = job_span(job, chunks, N, CHUNK)
        ot, wt, ft, th, thr = o[b, n0:n1], own[b, n0:n1], ref[b, n0:n1], theta[n0:n1], theta_ref[n0:n1]
        Ct, Cot, Crt = C[b, n0:n1], Co[b, n0:n1], Cr[b, n0:n1]
        G = np.empty(n1 - n0, dtype=o.dtype)
        acc = (zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero)
        for j in range(n1 - n0):
            c = (zero if first else Ct[j]) + ((zero + (ot[j] > zero)) - (ot[j] < zero))
            co = (zero if first else Cot[j]) + ((zero + (wt[j] > zero)) - (wt[j] < zero))
            cr = (zero if first else Crt[j]) + ((zero + (ft[j] > zero)) - (ft[j] < zero))
            Ct[j] = c
            Cot[j] = co
            Crt[j] = cr
            fired = zero + (ot[j] != zero)
            G[j] = fired
            r, ro, rf, e_own, e_prop, e_t = _snn_rates(th[j] * inv_t, thr[j] * inv_t, c, co, cr)
            acc = _add_snn(acc, r, ro, rf, e_own, e_prop, e_t, fired, zero + (wt[j] != zero))
        pr = prop[job]
        for i in range(9):
            pr[i] += acc[i]
        iso = isol[job]
        iso[0] += acc[0]
        iso[2] += acc[2]
        iso[4] += acc[2]
        iso[5] += acc[2]
        iso[7] += acc[9]
        iso[8] += acc[10]
        ref2[job] += acc[11]
        _synops(G, fanout, n0, n1, ops[job])


@njit(**_PARALLEL)
def _input_sums(x, fanout, zero, one, check):
    """``(ops [jobs, T, M], other [jobs])`` for ``x [T, B, N]``, per parallel job (`job_span`: one chunk of one
    sample): per step ``sum_i [x_i != 0] fanout[s, i]`` (`_synops`) and, when ``check``, how many values are not
    0, +1 or -1 (else 0)."""
    T, B, N = x.shape
    chunks = (N + CHUNK - 1) // CHUNK
    jobs = B * chunks
    ops = np.zeros((jobs, T, fanout.shape[0]))
    other = np.zeros(jobs)  # values outside {0, +1, -1}
    for job in prange(jobs):
        b, n0, n1 = job_span(job, chunks, N, CHUNK)
        G = np.empty(n1 - n0, dtype=x.dtype)  # 1 where x is nonzero
        for t in range(T):
            xt = x[t, b, n0:n1]
            for j in range(n1 - n0):
                G[j] = zero + (xt[j] != zero)
            _synops(G, fanout, n0, n1, ops[job, t])
            if check:
                count = zero
                for j in range(n1 - n0):
                    count += zero + ((xt[j] != zero) & (abs(xt[j]) != one))
                other[job] += count
    return ops, other
