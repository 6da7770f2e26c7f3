"""IF/LIF dynamics over ``[T, B, ...]`` as one autograd node with a hand-written backward (training speed).

Forward, per step t and neuron (the same float operations, in the same order, as the unrolled loop of
`qnoise.neurons.neuron_multistep`, so outputs are bit for bit the same)::

    h[t] = beta * v[t-1] + x[t]              v[-1] = 0 or theta / 2      (IF: h[t] = v[t-1] + x[t])
    s[t] = H(h[t] - theta)                   surrogate g[t] = g(h[t] - theta) in backward
    out[t] = theta * s[t]
    v[t] = h[t] - out[t]                     (reset to zero: v[t] = h[t] * (1 - s[t]))

Only ``h`` (one tensor the size of the input) is saved. Backward, with ``Go = dL/dout`` and
``Gv[t] = beta * Gh[t+1]`` (``Gv[T-1] = 0``), walks the steps in reverse::

    Gh[t] = theta g[t] Go[t] + Gv[t] C[t]    C = 1 - theta g                     (subtract)
                                             C = 1 - s - g h s                   (zero; d|s|/ds = s on {0, 1})
    dL/dx[t]   = Gh[t]
    dL/dtheta  = sum_t (Go - Gv)(s - theta g)                                    (subtract)
               = sum_t s Go - g (theta Go - h s Gv)                             (zero)
                 + beta Gh[0] / 2                                                (v[-1] = theta / 2)
    dL/dbeta   = sum_t v[t-1] Gh[t]

which is what autograd computes through the unrolled loop (spikes through the surrogate, the reset and the
output; tests/test_neurons.py compares the two). On the CPU both directions run in a numba kernel that walks
the T steps of a chunk of neurons with the state in cache, so each pass reads and writes every tensor once;
elsewhere (CUDA) the backward is a few whole-tensor torch operations and a T-step recurrence.
"""

from __future__ import annotations

import contextlib
import math

import numba
import numpy as np
import torch
from numba import njit, prange

from .neuron_step import job_span
from .surrogate import surrogate_grad

CHUNK = 4096  # neurons per parallel job: the job's state stays in the core's cache
KINDS = {"atan": 0, "sigmoid": 1, "rectangle": 2}


@contextlib.contextmanager
def _torch_threads():
    """Numba's parallel loops on as many threads as torch uses; torch's OpenMP thread count is restored
    (starting numba's pool resets the shared OpenMP runtime's count)."""
    n = torch.get_num_threads()
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


@njit(inline="always")
def _surrogate_row(u, kind, alpha, k, half_alpha, inv_alpha, g):
    """``g[j] = g(u[j])`` (`qnoise.surrogate.surrogate_grad`) in the data's precision; ``k = pi/2 * alpha``.
    One loop per kind, chosen outside the loop, so each vectorizes."""
    one = alpha * 0 + 1
    if kind == 0:
        for j in range(u.shape[0]):
            z = k * u[j]
            g[j] = half_alpha / (one + z * z)
    elif kind == 1:
        for j in range(u.shape[0]):
            e = one / (one + np.exp(-alpha * u[j]))
            g[j] = alpha * e * (one - e)
    else:
        for j in range(u.shape[0]):
            g[j] = inv_alpha if abs(u[j]) < half_alpha else u[j] * 0


@njit(inline="always")
def _charge_row(v, xt, th, beta, zero_reset, ht_, ot):
    """One step for a chunk of neurons: ``h = beta v + x`` into ``ht_``, ``out = theta H(h - theta)`` into
    ``ot`` and the reset of ``v``. The reset rule is chosen outside the loop, so each loop vectorizes."""
    if zero_reset:
        for j in range(v.shape[0]):
            ht = beta * v[j] + xt[j]
            fired = ht >= th[j]
            ht_[j] = ht
            ot[j] = th[j] if fired else th[j] * 0
            v[j] = ht * 0 if fired else ht
    else:
        for j in range(v.shape[0]):
            ht = beta * v[j] + xt[j]
            o = th[j] if ht >= th[j] else th[j] * 0
            ht_[j] = ht
            ot[j] = o
            v[j] = ht - o


@njit(inline="always")
def _initial(th, half):
    v = np.empty(th.shape[0], th.dtype)
    for j in range(th.shape[0]):
        v[j] = th[j] * 0.5 if half else th[j] * 0
    return v


@njit(parallel=True, cache=True)
def _forward(x, theta, beta, half, zero_reset, out):
    """``out [T, B, N]`` of the dynamics in the module docstring; ``theta [N]`` per neuron of a sample. IF
    passes ``beta = 1`` (``1 * v`` is exactly ``v``); no fast-math: the same IEEE operations as torch. Each
    job walks the T steps of one chunk of one sample's neurons through 1-D row views with the membrane in a
    chunk-sized scratch array (``h`` goes to a scratch row: only ``out`` is kept)."""
    steps, batch, n = x.shape
    chunks = (n + CHUNK - 1) // CHUNK
    for job in prange(batch * chunks):
        b, lo, hi = job_span(job, chunks, n, CHUNK)
        th = theta[lo:hi]
        v = _initial(th, half)
        scratch = np.empty(hi - lo, x.dtype)
        for t in range(steps):
            _charge_row(v, x[t, b, lo:hi], th, beta, zero_reset, scratch, out[t, b, lo:hi])


@njit(parallel=True, cache=True)
def _backward(x, go, theta, beta, half, zero_reset, need_beta, kind, alpha, k, half_alpha, inv_alpha,
              gx, gtheta, gbeta):
    """``gx [T, B, N]``; ``gtheta [B, N]`` and ``gbeta [B, N]``: each neuron's terms summed over t.

    Nothing but the input was saved: each job first re-runs its chunk's T forward steps (the same operations
    as `_forward`, so the same ``h`` and spikes) into a ``[T, chunk]`` scratch that stays in cache, then
    walks the steps in reverse."""
    steps, batch, n = x.shape
    one = beta * 0 + 1
    chunks = (n + CHUNK - 1) // CHUNK
    for job in prange(batch * chunks):
        b, lo, hi = job_span(job, chunks, n, CHUNK)
        m = hi - lo
        th = theta[lo:hi]
        hs = np.empty((steps, m), x.dtype)
        spare = np.empty(m, x.dtype)
        v = _initial(th, half)
        for t in range(steps):
            _charge_row(v, x[t, b, lo:hi], th, beta, zero_reset, hs[t], spare)
        nxt = np.zeros(m, x.dtype)  # Gh[t+1]
        dth = np.zeros(m, x.dtype)
        dbe = np.zeros(m, x.dtype)
        u = np.empty(m, x.dtype)
        g = np.empty(m, x.dtype)
        for t in range(steps - 1, -1, -1):
            ht_, got, gxt = hs[t], go[t, b, lo:hi], gx[t, b, lo:hi]
            for j in range(m):
                u[j] = ht_[j] - th[j]
            _surrogate_row(u, kind, alpha, k, half_alpha, inv_alpha, g)
            if zero_reset:
                for j in range(m):
                    s = one if u[j] >= 0 else one * 0
                    gv = beta * nxt[j]
                    gs = th[j] * got[j] - ht_[j] * s * gv
                    gh = gv * (one - s) + g[j] * gs
                    dth[j] += s * got[j] - g[j] * gs
                    gxt[j] = gh
                    nxt[j] = gh
            else:
                for j in range(m):
                    s = one if u[j] >= 0 else one * 0
                    gv = beta * nxt[j]
                    tg = th[j] * g[j]
                    gh = tg * got[j] + gv * (one - tg)
                    dth[j] += (got[j] - gv) * (s - tg)
                    gxt[j] = gh
                    nxt[j] = gh
            if need_beta:
                for j in range(m):
                    if t > 0:
                        hp = hs[t - 1, j]
                        if hp >= th[j]:
                            vp = hp * 0 if zero_reset else hp - th[j]
                        else:
                            vp = hp
                    else:
                        vp = th[j] * 0.5 if half else th[j] * 0
                    dbe[j] += vp * gxt[j]
        for j in range(m):
            gtheta[b, lo + j] = dth[j] + (beta * nxt[j] * 0.5 if half else dth[j] * 0)
            gbeta[b, lo + j] = dbe[j]


def _reduce(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sum ``grad`` (shaped like one step ``x[t]``, or ``[T, ...]`` with ``steps``) to a broadcast parameter."""
    return grad.sum().to(like.dtype) if like.dim() == 0 else grad.sum_to_size(like.shape).to(like.dtype)


def _backward_torch(h, go, theta, b, leaky, half, zero_reset, kind, alpha, need):
    """The same backward as `_backward` in whole-tensor torch operations (any device)."""
    g = surrogate_grad(h - theta, kind, alpha)
    s = (h >= theta).to(h.dtype)
    tg = g * theta
    c = (1.0 - s).sub_(g * h * s) if zero_reset else 1.0 - tg
    if leaky:
        c = c * b
    gh = tg * go
    ghs, cs = gh.unbind(0), c.unbind(0)
    for t in range(h.shape[0] - 2, -1, -1):
        ghs[t].addcmul_(ghs[t + 1], cs[t])
    gv = torch.zeros_like(gh)
    gv[:-1] = gh[1:] * b
    per_theta = per_beta = None
    if need[1]:
        per_theta = s * go - g * (theta * go - h * s * gv) if zero_reset else (go - gv) * (s - tg)
        per_theta = per_theta.sum(0)
        if half:
            per_theta += gh[0] * (b / 2)
    if need[2]:
        v_prev = torch.empty_like(h)
        v_prev[0] = theta / 2 if half else 0.0
        v_prev[1:] = h[:-1] * (1.0 - s[:-1]) if zero_reset else h[:-1] - theta * s[:-1]
        per_beta = (v_prev * gh).sum(0)
    return gh, per_theta, per_beta


def _layout(x: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [T, B, ...]`` as a contiguous ``[T, B, N]`` and ``theta`` as one sample's ``[N]`` (``[T, 1, B*N]`` and
    ``[B*N]`` when theta varies over the batch)."""
    steps, batch = x.shape[:2]
    x = x.contiguous()
    th = theta.detach().to(x.dtype).expand(x.shape[1:])
    if batch > 1 and th.stride(0) != 0:
        return x.view(steps, 1, -1), th.contiguous().view(-1)
    return x.view(steps, batch, -1), th[0].contiguous().view(-1)


def _use_kernel(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


class _FusedNeuron(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, theta, beta, half, zero_reset, kind, alpha):
        leaky = beta is not None
        ctx.leaky, ctx.half, ctx.zero_reset, ctx.kind, ctx.alpha = leaky, half, zero_reset, kind, alpha
        b = beta if leaky else torch.ones((), dtype=x.dtype, device=x.device)
        ctx.kernel = _use_kernel(x)
        if ctx.kernel:
            x3, th = _layout(x.detach(), theta)
            out = torch.empty_like(x3)
            with _torch_threads():
                _forward(x3.numpy(), th.numpy(), _scalar(b, x.dtype), half, zero_reset, out.numpy())
            ctx.save_for_backward(x3, th, theta, b)
            return out.view(x.shape)
        xs = x.unbind(0)
        h, out = torch.empty_like(x), torch.empty_like(x)
        hs, outs = h.unbind(0), out.unbind(0)
        v = (theta / 2).expand_as(xs[0]).to(x.dtype).clone() if half else torch.zeros_like(xs[0])
        for t in range(x.shape[0]):
            if leaky:
                torch.mul(beta, v, out=hs[t])
                hs[t].add_(xs[t])
            else:
                torch.add(v, xs[t], out=hs[t])
            fired = hs[t] >= theta
            torch.mul(fired, theta, out=outs[t])
            if zero_reset:
                v = hs[t].masked_fill(fired, 0.0)
            else:
                torch.sub(hs[t], outs[t], out=v)
        ctx.save_for_backward(h, theta, theta, b)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        saved, th, theta, b = ctx.saved_tensors  # kernel: the input [T, B, N] and theta per neuron [N]
        need = ctx.needs_input_grad[:3]                # torch: h [T, B, ...] and theta
        if ctx.kernel:
            go = grad_out.to(saved.dtype).contiguous().view(saved.shape)
            gx = torch.empty_like(saved)
            gtheta, gbeta = torch.empty_like(saved[0]), torch.empty_like(saved[0])  # [B, N]
            a = ctx.alpha
            consts = [_scalar(c, saved.dtype) for c in (a, math.pi / 2 * a, a / 2, 1 / a)]
            with _torch_threads():
                _backward(saved.numpy(), go.numpy(), th.numpy(), _scalar(b, saved.dtype), ctx.half, ctx.zero_reset,
                          bool(need[2] and ctx.leaky), KINDS[ctx.kind], *consts, gx.numpy(), gtheta.numpy(),
                          gbeta.numpy())
            gx = gx.view(grad_out.shape)
            per_theta, per_beta = gtheta.view(grad_out.shape[1:]), gbeta.view(grad_out.shape[1:])
        else:
            gx, per_theta, per_beta = _backward_torch(saved, grad_out, theta, b, ctx.leaky, ctx.half, ctx.zero_reset,
                                                      ctx.kind, ctx.alpha, need)
        grad_theta = _reduce(per_theta, theta) if need[1] else None
        grad_beta = _reduce(per_beta, b) if need[2] and ctx.leaky else None
        return (gx if need[0] else None), grad_theta, grad_beta, None, None, None, None


def _scalar(value, dtype: torch.dtype):
    """A Python number or 0-dim tensor as a numpy scalar of the data's precision (float32 stays float32)."""
    v = float(value.detach()) if torch.is_tensor(value) else float(value)
    return np.float32(v) if dtype == torch.float32 else np.float64(v)


def fused_neuron(x: torch.Tensor, theta: torch.Tensor | float, beta: torch.Tensor | float | None,
                 v_init: str, reset: str, surrogate: str, alpha: float) -> torch.Tensor:
    """``out [T, B, ...]`` of unsigned IF (``beta=None``) or LIF dynamics, differentiable in x, theta and beta."""
    if not torch.is_tensor(theta):
        theta = torch.tensor(float(theta), dtype=x.dtype, device=x.device)
    if beta is not None and not torch.is_tensor(beta):
        beta = torch.tensor(float(beta), dtype=x.dtype, device=x.device)
    if beta is not None and beta.dim() != 0:
        raise ValueError(f"fused_neuron takes a scalar beta, got shape {tuple(beta.shape)}")
    return _FusedNeuron.apply(x, theta, beta, v_init == "half", reset == "zero", surrogate, float(alpha))


def warm_up() -> None:
    """Compile the float32 kernels now (numba caches them on disk for later processes)."""
    x = torch.zeros(2, 1, 3, requires_grad=True)
    fused_neuron(x, torch.tensor(1.0), None, "zero", "subtract", "atan", 2.0).sum().backward()


__all__ = ["fused_neuron", "warm_up"]
