"""One neuron layer's sums for one batch, and which implementation computes them.

`ann_layer_sums` returns the ANN-twin sums (`qnoise.probe.sums.ANN_SUMS`) in propagated and isolated mode,
the twin's sum of A^2 and the synaptic operations of the layer's spikes; `snn_layer_sums` the same against
the float SNN (`SNN_SUMS`). The neuron-dependent parts are computed here once, in torch, by the neuron's own
forward where no closed form applies: ``Q_t(z)`` (`qnoise.probe.terms.best_rate`) and the isolated layer's
output. Two implementations then compute the ANN sums:

- on the CPU, `qnoise.probe.cpu_kernel` (numba): one pass over the layer, all steps of a chunk of neurons
  with the running sums in cache;
- anywhere, the torch functions of `qnoise.probe.sums` over all steps at once (in batch chunks of
  ``TORCH_CHUNK_ELEMENTS`` values): the definition the CPU kernel is tested against, and the path on a
  GPU, where ``torch.compile`` can fuse it.

``compile="auto"`` (`resolve_compile`) uses the fused kernels for a model whose batch is big enough to
repay compiling them (``B`` times the neurons of all layers and the input values, one step's values, at least
``COMPILE_MIN_ELEMENTS``; not T, so that a run's first steps are summed as a shorter run's are, which
`qnoise.probe.Probe.table_of_first_steps` needs to be exact: numba compiles once per installation, about 35 s, then loads its kernels from its
on-disk cache in about a second, and ``make setup`` compiles them; ``torch.compile`` compiles in every
process), so small models start instantly. The `Probe` decides once, on its first batch: the choice depends
on the model and the batch shape alone, so a run gives the same numbers in any process. If compilation
fails the probe warns once and stays eager. ``QNOISE_COMPILE=0`` / ``1`` in the environment overrides
``"auto"``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..neurons import IF
from .activation import activation_rule, apply
from .sums import (
    ISO_CLOSED,
    ISO_GIVEN,
    ISO_OFF,
    Q_FLOOR,
    Q_GIVEN,
    Q_ROUND,
    ann_isolated_sums,
    ann_sums,
    snn_sums,
    square_sums,
)
from .terms import best_rate, constant_input_rate, cumulative_mean, rate_rule, step_counts

COMPILE_MIN_ELEMENTS = {"cpu": 1 << 17, "torch": 1 << 19}  # values of one step (the former T * B bound at T = 8)
# values per batch chunk on the torch path: its temporaries stay in a CPU's cache, or bounded on a GPU
TORCH_CHUNK_ELEMENTS = {"cpu": 1 << 19, "other": 1 << 24}
_compiled: dict = {}
_failed: set = set()  # implementations whose compilation failed ("cpu", "torch")


@dataclass
class LayerSums:
    """One layer's sums for one batch, float64: ``propagated [T, S]`` and ``isolated [T, S]`` (None when not
    computed), columns named by `qnoise.probe.sums`; ``reference [T]`` (the sum of the reference's square
    for step t); ``synops [T, M]`` (accumulates the spikes of step t cause in each of the M weight layers
    they reach, summed over the batch)."""

    propagated: torch.Tensor
    isolated: torch.Tensor | None
    reference: torch.Tensor
    synops: torch.Tensor


def resolve_compile(compile: bool | str, elements: int, device_type: str = "cpu") -> bool:
    """Whether to use the fused kernels (module docstring) for a batch of ``elements`` values per step, on a
    device of type ``device_type``."""
    if compile not in (True, False, "auto"):
        raise ValueError(f"compile={compile!r}: expected True, False or 'auto'")
    if compile != "auto":
        return compile
    env = os.environ.get("QNOISE_COMPILE")
    if env is not None:
        return env not in ("0", "false", "False", "")
    return elements >= COMPILE_MIN_ELEMENTS["cpu" if device_type == "cpu" else "torch"]


def _warn_failed(impl: str, err: Exception) -> None:
    _failed.add(impl)
    warnings.warn(f"qnoise probe: the fused {impl} kernel failed to compile ({type(err).__name__}: "
                  f"{str(err)[:200]}); using the eager kernel", RuntimeWarning, stacklevel=3)


def kernel_failed(impl: str, err: Exception | None = None) -> bool:
    """Whether the fused ``impl`` (``"cpu"``, ``"torch"``) failed before; with ``err``, record (and warn)
    that it just did."""
    if err is not None:
        _warn_failed(impl, err)
    return impl in _failed


def _maybe_compiled(fn, fused: bool):
    """``fn`` through ``torch.compile`` when asked and it works."""
    if not fused or "torch" in _failed:
        return fn
    if fn not in _compiled:
        _compiled[fn] = torch.compile(fn, dynamic=True)

    def run(*args, **kwargs):
        try:
            return _compiled[fn](*args, **kwargs)
        except Exception as err:  # compilation problems vary by platform; eager always works
            _warn_failed("torch", err)
            return fn(*args, **kwargs)
    return run


def spike_counts(out: torch.Tensor, fanout: torch.Tensor | None, fused: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spikes [T], synops [T, M])`` float64 for a layer's output ``out [T, B, N]``: per step its nonzero
    outputs over the batch and the weights they reach in each of the M weight layers of ``fanout [N, M]``.
    ``fused``: by the CPU kernel where ``out`` is on the CPU (`qnoise.probe.cpu_kernel.spike_sums`: a
    float64 count of a boolean tensor in torch takes 48 ms on the reference CNN's first layer at B = 64)."""
    if fused and fused_cpu(out) and "cpu" not in _failed:
        try:
            from .cpu_kernel import spike_sums

            return spike_sums(out, fanout)
        except Exception as err:  # no numba, or it cannot compile here  # noqa: BLE001
            _warn_failed("cpu", err)
    per = (out != 0).sum(1, dtype=torch.float64)  # [T, N]: each neuron's spikes over the batch
    return per.sum(1), (per @ fanout.to(per) if fanout is not None else per.new_zeros(out.shape[0], 0))


def input_synops(x: torch.Tensor, fanout: torch.Tensor, fused: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(binary [T, M], other [T, M])`` for the data ``x [T, B, ...]``: the weights its nonzero values reach per
    step (float64), summed over the samples whose every value is 0, +1 or -1 (binary events: accumulates) and
    over the other samples (analog or multi-level: multiply-accumulates). Decided per sample, so a batch's
    numbers are the sum of its samples' (one analog sample made every sample of its batch count MACs).
    ``fused``: by the CPU kernel where ``x`` is on the CPU; elsewhere no value is read back from the device."""
    T, B = x.shape[:2]
    if fused and x.device.type == "cpu" and "cpu" not in _failed:
        try:
            from .cpu_kernel import input_sums

            return input_sums(x, fanout)
        except Exception as err:  # no numba, or it cannot compile here
            _warn_failed("cpu", err)
    flat = x.reshape(T, B, -1)
    binary = ((flat == 0) | (flat.abs() == 1)).all(2).all(0).to(torch.float64).view(1, B, 1)  # [1, B, 1]
    ops = (flat != 0).to(torch.float64) @ fanout.to(torch.float64)  # [T, B, M]
    return (ops * binary).sum(1), (ops * (1 - binary)).sum(1)


def isolated_input(z: torch.Tensor, T: int) -> torch.Tensor:
    """Per-step input whose running mean is ``z``: z itself at every step (``z [1, ...]``) or
    ``t z(t) - (t-1) z(t-1)`` (``z [T, ...]``, a cumulative twin)."""
    if z.shape[0] == 1:
        return z.expand(T, *z.shape[1:]).contiguous()
    total = z * step_counts(T, z)
    return torch.cat([total[:1], total[1:] - total[:-1]])


def flat_threshold(neuron: IF, like: torch.Tensor) -> torch.Tensor:
    """The neuron's threshold as one value per element of a sample of ``like [T, B, ...]``, ``[N]``."""
    theta = neuron.broadcast_threshold(like).detach().to(like.dtype)
    return theta.expand(like.shape[2:]).reshape(-1).contiguous()


def fused_cpu(x: torch.Tensor) -> bool:
    """Whether the CPU kernel can take a layer's tensors like ``x`` (CPU, float32 or float64)."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


class AnnStream:
    """The ANN-twin sums of one neuron layer over one batch by the CPU kernel, fed one timestep at a time
    (`qnoise.probe.cpu_kernel.AnnSteps`), so a step-major run accumulates them while each step is fresh; the
    layer-major order feeds it ``x[t]`` in turn and gets the same numbers.

    Opening the stream computes what does not depend on the SNN's run: the isolated sums (the layer fed the
    twin's input z_hat: closed form for an IF neuron on a constant input, else the neuron's own forward on it)
    and the reference's square. ``like`` is ``[Tt, B, ...]`` shaped and typed as the layer's input; ``A, z_hat``
    ``[Tt, B, ...]``; the other arguments as `ann_layer_sums`. ``step(x, out, q=None)`` takes one step's input
    and output (``[B, ...]``; ``q`` the given ``Q_t(z)`` for a neuron without closed form); `result` returns
    the `LayerSums`.
    """

    def __init__(self, neuron: IF, like: torch.Tensor, T: int, A: torch.Tensor, z_hat: torch.Tensor,
                 activation: nn.Module, fanout: torch.Tensor | None, isolate: bool,
                 a_hat: torch.Tensor | None = None) -> None:
        from .cpu_kernel import AnnSteps, iso_sums

        dtype, B, Tt = like.dtype, A.shape[1], A.shape[0]
        A, z_hat = A.to(dtype), z_hat.to(dtype)
        rule = rate_rule(neuron)
        theta = flat_threshold(neuron, like)
        # a(z_hat): given as A itself when z_hat is the twin's own input (one array then serves both)
        a_hat = apply(activation, z_hat) if a_hat is None else a_hat.to(dtype)
        r = activation_rule(activation, like)
        q_rule = {"round": Q_ROUND, "floor": Q_FLOOR}.get(rule, Q_GIVEN)

        def flat(v: torch.Tensor | None) -> torch.Tensor | None:
            return None if v is None else v.reshape(v.shape[0], B, -1)

        iso, out_iso, q_iso = ISO_OFF, None, None
        if isolate and Tt == 1 and rule != "dynamics":  # an IF neuron on a constant input: closed form
            iso = ISO_CLOSED
        elif isolate:  # the neuron's own output on the twin's input, and Q_t(z_hat) where no closed form gives it
            iso = ISO_GIVEN
            out_iso = neuron.forward(isolated_input(z_hat, T))
            if rule != "dynamics":
                q_iso = best_rate(neuron, z_hat, T, neuron.broadcast_threshold(z_hat).detach().to(dtype))
            else:
                q_iso = cumulative_mean(out_iso) if Tt == 1 else constant_input_rate(neuron, z_hat, T)
        A_f = flat(A)
        a_f = A_f if a_hat is A else flat(a_hat)
        self.isolated, self.weight, self.reference = iso_sums(flat(z_hat), A_f, a_f, theta, iso, q_rule, T,
                                                              flat(out_iso), flat(q_iso))
        self.isolate, self.B, self._fused = isolate, B, -1
        self.steps = AnnSteps(A_f, a_f, theta, r.lo, r.hi, r.levels, q_rule, T, fanout, dtype)

    def step(self, x: torch.Tensor, out: torch.Tensor, q: torch.Tensor | None = None) -> None:
        if self.steps.t == self._fused:  # `neuron_step` already took this step
            self._fused = -1
            return
        B = self.B
        self.steps.step(x.reshape(B, -1), out.reshape(B, -1), None if q is None else q.reshape(B, -1))

    def neuron_step(self, neuron: IF, x: torch.Tensor, state) -> torch.Tensor | None:
        """Step ``neuron`` on ``x [B, ...]`` and add this step's sums in one pass (a `qnoise.stepmode.Step`
        observer): its output, with ``state`` advanced by the neuron's rule; None (the neuron steps as usual,
        `step` adds the sums after) unless it is an unsigned IF layer with a float membrane, reset by
        subtraction, in the CPU kernel, and the twin's activation a plain clamp."""
        from ..neuron_step import prepare_kernel

        if (state.flat is None or not self.steps.fusable or self.steps.t != state.t or neuron.reset != "subtract"
                or not (isinstance(state.beta, float) and state.beta == 1.0)):
            return None
        xs = prepare_kernel(state, x, neuron.v_init == "half")
        out = self.steps.neuron_step(xs, state.v, state.flat, state.scalars[1])
        state.t += 1
        self._fused = self.steps.t
        return out.view(x.shape)

    def result(self) -> LayerSums:
        prop, ops = self.steps.result(self.weight)
        return LayerSums(prop, self.isolated if self.isolate else None, self.reference, ops)


class SnnStream:
    """The float-SNN sums of one neuron layer over one batch by the CPU kernel, fed one timestep at a time
    (`qnoise.probe.cpu_kernel.SnnSteps`): ``step(out, out_own, out_ref)`` with one step's output of the layer,
    of the layer on the float SNN's spikes and of the float SNN (``[B, ...]``); `result` gives the `LayerSums`.
    ``thetas``: the layer's and the float SNN's thresholds per element (`snn_thetas`): spike counts, not sums."""

    def __init__(self, like: torch.Tensor, T: int, fanout: torch.Tensor | None, isolate: bool,
                 thetas: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        from .cpu_kernel import SnnSteps

        dtype = like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float32
        self.B, self.isolate = like.shape[0], isolate
        self.steps = SnnSteps(self.B, like[0].numel(), T, fanout, dtype, thetas)

    def step(self, out: torch.Tensor, out_own: torch.Tensor, out_ref: torch.Tensor) -> None:
        B = self.B
        self.steps.step(out.reshape(B, -1), out_own.reshape(B, -1), out_ref.reshape(B, -1))

    def result(self) -> LayerSums:
        prop, isol, ref2, ops = self.steps.result()
        return LayerSums(prop, isol if self.isolate else None, ref2, ops)


@torch.no_grad()
def ann_layer_sums(neuron: IF, x: torch.Tensor, out: torch.Tensor, A: torch.Tensor, z_hat: torch.Tensor,
                   activation: nn.Module, fanout: torch.Tensor | None, isolate: bool, fused: bool = False,
                   a_hat: torch.Tensor | None = None) -> LayerSums:
    """The ANN-twin sums of one neuron layer and batch.

    Args:
        neuron: the `qnoise.neurons.IF` module (any IF subclass: its own forward gives Q_t and the isolated
            output where no closed form applies).
        x, out: the neuron's input and output ``[T, B, ...]``.
        A, z_hat: the twin's activation, and its input through this layer's quantized weights,
            ``[Tt, B, ...]`` (Tt = 1 or T).
        activation: the twin's activation module ``a`` (`qnoise.probe.activation.ANN_ACTIVATIONS`).
        fanout: ``[N, M]`` weights each neuron's spike reaches in each of M weight layers, or None.
        isolate: also compute the isolated sums (the layer fed ``z_hat``).
        fused: by the CPU kernel on the CPU (``torch.compile`` elsewhere).
        a_hat: ``a(z_hat)`` when known (A itself when z_hat is the twin's own input); else computed.
    """
    T, B = x.shape[:2]
    Tt = A.shape[0]
    theta = flat_threshold(neuron, x)
    rule = rate_rule(neuron)
    a_hat = apply(activation, z_hat) if a_hat is None else a_hat
    q = constant_input_rate(neuron, cumulative_mean(x), T) if rule == "dynamics" else None

    def flat(v: torch.Tensor | None) -> torch.Tensor | None:
        return None if v is None else v.reshape(v.shape[0], B, -1)

    def isolated_run() -> tuple[torch.Tensor, torch.Tensor | None]:
        """The neuron's own output on the twin's input, and Q_t(z_hat) where no closed form gives it."""
        out_iso = neuron.forward(isolated_input(z_hat, T))
        if rule != "dynamics":
            return out_iso, None
        return out_iso, cumulative_mean(out_iso) if Tt == 1 else constant_input_rate(neuron, z_hat, T)

    if fused and fused_cpu(x) and "cpu" not in _failed:
        try:
            stream = AnnStream(neuron, x, T, A, z_hat, activation, fanout, isolate, a_hat)
            for t in range(T):
                stream.step(x[t], out[t], None if q is None else q[t])
            return stream.result()
        except Exception as err:  # no numba, or it cannot compile here
            _warn_failed("cpu", err)

    xf, of, Af, zf, af = flat(x), flat(out), flat(A), flat(z_hat), flat(a_hat)
    sample = x.shape[2:]

    def a(v: torch.Tensor) -> torch.Tensor:  # the twin's activation module on flattened [*, b, N]
        return apply(activation, v.reshape(*v.shape[:2], *sample)).reshape(v.shape)

    propagated = _maybe_compiled(ann_sums, fused and x.device.type != "cpu")
    isolated = _maybe_compiled(ann_isolated_sums, fused and x.device.type != "cpu")
    out_iso, q_iso = isolated_run() if isolate else (None, None)
    N = xf.shape[2]
    step = max(1, TORCH_CHUNK_ELEMENTS["cpu" if x.device.type == "cpu" else "other"] // (T * N))
    prop = isol = 0
    for b in range(0, B, step):
        sl = slice(b, b + step)
        prop = prop + propagated(xf[:, sl], of[:, sl], Af[:, sl], af[:, sl], theta, a, rule,
                                 None if q is None else flat(q)[:, sl])
        if isolate:
            isol = isol + isolated(flat(out_iso)[:, sl], zf[:, sl], Af[:, sl], af[:, sl], theta, rule,
                                   None if q_iso is None else flat(q_iso)[:, sl])
    ref = square_sums(Af)[torch.clamp(torch.arange(T, device=x.device), max=Tt - 1)]
    return LayerSums(prop, isol if isolate else None, ref, spike_counts(of, fanout)[1])


def snn_thetas(neuron: IF, reference: IF, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The thresholds per element of a sample (``like [Tt, B, ...]``) of a layer and of its float-SNN copy when
    both are neurons of `IF`'s own rule, whose outputs are ``theta * s`` (the CPU kernel then counts spikes);
    None for any other neuron kind."""
    if type(neuron).forward is not IF.forward or type(reference).forward is not IF.forward:
        return None
    return flat_threshold(neuron, like), flat_threshold(reference, like)


@torch.no_grad()
def snn_layer_sums(out: torch.Tensor, out_own: torch.Tensor, out_ref: torch.Tensor, fanout: torch.Tensor | None,
                   isolate: bool, fused: bool = False, thetas: tuple[torch.Tensor, torch.Tensor] | None = None
                   ) -> LayerSums:
    """The float-SNN sums of one neuron layer and batch: ``out`` the layer's output, ``out_own`` its output at
    its own precision on the float SNN's input spikes, ``out_ref`` the float SNN's output (``[T, B, ...]``);
    ``fused``: by the CPU kernel on the CPU; ``thetas`` (`snn_thetas`): the kernel counts spikes."""
    T, B = out.shape[:2]
    o, own, ref = (v.reshape(T, B, -1) for v in (out, out_own, out_ref))
    if fused and out.device.type == "cpu" and "cpu" not in _failed:
        try:
            stream = SnnStream(out[0], T, fanout, isolate, thetas)
            for t in range(T):
                stream.step(o[t], own[t], ref[t])
            return stream.result()
        except Exception as err:  # no numba, or it cannot compile here
            _warn_failed("cpu", err)
    return LayerSums(snn_sums(o, own, ref), snn_sums(o, own, ref, isolated=True) if isolate else None,
                     square_sums(cumulative_mean(ref)), spike_counts(o, fanout)[1])
