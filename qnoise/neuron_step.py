"""One timestep of a layer of IF/LIF neurons at inference, for step-major runs (`qnoise.stepping`).

`qnoise.neurons.neuron_step` is the rule. At inference (no autograd) an unsigned neuron with a float membrane
advances its state in place by the rule's floating-point operations in the rule's order, so its outputs equal
the rule's bit for bit (tests/test_stepping.py holds them to `qnoise.neurons.neuron_multistep`)::

    h = beta * v + x              (IF: v + x; before the first step v = 0, or theta/2 for v_init="half")
    out = theta if h >= theta else 0
    v = h - out                   (reset to zero: v = 0 where it fired, else h)

On the CPU, for float32 and float64 data, a numba kernel does this in one pass per step over the layer: it reads
x and v and writes v and out (each parallel job one chunk of one sample's neurons; no fast-math, so the same
IEEE operations as torch). Elsewhere (a GPU, other dtypes) the same in-place torch operations as the
layer-major path. Signed neurons and quantized membranes step by the rule itself.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numba
import numpy as np
import torch
from numba import njit, prange

CHUNK = 4096  # neurons of one sample per parallel job
SERIAL_BELOW = 1 << 15  # values per step under which one thread beats starting the parallel loop


@dataclass
class StepState:
    """What a neuron layer carries from one step to the next at inference: the membrane ``v`` after reset (and
    for a signed neuron the net spike count ``count``), plus what it read at the first step: ``theta`` and
    ``beta`` as used at every step, and, for the CPU kernel, the threshold per neuron of a sample ``flat``.
    ``t`` counts the steps taken."""

    v: torch.Tensor | None
    count: torch.Tensor | None
    theta: torch.Tensor
    beta: torch.Tensor | float
    flat: torch.Tensor | None = None
    t: int = 0
    scalars: tuple = ()  # the kernel's beta, initial membrane / theta and zero, in the data's precision
    fused: tuple | None = None  # a fused step's kernel arguments (`qnoise.neuron_pool`, `qnoise.neuron_add`)


@njit(inline="always")
def charge(v, x, th, beta, v0, first):
    """``h = beta * v + x`` for one neuron, ``v = theta * v0`` at the first step (``v0`` 0 or 1/2)."""
    return beta * (th * v0 if first else v) + x


@njit(inline="always")
def fire(h, th, zero, zero_reset):
    """``(out, v)`` after charging to ``h``: ``out = theta`` where ``h >= theta`` (else 0) and the membrane
    after reset, ``h - out`` (reset to zero: 0 where it fired). ``zero`` is a 0 in the data's precision (numba
    would compute ``th * 0`` in float64 for float32 data)."""
    fired = h >= th
    out = th if fired else zero
    if zero_reset:
        return out, (zero if fired else h)
    return out, h - out


@njit(inline="always")
def job_span(job, chunks, n, chunk):
    """``(sample, first, end)``: the neurons ``first:end`` of one sample that parallel job ``job`` takes, when
    each sample's ``n`` neurons are cut into ``chunks`` chunks of ``chunk``."""
    first = (job % chunks) * chunk
    return job // chunks, first, min(n, first + chunk)


@njit(inline="always")
def _advance_row(x, v, th, beta, v0, zero, zero_reset, first, out):
    """One step for a chunk of one sample's neurons (`charge` and `fire`, the rule's operations in its
    order). ``first`` and ``zero_reset`` are the same for the whole loop, so it vectorizes."""
    for j in range(x.shape[0]):
        out[j], v[j] = fire(charge(v[j], x[j], th[j], beta, v0, first), th[j], zero, zero_reset)


@njit(parallel=True, cache=True)
def _step_parallel(x, v, theta, beta, v0, zero, zero_reset, first, out):
    """``x, v, out [B, N]``, ``theta [N]``: one step of every neuron, a job per chunk of a sample."""
    batch, n = x.shape
    chunks = (n + CHUNK - 1) // CHUNK
    for job in prange(batch * chunks):
        b, lo, hi = job_span(job, chunks, n, CHUNK)
        _advance_row(x[b, lo:hi], v[b, lo:hi], theta[lo:hi], beta, v0, zero, zero_reset, first, out[b, lo:hi])


@njit(cache=True)
def _step_serial(x, v, theta, beta, v0, zero, zero_reset, first, out):
    """`_step_parallel` on one thread (small layers)."""
    for b in range(x.shape[0]):
        _advance_row(x[b], v[b], theta, beta, v0, zero, zero_reset, first, out[b])


@njit(parallel=True, cache=True)
def _run_parallel(x, theta, beta, v0, zero, zero_reset, out):
    """``x, out [T, B, N]``: all T steps of every neuron, a job per chunk of a sample with its membrane in a
    chunk-sized scratch array (the layer-major path at inference)."""
    steps, batch, n = x.shape
    chunks = (n + CHUNK - 1) // CHUNK
    for job in prange(batch * chunks):
        b, lo, hi = job_span(job, chunks, n, CHUNK)
        v = np.empty(hi - lo, x.dtype)
        for t in range(steps):
            _advance_row(x[t, b, lo:hi], v, theta[lo:hi], beta, v0, zero, zero_reset, t == 0, out[t, b, lo:hi])


def _scalar(value, dtype: torch.dtype):
    v = float(value.detach()) if torch.is_tensor(value) else float(value)
    return np.float32(v) if dtype == torch.float32 else np.float64(v)


def prepare_kernel(state: StepState, x: torch.Tensor, half: bool) -> torch.Tensor:
    """``x`` as the kernel takes it (``[B, N]``, contiguous); at the first step also the membrane (uninitialised:
    the kernel writes it) and the kernel's scalars."""
    xs = x.contiguous().view(x.shape[0], -1)
    if state.t == 0:
        state.v = torch.empty_like(xs)
        state.scalars = (_scalar(state.beta, x.dtype), _scalar(0.5 if half else 0.0, x.dtype), _scalar(0.0, x.dtype))
    return xs


def per_sample(theta: torch.Tensor | float, x: torch.Tensor) -> bool:
    """Whether ``theta`` is one value per neuron of a sample (it broadcasts against ``x [B, ...]`` without
    varying over the batch), as the kernels take it."""
    if not torch.is_tensor(theta) or theta.dim() < x.dim():
        return True
    return theta.dim() == x.dim() and theta.shape[0] == 1


def uses_kernel(x: torch.Tensor, signed: bool, state_bits: int | None) -> bool:
    """Whether one step of a neuron on ``x`` runs in the CPU kernel."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and not signed and state_bits is None


def plain_step(state: StepState, x: torch.Tensor, half: bool, zero_reset: bool) -> torch.Tensor:
    """One inference step of an unsigned neuron with a float membrane: ``out``, with ``state`` advanced in place.

    The CPU kernel when ``state.flat`` is set (`start`), else in-place torch operations (those of the
    layer-major path, `qnoise.neurons.neuron_multistep` without autograd)."""
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # row-major even for a channels-last x (the kernel's)
    if state.flat is not None:
        xs = prepare_kernel(state, x, half)
        first = state.t == 0
        if xs.numel() < SERIAL_BELOW:
            _step_serial(xs.numpy(), state.v.numpy(), state.flat.numpy(), *state.scalars, zero_reset, first,
                         out.view(xs.shape).numpy())
        else:
            with kernel_threads():
                _step_parallel(xs.numpy(), state.v.numpy(), state.flat.numpy(), *state.scalars, zero_reset, first,
                               out.view(xs.shape).numpy())
    else:
        v, theta = state.v, state.theta
        if not (isinstance(state.beta, float) and state.beta == 1.0):
            v.mul_(state.beta)
        v.add_(x)
        fired = v >= theta
        torch.mul(fired, theta, out=out)
        if zero_reset:
            v.masked_fill_(fired, 0.0)
        else:
            v.sub_(out)
    state.t += 1
    return out


def multistep_inference(x: torch.Tensor, theta: torch.Tensor | float, beta: torch.Tensor | float, v_init: str,
                        reset: str) -> torch.Tensor:
    """``out [T, B, ...]`` of an unsigned neuron with a float membrane over ``x [T, B, ...]`` (CPU, float32 or
    float64) by the kernel: all steps of a chunk of neurons with the membrane in cache."""
    T, B = x.shape[:2]
    xs = x.contiguous().view(T, B, -1)
    out = torch.empty_like(xs)
    flat = flat_threshold(theta, x[0])
    with kernel_threads():
        _run_parallel(xs.numpy(), flat.numpy(), _scalar(beta, x.dtype), _scalar(0.5 if v_init == "half" else 0.0,
                      x.dtype), _scalar(0.0, x.dtype), reset == "zero", out.numpy())
    return out.view(x.shape)


def flat_threshold(theta: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """The threshold (broadcasting against one step ``x [B, ...]``) as one value per neuron of a sample, in
    ``x``'s dtype, contiguous (``[N]``)."""
    th = torch.as_tensor(theta).detach().to(x.dtype)
    if th.dim() == x.dim():  # [1, ...]: the same for every sample
        th = th[0]
    return th.expand(x.shape[1:]).reshape(-1).contiguous()


@contextlib.contextmanager
def kernel_threads():
    """Numba's parallel loops on as many threads as torch uses inside the block (numba's setting is per calling
    thread); torch's own count is restored after (starting numba's OpenMP pool resets the runtime it shares
    with torch)."""
    n = torch.get_num_threads()
    want = max(1, min(n, numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != want:
        numba.set_num_threads(want)
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def warm_up() -> None:
    """Compile the kernels for float32 and float64 data now (numba caches them on disk)."""
    for dtype in (torch.float32, torch.float64):
        x = torch.zeros(2, 3, dtype=dtype)
        for fn in (_step_serial, _step_parallel):
            for first in (True, False):
                fn(x.numpy(), x.clone().numpy(), x[0].clone().numpy(), _scalar(1.0, dtype), _scalar(0.5, dtype),
                   _scalar(0.0, dtype), False, first, x.clone().numpy())
        multistep_inference(x.unsqueeze(0), torch.tensor(1.0), 1.0, "half", "subtract")
