"""Which implementation computes a neuron layer's sums: the fused CPU kernel, or the per-step functions.

`layer_sums` returns, for one neuron layer and batch, the per-step sums of `qnoise.probe.functional` in
propagated and isolated mode and the synaptic operations its spikes cause. Three implementations compute the same numbers:

- on the CPU, `qnoise.probe.cpu_kernel` (numba): one pass over the layer, several times faster;
- elsewhere (CUDA), the per-step functions fused by ``torch.compile`` (one kernel per step and mode);
- everywhere, the per-step functions run eagerly: the reference the others are tested against.

``compile="auto"`` uses a fused kernel for a layer when that kernel is already in use in this process (on
the CPU: any of its kernels; with ``torch.compile``: the same variant), or when the layer is big enough to
repay the compilation (``T * B * N >= COMPILE_MIN_ELEMENTS``; compiling takes seconds, cached on disk for
later processes). Small models stay eager and start instantly. If
compilation fails the probe warns once and stays eager. ``QNOISE_COMPILE=0`` / ``1`` in the environment
overrides ``"auto"``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch

from .functional import (
    ISO_DYNAMICS,
    ISO_GIVEN,
    KERNEL_PROP,
    isolated_step,
    kernel_iso_names,
    propagated_step,
    reference_sums,
)

STEPS = {"propagated": propagated_step, "isolated": isolated_step, "reference": reference_sums}

COMPILE_MIN_ELEMENTS = 1 << 22
_compiled: dict = {}
_ready: set = set()  # (implementation, variant) pairs that ran fused at least once (variant None: the CPU)
_failed: set = set()  # implementations whose compilation failed ("cpu", "torch")


@dataclass
class LayerSums:
    """One layer's sums for one batch, float64: ``propagated [T, len(propagated_names)]``, ``isolated [T, ...]``
    (None when not computed), ``reference [T, 2]`` (sum of A^2 and of A over the twin's step for step t)
    and ``synops [T, M]`` (accumulates the spikes of step t cause in each of the M weight layers they reach,
    summed over the batch)."""

    propagated: torch.Tensor
    propagated_names: tuple[str, ...]
    isolated: torch.Tensor | None
    isolated_names: tuple[str, ...]
    reference: torch.Tensor
    synops: torch.Tensor


def _want_fused(compile: bool | str, impl: str, elements: int, variant: tuple) -> bool:
    """Whether to use the fused implementation ``impl`` for a layer with ``elements = T * B * N`` values."""
    if compile not in (True, False, "auto"):
        raise ValueError(f"compile={compile!r}: expected True, False or 'auto'")
    if impl in _failed or compile is False:
        return False
    if compile is True:
        return True
    env = os.environ.get("QNOISE_COMPILE")
    if env is not None:
        return env not in ("0", "false", "False", "")
    return (impl, None if impl == "cpu" else variant) in _ready or elements >= COMPILE_MIN_ELEMENTS


def _warn_failed(impl: str, err: Exception) -> None:
    _failed.add(impl)
    warnings.warn(f"qnoise probe: the fused {impl} kernel failed to compile ({type(err).__name__}: "
                  f"{str(err)[:200]}); using the eager kernel", RuntimeWarning, stacklevel=3)


def run_step(kind: str, use_compiled: bool, variant: tuple, *args, **kwargs):
    """``STEPS[kind](*args, **kwargs)``, through ``torch.compile`` when asked and it works."""
    if use_compiled and "torch" not in _failed:
        try:
            if kind not in _compiled:
                _compiled[kind] = torch.compile(STEPS[kind], dynamic=True)
            out = _compiled[kind](*args, **kwargs)
            _ready.add(("torch", variant))
            return out
        except Exception as err:  # compilation problems vary by platform; eager always works
            _warn_failed("torch", err)
    return STEPS[kind](*args, **kwargs)


def input_synops(x: torch.Tensor, fanout: torch.Tensor, compile: bool | str = "auto") -> tuple[torch.Tensor, bool]:
    """``(ops [T, M], binary)`` for the data ``x [T, B, ...]``: the weights its nonzero values reach per step
    (summed over the batch, float64), and whether every value is 0, +1 or -1 (binary events)."""
    T, B = x.shape[:2]
    if x.device.type == "cpu" and _want_fused(compile, "cpu", x.numel(), ()):
        try:
            from .cpu_kernel import input_sums

            out = input_sums(x, fanout)
            _ready.add(("cpu", None))
            return out
        except Exception as err:  # no numba, or it cannot compile here
            _warn_failed("cpu", err)
    active = (x != 0).reshape(T, B, -1).sum(1, dtype=torch.float64)
    binary = bool(((x == 0) | (x.abs() == 1)).all())
    return active @ fanout.to(active), binary


def isolated_input(Z: torch.Tensor, T: int) -> torch.Tensor:
    """Per-step input whose running mean is the twin's pre-activation: Z (static twin, ``Z [1, ...]``) or
    ``t Z(t) - (t-1) Z(t-1)`` (cumulative twin, ``Z [T, ...]``)."""
    if Z.shape[0] == 1:
        return Z.expand(T, *Z.shape[1:])
    steps = torch.arange(1, T + 1, dtype=Z.dtype, device=Z.device).view(-1, *[1] * (Z.dim() - 1))
    total = Z * steps
    return torch.cat([total[:1], total[1:] - total[:-1]])


def layer_sums(x: torch.Tensor, out: torch.Tensor, Z: torch.Tensor, A: torch.Tensor | None,
               theta: torch.Tensor, theta_n: torch.Tensor, fanout: torch.Tensor | None, iso: int, neuron,
               out_iso: torch.Tensor | None, compile: bool | str = "auto") -> LayerSums:
    """The sums of one neuron layer (module docstring), all tensors flattened to ``[T, B, N]``.

    Args:
        x, out: the neuron's input and output. Z, A: the twin's pre-activation and activation
            ``[Tt, B, N]`` (A None: ``clamp(Z, 0, theta)``).
        theta: the threshold as the per-step functions take it (0-d, or ``[N]`` per channel);
            ``theta_n``: one value per element ``[N]``.
        fanout: ``[N, M]`` weights of each of M weight layers a spike of each neuron reaches, or None.
        iso: isolated mode (`qnoise.probe.functional.isolated_mode`), 0 for none.
        neuron: the `qnoise.neurons.IF` / `LIF` module (its dynamics, for the isolated mode).
        out_iso: for ``iso == ISO_GIVEN``, the neuron's output on the twin's input ``[T, B, N]``.
    """
    T, B, N = x.shape
    leaky = not (isinstance(neuron.beta, float) and neuron.beta == 1.0)
    count_events = bool(neuron.signed or neuron.per_channel)
    variant = (iso, leaky, bool(neuron.signed), neuron.reset, count_events, A is None, theta.dim(), x.dtype,
               x.device.type)
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and \
            _want_fused(compile, "cpu", T * B * N, variant):
        try:
            from .cpu_kernel import SUMS, layer_sums as cpu_layer_sums

            beta = float(neuron.beta) if leaky else 1.0
            prop, isol, ref, ops = cpu_layer_sums(x, out, Z, A, theta_n, fanout, iso, out_iso, beta,
                                                  neuron.v_init == "half", bool(neuron.signed),
                                                  neuron.reset == "zero")
            _ready.add(("cpu", None))
            return LayerSums(prop, SUMS, isol if iso else None, SUMS, ref, ops)
        except Exception as err:  # no numba, or it cannot compile here
            _warn_failed("cpu", err)
    fused = x.device.type != "cpu" and _want_fused(compile, "torch", T * B * N, variant)
    return _step_sums(x, out, Z, A, theta, theta_n, fanout, iso, neuron, out_iso, fused, variant, leaky,
                      count_events)


def _step_sums(x, out, Z, A, theta, theta_n, fanout, iso, neuron, out_iso, fused, variant, leaky,
               count_events) -> LayerSums:
    """`layer_sums` by the per-step functions (eager or ``torch.compile``)."""
    T, B, N = x.shape
    dev, dtype = x.device, x.dtype
    Tt = Z.shape[0]
    S, C = torch.zeros(B, N, dtype=dtype, device=dev), torch.zeros(B, N, dtype=dtype, device=dev)
    v = Ci = cnt = x_iso = None
    if iso in (ISO_DYNAMICS, ISO_GIVEN):
        Ci = torch.zeros(B, N, dtype=dtype, device=dev)
    if iso == ISO_DYNAMICS:
        x_iso = isolated_input(Z, T)
        v = (theta_n / 2).expand(B, N).clone() if neuron.v_init == "half" else \
            torch.zeros(B, N, dtype=dtype, device=dev)
        cnt = torch.zeros(B, N, dtype=dtype, device=dev) if neuron.signed else None
    beta_t = torch.as_tensor(neuron.beta, dtype=dtype, device=dev)
    props, isos = [], []
    for t in range(T):
        tt = torch.tensor(float(t + 1), dtype=dtype, device=dev)
        k = min(t, Tt - 1)
        A_k = None if A is None else A[k]
        S, C, ps = run_step("propagated", fused, variant, x[t], out[t], S, C, Z[k], A_k, theta, tt)
        props.append(ps)
        if iso:
            v, Ci, cnt, ist = run_step(
                "isolated", fused, variant, Z[k], A_k, theta, tt, iso,
                x_iso[t] if iso == ISO_DYNAMICS else None, out_iso[t] if iso == ISO_GIVEN else None, v, Ci,
                cnt, beta_t, leaky, neuron.signed, neuron.reset == "zero", count_events)
            isos.append(ist)
    spikes = (out != 0).sum(1, dtype=torch.float64)  # [T, N]: nonzero outputs, negative spikes included
    ops = spikes @ fanout.to(spikes) if fanout is not None else spikes.new_zeros(T, 0)
    prop = torch.cat([torch.stack(props), spikes.sum(1, keepdim=True)], dim=1)
    isolated = torch.stack(isos) if iso else None
    ref = torch.stack([run_step("reference", fused, variant, Z[k], None if A is None else A[k], theta)
                       for k in range(Tt)])
    ref = ref[torch.clamp(torch.arange(T, device=dev), max=Tt - 1)]
    return LayerSums(prop, (*KERNEL_PROP, "events"), isolated,
                     kernel_iso_names(iso, count_events, A is not None) if iso else (), ref, ops)

