"""An IF/LIF layer's inference step fused with the residual addition before it (step-major runs).

A residual block ends in ``act2(conv2(...) + shortcut(x))`` (`qnoise.models.ResidualBlock`): stepped one after
the other, the addition writes its sum (one value per neuron) and the neuron reads it back. Fused, the neuron's
step charges with ``a + b`` directly::

    h = beta * v + (a + b)        (the addition first, in float, then the neuron's rule: `qnoise.neuron_step`)

so the sum is never written: per step the two inputs and the membrane are read, the membrane and the output
written. The same IEEE operations in the same order as the two calls, so the same values bit for bit
(tests/test_neuron_add.py).

Only where the neuron is plain (`qnoise.neuron_pool.plain_neuron`: unsigned, float membrane, no hooks), in a
step-major run without observers, on CPU steps of at least ``SERIAL_BELOW`` values of one shape and dtype that
the neuron's kernel takes; otherwise ``neuron(a + b)``.
"""

from __future__ import annotations

import torch
from numba import njit, prange

from . import stepmode
from .neuron_pool import plain_neuron
from .neuron_step import CHUNK, SERIAL_BELOW, charge, fire, job_span, kernel_threads, prepare_kernel
from .neurons import IF


@njit(parallel=True, cache=True)
def _step_sum(a, b, v, theta, beta, v0, zero, zero_reset, first, out):
    """``a, b, v, out [B, N]``, ``theta [N]``: one step of every neuron on the input ``a + b``, a job per chunk
    of a sample (`qnoise.neuron_step._step_parallel` with the addition in the loop)."""
    batch, n = a.shape
    chunks = (n + CHUNK - 1) // CHUNK
    for job in prange(batch * chunks):
        s, lo, hi = job_span(job, chunks, n, CHUNK)
        ar, br, vr, th, o = a[s, lo:hi], b[s, lo:hi], v[s, lo:hi], theta[lo:hi], out[s, lo:hi]
        for j in range(hi - lo):  # first and zero_reset are loop-invariant, as in `_advance_row`
            o[j], vr[j] = fire(charge(vr[j], ar[j] + br[j], th[j], beta, v0, first), th[j], zero, zero_reset)


def step_added(neuron: IF, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``neuron(a + b)``; in a step-major run one fused step where it applies (module docstring), decided at the
    run's first step."""
    run = stepmode.current()
    if run is None or run.fold:
        return neuron(a + b)
    state = run.states.get(neuron)
    if state is None:  # the run's first step decides
        if (not plain_neuron(neuron) or run.observers or a.shape != b.shape or a.dtype != b.dtype
                or a.device != b.device or a.dim() < 2 or a.numel() < SERIAL_BELOW):
            return neuron(a + b)
        state = neuron._first_state(a)
        if state.flat is None:
            return neuron(a + b)
        stepmode.SAMPLE_BYTES[neuron] = a[0].numel() * a.element_size()
        prepare_kernel(state, a, neuron.v_init == "half")  # the membrane and the kernel's scalars
        state.fused = (state.v.numpy(), state.flat.numpy(), *state.scalars, neuron.reset == "zero")
        run.states[neuron] = state
    elif state.fused is None:
        return neuron(a + b)
    out = a.new_empty(a.shape)  # contiguous, whatever a's layout
    shape = (a.shape[0], -1)
    v, theta, beta, v0, zero, zero_reset = state.fused
    with kernel_threads():
        _step_sum(a.contiguous().view(shape).numpy(), b.contiguous().view(shape).numpy(), v, theta, beta, v0, zero,
                  zero_reset, state.t == 0, out.view(shape).numpy())
    state.t += 1
    return out


def warm_up() -> None:
    """Compile the kernel for float32 and float64 data now (numba caches it on disk)."""
    for dtype in (torch.float32, torch.float64):
        x = torch.zeros(1, 3, dtype=dtype).numpy()
        z = x[0, 0]
        for first in (True, False):
            _step_sum(x, x, x.copy(), x[0].copy(), z + 1, z, z, False, first, x.copy())
