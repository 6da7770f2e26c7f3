"""Spiking neurons over multi-step tensors ``[T, B, ...]`` (DESIGN.md, Neurons).

Per timestep t and neuron::

    v[t] = beta * v[t-1] + x[t]           charge (IF: beta = 1; LIF: 0 < beta <= 1)
    v[t] = Q_state(v[t])                  optional fixed-point membrane (state_bits)
    s[t] = H(v[t] - theta)                Heaviside forward, surrogate gradient backward
    signed IF: s[t] = -1 where s[t] = 0, v[t] <= -eps and the net spike count so far is > 0
    v[t] = v[t] - s[t] * theta            reset by subtraction (or v[t] = 0 where s[t] != 0)
    out[t] = theta * s[t]                 spikes carry the threshold

``v[0]`` is 0 (``v_init="zero"``, a truncating neuron) or ``theta/2`` (``"half"``, a rounding neuron).
With constant input x, ``v_init="half"`` and reset by subtraction, the mean of ``out[1..T]`` equals
``(theta/T) * clip(floor(T*x/theta + 1/2), 0, T)`` (`qnoise.quant.nearest_levels`; in float, except within a
few units in the last place of a half level, where the step-by-step sum may round the other way). State is
reset at every call: nothing carries over between batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from . import stepmode
from .neuron_fused import fused_neuron
from .neuron_step import StepState, flat_threshold, multistep_inference, per_sample, plain_step, uses_kernel
from .quant.state import quantize_membrane
from .quant.uniform import check_rounding, straight_through
from .surrogate import DEFAULT_ALPHA, SURROGATES, spike

V_INITS = ("zero", "half")
RESETS = ("subtract", "zero")
THRESHOLD_FLOOR = 1e-3
SIGNED_EPS = 1e-6  # relative to theta: a negative spike needs v <= -SIGNED_EPS * theta


@dataclass(frozen=True)
class NeuronTrace:
    """What a neuron layer did over T steps: all ``[T, B, ...]``.

    ``out = theta * spikes``; ``membrane`` is v after charging (and state quantization), before reset;
    ``spikes`` is in {0, 1} or, for signed neurons, {-1, 0, 1}.
    """

    out: torch.Tensor
    membrane: torch.Tensor
    spikes: torch.Tensor


def initial_membrane(like: torch.Tensor, theta: torch.Tensor | float, v_init: str) -> torch.Tensor:
    """``v[0]`` shaped like one step ``like``: 0 (``"zero"``) or ``theta/2`` (``"half"``; theta broadcasts)."""
    if v_init == "zero":
        return torch.zeros_like(like)
    if v_init == "half":
        return (theta / 2).expand_as(like).clone() if torch.is_tensor(theta) else torch.full_like(like, theta / 2)
    raise ValueError(f"v_init={v_init!r} is not one of {V_INITS}")


def neuron_step(x: torch.Tensor, v: torch.Tensor, count: torch.Tensor | None, theta: torch.Tensor | float,
                beta: torch.Tensor | float = 1.0, reset: str = "subtract", signed: bool = False, surrogate: str = "atan",
                state_bits: int | None = None, state_rounding: str = "nearest"
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """One timestep of the dynamics (module docstring): the neuron rule every path follows.

    ``x`` is one step's input, ``v`` the membrane after the previous step's reset (`initial_membrane` before
    the first), ``count`` a signed neuron's net spikes so far (None otherwise). Returns ``(out, v, count,
    membrane, spikes)``: the output ``theta * s``, the membrane after reset and the count to carry to the next
    step, the membrane after charging (and state quantization) before reset, and ``s``. Differentiable through
    the surrogate; `neuron_multistep` is this step in a loop, and the inference kernels
    (`qnoise.neuron_step`) are held to it by tests.
    """
    leaky = not (isinstance(beta, float) and beta == 1.0)
    v = beta * v + x if leaky else v + x
    if state_bits is not None:
        v = quantize_membrane(v, theta, state_bits, state_rounding)
    s = spike(v - theta, surrogate)
    if signed:
        allowed = (count > 0).to(x.dtype)
        s = s - spike(-v - SIGNED_EPS * theta, surrogate) * allowed
        count = count + s.detach()
    out = theta * s
    after = v - out if reset == "subtract" else v * (1 - s.abs())
    return out, after, count, v, s


def neuron_multistep(
    x: torch.Tensor,
    theta: torch.Tensor,
    beta: torch.Tensor | float = 1.0,
    v_init: str = "zero",
    reset: str = "subtract",
    signed: bool = False,
    surrogate: str = "atan",
    state_bits: int | None = None,
    state_rounding: str = "nearest",
    record: bool = False,
) -> torch.Tensor | NeuronTrace:
    """Run IF/LIF dynamics over ``x`` of shape ``[T, B, ...]``; ``theta`` broadcasts against ``x[t]``.

    Returns ``out`` (``[T, B, ...]``), or a `NeuronTrace` when ``record`` is True. Three paths, one semantics
    (the loop of `neuron_step`): without autograd, an unsigned neuron with a float membrane runs in the
    inference kernel on the CPU (`qnoise.neuron_step`) or in in-place steps elsewhere (`_fast_inference`);
    with autograd, it runs as one autograd node with a hand-written backward (`qnoise.neuron_fused`); signed
    or state-quantized neurons, and ``record``, unroll the loop.
    """
    v = initial_membrane(x[0], theta, v_init)
    if reset not in RESETS:
        raise ValueError(f"reset={reset!r} is not one of {RESETS}")
    if surrogate not in SURROGATES:
        raise ValueError(f"surrogate={surrogate!r} is not one of {SURROGATES}")
    leaky = not (isinstance(beta, float) and beta == 1.0)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or (torch.is_tensor(theta) and theta.requires_grad))
    plain = not (record or signed or state_bits is not None)
    if plain and not needs_grad:
        if uses_kernel(x, signed, state_bits) and per_sample(theta, x[0]) and (not torch.is_tensor(beta) or
                                                                                beta.dim() == 0):
            return multistep_inference(x, theta, beta, v_init, reset)
        return _fast_inference(x, v, theta, beta if leaky else None, reset)
    if plain:
        return fused_neuron(x, theta, beta if leaky else None, v_init, reset, surrogate, DEFAULT_ALPHA[surrogate])
    count = torch.zeros_like(x[0]) if signed else None
    outs, membranes, spikes = [], [], []
    for xt in x.unbind(0):  # unbind, not x[t]: each select's backward would zero-fill a [T, ...] gradient
        out_t, v, count, membrane, s = neuron_step(xt, v, count, theta, beta, reset, signed, surrogate, state_bits,
                                                   state_rounding)
        if record:
            membranes.append(membrane)
            spikes.append(s)
        outs.append(out_t)
    out = torch.stack(outs)
    if record:
        return NeuronTrace(out=out, membrane=torch.stack(membranes), spikes=torch.stack(spikes))
    return out


@torch.no_grad()
def _fast_inference(x: torch.Tensor, v: torch.Tensor, theta: torch.Tensor | float,
                    beta: torch.Tensor | float | None, reset: str) -> torch.Tensor:
    """Same dynamics as `neuron_multistep` for unsigned neurons without autograd: four in-place passes
    per step (charge, compare, output, reset) into a preallocated output."""
    out = torch.empty_like(x)
    v = v.to(torch.result_type(v, x), copy=True)  # theta/2 of a float32 threshold, float64 data: a float64 membrane
    for t in range(x.shape[0]):
        if beta is not None:
            v.mul_(beta)
        v.add_(x[t])
        fired = v >= theta
        torch.mul(fired, theta, out=out[t])
        if reset == "subtract":
            v.sub_(out[t])
        else:
            v.masked_fill_(fired, 0.0)
    return out


class IF(nn.Module):
    """Integrate-and-fire neuron layer with optional trainable threshold and fixed-point membrane.

    Args:
        threshold: initial threshold theta (> 0).
        v_init: ``"zero"`` (truncating) or ``"half"`` (``v[0] = theta/2``, rounding).
        reset: ``"subtract"`` (v -= theta * s) or ``"zero"``.
        signed: emit negative spikes to undo earlier positive ones (Fast-SNN signed IF).
        learn_threshold: make theta a parameter; its gradient flows through firing, reset and output.
            The effective threshold is ``max(theta, 1e-3)`` with a straight-through gradient, so it stays
            positive without freezing.
        per_channel: one threshold per channel (dimension 2 of ``[T, B, C, ...]``); needs ``channels``.
        surrogate: ``"atan"``, ``"sigmoid"`` or ``"rectangle"``.
        state_bits: quantize the membrane to this many bits every step (`qnoise.quant.quantize_membrane`).
        state_rounding: rounding of the membrane quantizer.
    """

    beta_value: float = 1.0

    def __init__(
        self,
        threshold: float = 1.0,
        v_init: Literal["zero", "half"] = "zero",
        reset: Literal["subtract", "zero"] = "subtract",
        signed: bool = False,
        learn_threshold: bool = False,
        per_channel: bool = False,
        channels: int | None = None,
        surrogate: Literal["atan", "sigmoid", "rectangle"] = "atan",
        state_bits: int | None = None,
        state_rounding: str = "nearest",
    ) -> None:
        super().__init__()
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        if v_init not in V_INITS:
            raise ValueError(f"v_init={v_init!r} is not one of {V_INITS}")
        if reset not in RESETS:
            raise ValueError(f"reset={reset!r} is not one of {RESETS}")
        if surrogate not in SURROGATES:
            raise ValueError(f"surrogate={surrogate!r} is not one of {SURROGATES}")
        if per_channel and not (isinstance(channels, int) and channels > 0):
            raise ValueError(f"per_channel=True needs channels=<positive int>, got channels={channels!r}")
        if state_bits is not None and not (isinstance(state_bits, int) and 2 <= state_bits <= 32):
            raise ValueError(f"state_bits must be an int in 2..32 or None, got {state_bits!r}")
        check_rounding(state_rounding)
        self.v_init, self.reset, self.signed = v_init, reset, signed
        self.surrogate, self.per_channel = surrogate, per_channel
        self.state_bits, self.state_rounding = state_bits, state_rounding
        value = torch.full((channels,) if per_channel else (), float(threshold))
        if learn_threshold:
            self.raw_threshold = nn.Parameter(value)
        else:
            self.register_buffer("raw_threshold", value)

    @property
    def learn_threshold(self) -> bool:
        return isinstance(self.raw_threshold, nn.Parameter)

    @property
    def threshold(self) -> torch.Tensor:
        """Effective threshold ``max(raw, 1e-3)``: a scalar, or ``[C]`` per channel."""
        raw = self.raw_threshold
        return straight_through(raw.clamp_min(THRESHOLD_FLOOR), raw)

    @property
    def stored_threshold(self) -> torch.Tensor:
        """The threshold tensor as stored: the float one behind a quantizer where a parametrization quantizes it
        (`qnoise.models.apply_quantization`), else ``raw_threshold`` itself."""
        if parametrize.is_parametrized(self, "raw_threshold"):
            return self.parametrizations.raw_threshold.original
        return self.raw_threshold

    @torch.no_grad()
    def set_threshold(self, value: float | torch.Tensor) -> None:
        """Overwrite the threshold (a scalar, or ``[C]`` for per-channel neurons). Where a parametrization
        quantizes it (`qnoise.models.apply_quantization`), the float threshold behind the quantizer is set, and the
        neuron uses its quantized value (reading ``raw_threshold`` there computes a new tensor: writing into it
        changed nothing)."""
        target = self.stored_threshold
        value = torch.as_tensor(value, dtype=target.dtype)
        if bool((value <= 0).any()):
            raise ValueError(f"threshold must be > 0, got {value.tolist()}")
        target.copy_(value.expand_as(target))

    @property
    def beta(self) -> torch.Tensor | float:
        return self.beta_value

    def broadcast_threshold(self, x: torch.Tensor) -> torch.Tensor:
        """Threshold shaped to broadcast against one timestep ``x[t]`` of ``[T, B, C, ...]``."""
        return self._channel_threshold(x, ("T", "B"), "its input has shape")

    def _channel_threshold(self, x: torch.Tensor, lead: tuple[str, ...], what: str) -> torch.Tensor:
        """The threshold viewed as ``[C, 1, ...]`` against ``x [*lead, C, ...]`` (as stored when per layer)."""
        theta = self.threshold
        if not self.per_channel:
            return theta
        c = len(lead)
        if x.dim() <= c or x.shape[c] != theta.numel():
            raise ValueError(f"{type(self).__name__} has {theta.numel()} per-channel thresholds but {what} "
                             f"{tuple(x.shape)}; expected [{', '.join(lead)}, {theta.numel()}, ...]")
        return theta.view(-1, *([1] * (x.dim() - c - 1)))

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() < 3:
            raise ValueError(
                f"{type(self).__name__} expects a multi-step tensor [T, B, ...] with at least 3 dimensions, "
                f"got shape {tuple(x.shape)}"
            )

    def step_threshold(self, x: torch.Tensor) -> torch.Tensor:
        """Threshold shaped to broadcast against one step ``x [B, C, ...]`` (`broadcast_threshold` without T)."""
        return self._channel_threshold(x, ("B",), "one step of its input has shape")

    def step(self, x: torch.Tensor, state: StepState | None = None) -> tuple[torch.Tensor, StepState]:
        """One timestep (Norse style): ``x [B, ...]`` and the state after the previous step (None before the
        first) -> ``(out, state)``. The rule is `neuron_step`; at inference (no autograd) an unsigned neuron with
        a float membrane advances ``state`` in place (`qnoise.neuron_step`, the CPU kernel). Stepping
        ``x[0], x[1], ...`` gives `forward`'s outputs bit for bit."""
        if x.dim() < 2:
            raise ValueError(f"{type(self).__name__}.step expects one step [B, ...], got shape {tuple(x.shape)}")
        if state is None:
            state = self._first_state(x)
        if state.flat is not None or self._plain(x, state):
            return plain_step(state, x, self.v_init == "half", self.reset == "zero"), state
        out, state.v, state.count, _, _ = neuron_step(x, state.v, state.count, state.theta, state.beta, self.reset,
                                                      self.signed, self.surrogate, self.state_bits,
                                                      self.state_rounding)
        state.t += 1
        return out, state

    def _plain(self, x: torch.Tensor, state: StepState) -> bool:
        """In-place inference steps: no autograd, unsigned, float membrane."""
        grad = torch.is_grad_enabled() and (x.requires_grad or (torch.is_tensor(state.theta) and
                                                                state.theta.requires_grad))
        return not (grad or self.signed or self.state_bits is not None)

    def _first_state(self, x: torch.Tensor) -> StepState:
        theta, beta = self.step_threshold(x), self.beta
        if not torch.is_grad_enabled():
            theta = theta.detach()
            beta = beta.detach() if torch.is_tensor(beta) else beta
        state = StepState(None, None, theta, beta)
        if uses_kernel(x, self.signed, self.state_bits) and self._plain(x, state):
            state.flat = flat_threshold(theta, x)  # the kernel allocates and initializes v at the first step
            return state
        v = initial_membrane(x, theta, self.v_init)
        state.v = v.to(torch.result_type(v, x))  # a float64 membrane for float64 data, as the rule computes it
        state.count = torch.zeros_like(x) if self.signed else None
        return state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        run = stepmode.current()
        if run is not None and not run.fold:  # a step-major run (qnoise.stepping): x is one step [B, ...]
            stepmode.SAMPLE_BYTES[self] = x[0].numel() * x.element_size()
            state = run.states.get(self)
            observer = run.observers.get(self) if run.observers else None
            if observer is not None:  # a probe's kernel steps the neuron by its rule and reads it in one pass
                state = self._first_state(x) if state is None else state
                out = observer(self, x, state)
                if out is not None:
                    run.states[self] = state
                    return out
            out, run.states[self] = self.step(x, state)
            return out
        self._check_input(x)
        stepmode.SAMPLE_BYTES[self] = x[0, 0].numel() * x.element_size()  # what qnoise.stepping.plan weighs
        return neuron_multistep(x, self.broadcast_threshold(x), self.beta, self.v_init, self.reset,
                                self.signed, self.surrogate, self.state_bits, self.state_rounding)

    def trace(self, x: torch.Tensor) -> NeuronTrace:
        """Run the dynamics on ``x`` and return output, membrane (after charge) and spikes."""
        self._check_input(x)
        return neuron_multistep(x, self.broadcast_threshold(x), self.beta, self.v_init, self.reset,
                                self.signed, self.surrogate, self.state_bits, self.state_rounding, record=True)

    def extra_repr(self) -> str:
        theta = self.threshold.detach()
        th = f"{float(theta):.4g}" if theta.dim() == 0 else f"[{theta.numel()} channels]"
        parts = [f"threshold={th}", f"v_init={self.v_init}", f"reset={self.reset}"]
        if self.signed:
            parts.append("signed=True")
        if self.learn_threshold:
            parts.append("learn_threshold=True")
        if self.state_bits is not None:
            parts.append(f"state_bits={self.state_bits}, state_rounding={self.state_rounding}")
        return ", ".join(parts)


class LIF(IF):
    """Leaky integrate-and-fire: ``v[t] = beta * v[t-1] + x[t]``; other options as `IF`."""

    def __init__(self, beta: float = 0.9, learn_beta: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"LIF beta must be in (0, 1], got {beta}")
        b = torch.tensor(float(beta))
        if learn_beta:
            self.raw_beta = nn.Parameter(b)
        else:
            self.register_buffer("raw_beta", b)

    @property
    def beta(self) -> torch.Tensor:
        return self.raw_beta.clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return f"beta={float(self.beta):.4g}, " + super().extra_repr()


class ClampActivation(nn.Module):
    """ANN twin of a spiking neuron: ``a(z) = clamp(z, 0, theta)`` with the neuron's threshold."""

    def __init__(self, neuron: IF) -> None:
        super().__init__()
        self.neuron = neuron

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        theta = self.neuron.broadcast_threshold(z) if self.neuron.per_channel else self.neuron.threshold
        if torch.is_grad_enabled():  # autograd splits a tie between z and theta as minimum does
            return torch.minimum(z.clamp_min(0.0), theta)
        if theta.numel() == 1 and theta.device.type == "cpu":  # scalar bounds: 4x faster than tensor bounds
            return torch.clamp(z, 0.0, theta.item())  # (no .item() on a GPU: it would wait for the device)
        return torch.clamp(z, min=theta.new_zeros(()), max=theta)  # the same values in one pass


def is_plain_if(module: nn.Module) -> bool:
    """Whether ``module`` is an IF neuron itself, not a subclass (LIF, an imported kind): its rate on a constant
    input is ``clamp(z, 0, theta)``. A parametrized IF (quantized thresholds: torch gives it a generated
    ``ParametrizedIF`` class) is one."""
    return parametrize.type_before_parametrizations(module) is IF


@torch.no_grad()
def scale_thresholds(model: nn.Module, factor: float) -> None:
    """Multiply every neuron's threshold by ``factor`` (> 0), in place. Thresholds quantized in training
    (`qnoise.models.apply_quantization`) keep their bits: the float thresholds and the shared step are scaled
    together, so each quantized threshold scales by ``factor`` too (up to float rounding)."""
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"the threshold scale must be a finite number > 0, got {factor!r}")
    for _, n in spiking_neurons(model):
        if parametrize.is_parametrized(n, "raw_threshold"):
            n.parametrizations.raw_threshold[0].step.mul_(factor)
        n.set_threshold(n.stored_threshold.clamp_min(THRESHOLD_FLOOR) * factor)


def spiking_neurons(model: nn.Module) -> list[tuple[str, IF]]:
    """All qnoise neuron layers of ``model`` in definition order, with qualified names."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, IF)]


def quantize_neurons(model: nn.Module, threshold_bits: int | None = None, state_bits: int | None = None,
                     rounding: str = "nearest") -> float | None:
    """Quantize every neuron of ``model`` post-training (in place).

    ``threshold_bits``: all thresholds move onto one unsigned fixed-point grid shared by the model,
    step ``max(theta) / (2^b - 1)`` (`qnoise.quant.quantize_threshold`); returns that step.
    ``state_bits``: each neuron re-quantizes its membrane every step from now on
    (`qnoise.quant.quantize_membrane`); for in-training quantization build the neurons with ``state_bits``.
    """
    from .quant.state import quantize_threshold

    neurons = [m for _, m in spiking_neurons(model)]
    if not neurons:
        raise ValueError(f"{type(model).__name__} has no qnoise neuron (IF/LIF) to quantize")
    check_rounding(rounding)
    step = None
    if threshold_bits is not None:
        quantized = [name for name, m in spiking_neurons(model) if parametrize.is_parametrized(m, "raw_threshold")]
        if quantized:
            raise ValueError(f"the thresholds of {', '.join(quantized[:4])} are already quantized in training "
                             f"(apply_quantization); change their bits there: apply_quantization(model, "
                             f"{{'thresholds': {{'bits': {threshold_bits}}}}})")
        all_theta = torch.cat([n.threshold.detach().flatten() for n in neurons])
        step_t = (all_theta.max() / (2**threshold_bits - 1)).clamp_min(1e-12)
        for n in neurons:
            n.set_threshold(quantize_threshold(n.threshold.detach(), threshold_bits, rounding, step=step_t))
        step = float(step_t)
    if state_bits is not None:
        if not (isinstance(state_bits, int) and 2 <= state_bits <= 32):
            raise ValueError(f"state_bits must be an int in 2..32, got {state_bits!r}")
        for n in neurons:
            n.state_bits, n.state_rounding = state_bits, rounding
    return step
