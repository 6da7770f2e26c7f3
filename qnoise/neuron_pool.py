"""An IF/LIF layer's inference step fused with the average pooling that follows it (step-major runs).

In the reference CNN every neuron layer feeds a non-overlapping ``k x k`` average pooling (conv -> BN -> IF ->
pool, the usual SNN block). Stepped one after the other, the neuron writes its whole output (one value per
neuron) and the pooling reads it back; fused, each parallel job steps the ``k`` input rows of one output row
of one channel into a scratch block that stays in cache and pools them from there, so the layer's output is
never written: per step one read of x, one read and write of the membrane and a write of ``1/k^2`` of the
values.

Bit for bit the two calls' values (tests/test_neuron_pool.py): the neuron's own row step
(`qnoise.neuron_step._advance_row`, its rule's operations in its order), then the pooling's own row kernel
(`qnoise.pooling.pool_rows`: `window_mean`'s sum in its order, window rows, then columns within a row, from
the window's first element, divided once by ``k^2``). Rows below the last whole window still step (their
membrane is the neuron's state), only their output is dropped, as the pooling drops it.

`qnoise.stepping.forward` fuses a neuron with the pooling after it in a ``nn.Sequential`` network when
`fusable` says so: a plain `qnoise.neurons.IF` or LIF (unsigned, float membrane, no hooks), a `MultiStep` whose
body is one `qnoise.pooling.AvgPool2d` with non-overlapping square windows (no hooks), and at run time a
``[B, C, H, W]`` CPU step of at least ``SERIAL_BELOW`` values that the neuron's kernel takes.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
from torch import nn

from . import stepmode
from .layers import MultiStep
from .neuron_step import SERIAL_BELOW, _advance_row, kernel_threads, prepare_kernel
from .neurons import IF
from .pooling import AvgPool2d, divisor, pool_rows, window_size


@njit(parallel=True, cache=True)
def _step_pool(x, v, theta, beta, v0, zero, zero_reset, first, H, k, kk, out):
    """``x, v [B, C, H*W]``, ``theta [C, H*W]``: one neuron step, pooled into ``out [B, C, H//k, W//k]`` (``kk``:
    k^2 in the data's precision). A job per (sample, channel) steps the channel's plane into a scratch plane
    that stays in cache (one long loop, vectorized), then pools its rows; rows below the last window
    (H % k) step too, their output is dropped."""
    B, C, N = x.shape
    W = N // H
    for job in prange(B * C):
        b = job // C
        c = job % C
        plane = np.empty(N, x.dtype)
        _advance_row(x[b, c], v[b, c], theta[c], beta, v0, zero, zero_reset, first, plane)
        grid = plane.reshape((H, W))
        o = out[b, c]
        for i in range(o.shape[0]):
            pool_rows(grid[i * k:(i + 1) * k], k, kk, o[i])


def pool_of(module: nn.Module) -> int | None:
    """The window size ``k`` when ``module`` is a `MultiStep` whose body is (a ``Sequential`` of) one
    `qnoise.pooling.AvgPool2d` pooling non-overlapping ``k x k`` windows, without hooks; else None."""
    if type(module) is not MultiStep or module.mode != "loop":
        return None
    body = module.body
    if type(body) is nn.Sequential and len(body) == 1 and not (body._forward_hooks or body._forward_pre_hooks):
        body = body[0]
    if type(body) is not AvgPool2d:
        return None
    if any(m._forward_hooks or m._forward_pre_hooks for m in (module, body)):
        return None
    return window_size(body)


def plain_neuron(neuron: nn.Module) -> bool:
    """Whether ``neuron`` steps by `qnoise.neuron_step`'s kernel rule and may fuse with a neighbour: an `IF` or LIF
    with IF's own forward and step, unsigned, a float membrane, no hooks."""
    return (isinstance(neuron, IF) and type(neuron).forward is IF.forward and type(neuron).step is IF.step
            and not neuron.signed and neuron.state_bits is None
            and not (neuron._forward_hooks or neuron._forward_pre_hooks))


def fusable(neuron: nn.Module, pool: nn.Module) -> int | None:
    """``k`` when `neuron` followed by `pool` may step as one (module docstring; the run-time checks are
    `step_pooled`'s), else None."""
    return pool_of(pool) if plain_neuron(neuron) else None


def step_pooled(neuron: IF, pool: nn.Module, k: int, x: torch.Tensor) -> torch.Tensor:
    """``pool(neuron(x))`` for one step ``x [B, C, H, W]`` of a step-major run, the neuron's state advanced as
    its own step does; fused where the kernel applies (decided at the run's first step), else the two calls."""
    run = stepmode.current()
    state = run.states.get(neuron)
    if state is None:
        if (run.observers or x.dim() != 4 or x.numel() < SERIAL_BELOW or x.shape[-2] < k or x.shape[-1] < k):
            return pool(neuron(x))
        state = neuron._first_state(x)
        if state.flat is None:
            return pool(neuron(x))
        stepmode.SAMPLE_BYTES[neuron] = x[0].numel() * x.element_size()
        prepare_kernel(state, x, neuron.v_init == "half")  # the membrane and the kernel's scalars
        B, C, H, W = x.shape
        state.fused = (state.v.view(B, C, -1).numpy(), state.flat.view(C, -1).numpy(), *state.scalars,
                        neuron.reset == "zero", H, k, divisor(x, k), (B, C, H // k, W // k))
        run.states[neuron] = state
    elif state.fused is None:
        return pool(neuron(x))
    v, theta, beta, v0, zero, zero_reset, H, k, kk, shape = state.fused
    out = x.new_empty(shape)
    with kernel_threads():
        _step_pool(x.contiguous().view(shape[0], shape[1], -1).numpy(), v, theta, beta, v0, zero, zero_reset,
                   state.t == 0, H, k, kk, out.numpy())
    state.t += 1
    return out


def sequential_plan(model: nn.Sequential) -> list[tuple]:
    """``model``'s children as a run of one step calls them: ``(module,)`` alone, or ``(neuron, pool, k)`` for a
    fusable neuron and pooling pair (decided once per run, not at every step)."""
    mods, plan, i = list(model), [], 0
    while i < len(mods):
        k = fusable(mods[i], mods[i + 1]) if i + 1 < len(mods) else None
        plan.append((mods[i], mods[i + 1], k) if k is not None else (mods[i],))
        i += 2 if k is not None else 1
    return plan


def sequential_step(plan: list[tuple], x: torch.Tensor) -> torch.Tensor:
    """``nn.Sequential.forward`` for one step of a step-major run, by its `sequential_plan`: each fusable
    neuron and pooling pair as one `step_pooled` call."""
    for call in plan:
        x = step_pooled(*call, x) if len(call) == 3 else call[0](x)
    return x


def warm_up() -> None:
    """Compile the kernel for float32 and float64 data now (numba caches it on disk)."""
    for dtype in (torch.float32, torch.float64):
        x = torch.zeros(1, 1, 12, dtype=dtype).numpy()  # one 3 x 4 channel
        z = np.zeros((), x.dtype)[()]
        for first in (True, False):
            _step_pool(x, x.copy(), x[0].copy(), z + 1, z, z, False, first, 3, 2, z + 4,
                       np.zeros((1, 1, 1, 2), x.dtype))
