"""Neurons that imported models need, each keeping its source library's exact rule (DESIGN.md, Neurons).

All run over ``[T, B, ...]`` (state reset at every call) and the spiking ones subclass `qnoise.neurons.IF`, so
`qnoise.spiking_neurons`, the probe (``reference="snn"``), checkpoints and `qnoise.interop.to_nir` see them.
Parameters (threshold, decays) are buffers of shape ``()`` (one per layer) or the neuron shape (one per neuron,
``x.shape[2:]``), in the units of the layer's input (no time unit: one step is one ``dt``).

`Leaky` (single compartment), per step t::

    charge  "beta":  v = beta * v + g * x                          qnoise IF/LIF, snnTorch Leaky, NIR IF
            "tau":   v = v + (r * x - (v - v_leak)) / tau           SpikingJelly LIF (decay_input), NIR LIF
            "tau_no_input": v = v - (v - v_leak) / tau + x          SpikingJelly LIF (decay_input=False)
    reset_time "next" (snnTorch): the subtraction of the previous spike comes after this step's leak:
            v = beta * v + x - s[t-1] * theta
    fire    s = H(v - theta) with ">=" (qnoise, SpikingJelly) or ">" (snnTorch, Norse, Loihi, NIR)
    reset   "subtract": v -= s * theta; "zero": v = v * (1 - s)   (after firing, unless reset_time "next")
    out     theta * s (spike_value "theta") or s ("one")

Each formula is evaluated in the source's own order of floating-point operations, so spikes agree exactly,
ties included (``tests/test_interop_neurons.py``).

`CUBA` (current-based LIF, Loihi / lava-dl, snnTorch Synaptic, SpikingJelly CUBALIFNode)::

    i = alpha * i + g * x          alpha = 1 - d_i: current retained per step
    v = beta * v + i               beta  = 1 - d_v
    s = H(v - theta) (">" as Loihi), reset v (to zero, or by subtraction), out = s or theta * s
    reset_time "next" (snnTorch Synaptic): the previous step's spike resets v after this step's charge
    (subtract: v -= s[t-1] theta; zero: v -= v s[t-1], so the step's input is lost)

Fixed-point mode (``state_bits`` set, Loihi): the input is rounded to an integer, decays are integers
``D = 4096 * d`` in units of 1/4096, each decay rounds toward zero and the state saturates at ``state_bits``::

    i = sign(i) * floor(|i| * (4096 - D_i) / 4096) + x
    v = sign(v) * floor(|v| * (4096 - D_v) / 4096) + i

The float copy the probe uses as reference (``state_bits=None``) runs the same decays in float.

Readouts that do not spike (LI, I), delays, scaling and sum pooling are in `qnoise.layer_kinds`.
"""

from __future__ import annotations

import torch
from torch import nn

from .neurons import IF, NeuronTrace
from .quant.state import quantize_membrane
from .surrogate import spike

CHARGES = ("beta", "tau", "tau_no_input")
FIRES = (">=", ">")
RESET_TIMES = ("now", "next")
SPIKE_VALUES = ("theta", "one")
LOIHI_UNITY = 4096  # decays in units of 1/4096


def param_tensor(value, name: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32).detach().clone()
    if any_true(~torch.isfinite(t)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return t


def any_true(mask: torch.Tensor) -> bool:
    """``mask.any()``, False on the meta device (shapes only: a checkpoint's model checked before loading)."""
    return False if mask.is_meta else bool(mask.any())


def _check(value: str, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {allowed}")
    return value


def per_neuron(p: torch.Tensor, x: torch.Tensor, name: str, owner: str) -> torch.Tensor:
    """``p`` (``()`` or the neuron shape) checked against ``x [T, B, ...]``: it broadcasts against ``x[t]``."""
    if p.dim():
        neuron = tuple(x.shape[2:])
        try:
            ok = p.dim() <= len(neuron) and torch.broadcast_shapes(tuple(p.shape), neuron) == neuron
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"{owner} holds {name} of shape {tuple(p.shape)} (per neuron) but its input has shape "
                             f"{tuple(x.shape)}: expected [T, B, ...] with ... = {tuple(p.shape)} or broadcasting to it")
    return p.to(x.dtype)


class _Foreign(IF):
    """What the foreign spiking neurons share: thresholds of any shape, the firing test, the spike value."""

    def _setup(self, threshold, fire: str, spike_value: str, source: str) -> None:
        theta = param_tensor(threshold, "threshold")
        if any_true(theta <= 0):
            raise ValueError(f"threshold must be > 0, got {theta.tolist()}")
        if self.learn_threshold:
            self.raw_threshold = nn.Parameter(theta)
        else:
            self.raw_threshold = theta
        self.fire = _check(fire, FIRES, "fire")
        self.spike_value = _check(spike_value, SPIKE_VALUES, "spike_value")
        self.source = str(source)

    @property
    def threshold(self) -> torch.Tensor:
        """The threshold as stored (``()`` or the neuron shape); imported values are kept exactly."""
        return self.raw_threshold

    def broadcast_threshold(self, x: torch.Tensor) -> torch.Tensor:
        return per_neuron(self.threshold, x, "thresholds", type(self).__name__)

    def _fire(self, v: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        s = spike(v - theta, self.surrogate)
        if self.fire == ">":  # H(0) = 0: a membrane exactly at the threshold does not fire
            s = s - (v == theta).to(s.dtype)
        return s

    def _out(self, s: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return theta * s if self.spike_value == "theta" else s

    def _fire_and_reset(self, v: torch.Tensor, theta: torch.Tensor, s_prev: torch.Tensor, outs: list,
                        mems: list | None, spikes: list) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's firing on the charged membrane ``v``: the output appended to ``outs`` (and ``v`` and the
        spike to ``mems`` and ``spikes`` when recording), then the reset: by subtraction (``v - s theta``) or to
        zero (``v (1 - s)``) now, or left to the next step's charge (``reset_time="next"``, snnTorch's order).
        Returns ``(v, s_prev)``: the membrane after this step and the spike the next step resets with."""
        s = self._fire(v, theta)
        if mems is not None:
            mems.append(v)
            spikes.append(s)
        outs.append(self._out(s, theta))
        if self.reset_time == "next":
            return v, s.detach()
        return (v - s * theta if self.reset == "subtract" else v * (1 - s)), s_prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self._run(x, record=False)

    def trace(self, x: torch.Tensor) -> NeuronTrace:
        self._check_input(x)
        return self._run(x, record=True)

    def membrane_sums(self, x: torch.Tensor, membrane: torch.Tensor, spikes: torch.Tensor,
                      theta: torch.Tensor) -> torch.Tensor:
        """``[T, 2]`` float64 per-step sums (``sum v_pre^2``, ``sum (v_q - v_pre)^2``) of a neuron whose state is
        quantized: ``v_pre`` is the value before quantization (`qnoise.probe.sums.membrane_sums`)."""
        tr = self._run(x, record=True, pre=True)
        dims = tuple(range(1, x.dim()))
        pre = tr[1].double()
        return torch.stack([pre.pow(2).sum(dims), (tr[0].membrane.double() - pre).pow(2).sum(dims)], 1)

    state_variables = 1  # membranes per neuron (CUBA also keeps a current)

    def stored_parameters(self) -> list[tuple[int, int]]:
        """``(count, bits)`` of the rule's parameters a hardware stores besides the threshold, for the probe's
        memory count: those that differ from their neutral value (a gain of 1, a leak potential of 0, ...)."""
        return [(t.numel(), 32) for t, neutral in self._rule_parameters() if not bool((t == neutral).all())]

    def _rule_parameters(self) -> list[tuple[torch.Tensor, float]]:
        return []

    def _fire_info(self) -> str:
        return f"fire='{self.fire}', spike_value={self.spike_value}, source={self.source}"


class Leaky(_Foreign):
    """Leaky or plain integrate-and-fire with a source library's exact rule (module docstring).

    Args:
        threshold: theta, a float or a tensor of the neuron shape (> 0).
        charge: ``"beta"``, ``"tau"`` or ``"tau_no_input"``.
        beta: retention per step for ``"beta"`` (1: IF); a float or per-neuron tensor in [0, 1].
        gain: input gain g for ``"beta"`` (NIR IF: ``r * dt``).
        tau: time constant in steps for the ``"tau"`` rules (> 0).
        r, v_leak: NIR's resistance and leak potential for ``"tau"`` (SpikingJelly: 1 and 0).
        reset: ``"subtract"`` or ``"zero"``; reset_time: ``"now"`` or ``"next"`` (snnTorch).
        fire: ``">="`` or ``">"``; spike_value: ``"theta"`` or ``"one"``.
        source: where the rule comes from (recorded, shown in tables' sidecars).
        state_bits, state_rounding: membrane quantized after charging, as `qnoise.neurons.IF`.
    """

    def __init__(self, threshold=1.0, charge: str = "beta", beta=1.0, gain=1.0, tau=2.0, r=1.0, v_leak=0.0,
                 reset: str = "subtract", reset_time: str = "now", fire: str = ">=", spike_value: str = "theta",
                 source: str = "qnoise", state_bits: int | None = None, state_rounding: str = "nearest",
                 learn_threshold: bool = False, surrogate: str = "atan") -> None:
        super().__init__(threshold=1.0, v_init="zero", reset=reset, learn_threshold=learn_threshold,
                         surrogate=surrogate, state_bits=state_bits, state_rounding=state_rounding)
        self._setup(threshold, fire, spike_value, source)
        self.charge = _check(charge, CHARGES, "charge")
        self.reset_time = _check(reset_time, RESET_TIMES, "reset_time")
        if reset_time == "next" and (reset != "subtract" or charge != "beta"):
            raise ValueError("reset_time='next' (snnTorch) is defined for reset='subtract' with charge='beta'; "
                             "a reset to zero before the leak is the same as reset_time='now'")
        b = param_tensor(beta, "beta")
        if any_true((b < 0) | (b > 1)):
            raise ValueError(f"beta must be in [0, 1], got {b.tolist()}")
        t = param_tensor(tau, "tau")
        if any_true(t <= 0):
            raise ValueError(f"tau must be > 0 (steps), got {t.tolist()}")
        self.register_buffer("raw_beta", b)
        self.register_buffer("gain", param_tensor(gain, "gain"))
        self.register_buffer("tau", t)
        self.register_buffer("r", param_tensor(r, "r"))
        self.register_buffer("v_leak", param_tensor(v_leak, "v_leak"))

    def _rule_parameters(self) -> list[tuple[torch.Tensor, float]]:
        if self.charge == "beta":
            return [(self.raw_beta, 1.0), (self.gain, 1.0)]
        return [(self.tau, float("nan")), (self.r, 1.0), (self.v_leak, 0.0)]  # tau is always stored

    @property
    def beta(self) -> torch.Tensor | float:
        """Retention per step: ``beta`` for the ``"beta"`` rule, ``1 - 1/tau`` for the others; 1.0 (a float,
        so rules read it as no leak) for an IF."""
        if self.charge == "beta":
            b = self.raw_beta
            return 1.0 if b.dim() == 0 and float(b) == 1.0 else b
        return 1.0 - 1.0 / self.tau

    def _charge(self, v: torch.Tensor, xt: torch.Tensor, p: dict) -> torch.Tensor:
        if self.charge == "beta":
            g = xt if p["unit_gain"] else p["gain"] * xt
            return v + g if p["no_leak"] else p["beta"] * v + g
        if self.charge == "tau":
            rx = xt if p["unit_r"] else p["r"] * xt
            return v + (rx - (v - p["v_leak"])) / p["tau"]
        return v - (v - p["v_leak"]) / p["tau"] + xt

    def _params(self, x: torch.Tensor) -> dict:
        name = type(self).__name__
        p = {k: per_neuron(getattr(self, k), x, k, name) for k in ("gain", "tau", "r", "v_leak")}
        p["beta"] = per_neuron(self.raw_beta, x, "beta", name)
        p["no_leak"] = self.raw_beta.dim() == 0 and float(self.raw_beta) == 1.0
        p["unit_gain"] = self.gain.dim() == 0 and float(self.gain) == 1.0
        p["unit_r"] = self.r.dim() == 0 and float(self.r) == 1.0
        return p

    def _run(self, x: torch.Tensor, record: bool, pre: bool = False):
        theta = self.broadcast_threshold(x)
        p = self._params(x)
        v = torch.zeros_like(x[0])
        s_prev = torch.zeros_like(x[0])
        outs, mems, spikes, pres = [], [], [], []
        for xt in x.unbind(0):
            v = self._charge(v, xt, p)
            if self.reset_time == "next":
                v = v - s_prev * theta
            if pre:
                pres.append(v)
            if self.state_bits is not None:
                v = quantize_membrane(v, theta, self.state_bits, self.state_rounding)
            v, s_prev = self._fire_and_reset(v, theta, s_prev, outs, mems if record else None, spikes)
        out = torch.stack(outs)
        if not record:
            return out
        trace = NeuronTrace(out=out, membrane=torch.stack(mems), spikes=torch.stack(spikes))
        return (trace, torch.stack(pres)) if pre else trace

    def extra_repr(self) -> str:
        return (f"charge={self.charge}, reset={self.reset}, reset_time={self.reset_time}, "
                + self._fire_info())


class CUBA(_Foreign):
    """Current-based LIF (module docstring): float, or Loihi's fixed point when ``state_bits`` is set.

    Args:
        threshold: theta (> 0), a float or per-neuron tensor.
        alpha, beta: current and voltage retention per step, in [0, 1] (``1 - d_i``, ``1 - d_v``).
        gain: input gain g (NIR CubaLIF: ``w_in * dt / tau_syn``).
        reset, reset_time, fire, spike_value, source: as `Leaky` (Loihi: ``"zero"``, ``"now"``, ``">"``,
            ``"one"``).
        state_bits: None (float) or the integer state's width (Loihi: 24); then ``4096 * (1 - alpha)`` and
            ``4096 * (1 - beta)`` must be integers (`CUBA.loihi` builds it from ``du``, ``dv``).
    """

    def __init__(self, threshold=1.0, alpha=0.5, beta=0.5, gain=1.0, reset: str = "zero",
                 reset_time: str = "now", fire: str = ">", spike_value: str = "one", source: str = "qnoise",
                 state_bits: int | None = None, learn_threshold: bool = False, surrogate: str = "atan") -> None:
        super().__init__(threshold=1.0, v_init="zero", reset=reset, learn_threshold=learn_threshold,
                         surrogate=surrogate)
        self._setup(threshold, fire, spike_value, source)
        self.reset_time = _check(reset_time, RESET_TIMES, "reset_time")
        for name, value in (("alpha", alpha), ("beta", beta)):
            t = param_tensor(value, name)
            if any_true((t < 0) | (t > 1)):
                raise ValueError(f"{name} must be in [0, 1], got {t.tolist()}")
            self.register_buffer(f"raw_{name}" if name == "beta" else name, t)
        self.register_buffer("gain", param_tensor(gain, "gain"))
        self.state_bits = state_bits  # checked in _run (the probe sets it to None for the float reference)

    @classmethod
    def loihi(cls, threshold, du: int, dv: int, state_bits: int = 24, **kwargs) -> CUBA:
        """Loihi's CUBA LIF: decays ``du``, ``dv`` in 1/4096 (0..4096), integer state of ``state_bits``, ``>``,
        reset to zero, spikes of value 1."""
        for name, d in (("du", du), ("dv", dv)):
            if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= LOIHI_UNITY:
                raise ValueError(f"{name} must be an int in 0..{LOIHI_UNITY}, got {d!r}")
        kwargs.setdefault("source", "loihi")
        return cls(threshold, 1 - du / LOIHI_UNITY, 1 - dv / LOIHI_UNITY, state_bits=state_bits, **kwargs)

    state_variables = 2  # the current and the membrane

    @property
    def beta(self) -> torch.Tensor:
        return self.raw_beta

    def stored_parameters(self) -> list[tuple[int, int]]:
        """The decays (12 bits each in fixed point, as Loihi stores them; else 32) and a gain other than 1."""
        bits = 12 if self.state_bits is not None else 32
        out = [(self.alpha.numel(), bits), (self.raw_beta.numel(), bits)]
        return out + ([(self.gain.numel(), 32)] if not bool((self.gain == 1).all()) else [])

    def decay_units(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(D_i, D_v)``: the decays in 1/4096 (fixed point); raises when they are not integers."""
        out = []
        for name, keep in (("alpha", self.alpha), ("beta", self.raw_beta)):
            d = (1 - keep.double()) * LOIHI_UNITY
            if not bool((d == d.round()).all()):
                raise ValueError(f"CUBA fixed point needs 4096 * (1 - {name}) to be an integer, got "
                                 f"{d.flatten()[:4].tolist()}")
            out.append(d.round())
        return out[0], out[1]

    def _run(self, x: torch.Tensor, record: bool, pre: bool = False):
        name = type(self).__name__
        theta = self.broadcast_threshold(x)
        alpha = per_neuron(self.alpha, x, "alpha", name)
        beta = per_neuron(self.raw_beta, x, "beta", name)
        gain = per_neuron(self.gain, x, "gain", name)
        unit_gain = self.gain.dim() == 0 and float(self.gain) == 1.0
        fixed = self.state_bits is not None
        if fixed:
            if not (isinstance(self.state_bits, int) and 2 <= self.state_bits <= 32):
                raise ValueError(f"state_bits must be an int in 2..32 or None, got {self.state_bits!r}")
            du, dv = (d.to(x.device) for d in self.decay_units())
            keep_i = per_neuron(LOIHI_UNITY - du, x, "alpha", name).double()
            keep_v = per_neuron(LOIHI_UNITY - dv, x, "beta", name).double()
            limit = 2.0 ** (self.state_bits - 1) - 1
            work = torch.float64  # integers up to 2^32 * 4096 are exact in float64
        i = torch.zeros_like(x[0], dtype=work if fixed else x.dtype)
        v = torch.zeros_like(i)
        s_prev = torch.zeros_like(i)
        outs, mems, spikes, pres = [], [], [], []
        for xt in x.unbind(0):
            g = xt if unit_gain else gain * xt
            if fixed:
                g = torch.round(g.to(work))
                i = (torch.sign(i) * torch.floor(i.abs() * keep_i / LOIHI_UNITY) + g).clamp(-limit, limit)
                v_pre = beta.to(work) * v + i
                v = (torch.sign(v) * torch.floor(v.abs() * keep_v / LOIHI_UNITY) + i).clamp(-limit, limit)
            else:
                i = alpha * i + g
                v = beta * v + i
                v_pre = v
            if self.reset_time == "next":  # snnTorch Synaptic: the previous spike resets after this charge
                if self.reset == "subtract":
                    v, v_pre = v - s_prev * theta, v_pre - s_prev * theta
                else:
                    v, v_pre = v - v * s_prev, v_pre - v_pre * s_prev
            if pre:
                pres.append(v_pre)
            v, s_prev = self._fire_and_reset(v, theta.to(v.dtype), s_prev, outs, mems if record else None, spikes)
        out = torch.stack(outs).to(x.dtype)
        if not record:
            return out
        trace = NeuronTrace(out=out, membrane=torch.stack(mems).to(x.dtype), spikes=torch.stack(spikes).to(x.dtype))
        return (trace, torch.stack(pres).to(x.dtype)) if pre else trace

    def extra_repr(self) -> str:
        mode = f"fixed point {self.state_bits} bits" if self.state_bits is not None else "float"
        return f"{mode}, reset={self.reset}, reset_time={self.reset_time}, " + self._fire_info()
