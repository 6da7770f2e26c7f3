"""What the probe compares an SNN with (DESIGN.md, "Noise: what the probe measures"): its ANN twin, a given
ANN, or the same SNN at full precision; and the extra passes that place each error in its own term.

ANN references (`AnnReference`), run with T = 1 on the mean input frame (``twin_input="mean"``) or, at step
t, on the mean of frames 1..t (``"cumulative"``, T twin steps):

- ``"ann"``: the twin: a copy of the SNN whose neurons become ``clamp(z, 0, theta)`` (its thresholds as the
  SNN has them) and whose weights are float. ``"ann-quantized"``: the same with the SNN's quantized weights.
- ``"source"`` / a given ANN: that ANN as it is, its activations (ReLU, LearnableClip, ...) matched to the
  neurons in definition order; each layer's activation function ``a_l`` is that ANN's own.

Besides the twin's activations ``A_l`` each batch needs ``z_hat_l = f_l^q(A_{l-1})``, the twin's input to
layer l through the SNN's own (quantized) synaptic op. One more pass gives it for any architecture: the SNN's
graph with its quantized weights, each neuron replaced by a stand-in that outputs the reference's ``A_l``
(a forward hook), so each stand-in receives exactly ``z_hat_l``. When the twin's weights are the SNN's own
(``"ann-quantized"``, or an SNN with float weights) ``z_hat = Z`` and the pass is skipped.

The float SNN (`SnnReference`, ``"snn"``): the same SNN with float weights, float thresholds and a float
membrane, run for T steps. Its own/propagated split needs the quantized SNN with each neuron's output
replaced by the float SNN's: each quantized neuron then runs on the float SNN's input spikes through its own
quantized weights; its output is ``out_own``. A model with float weights, thresholds and membrane is its own float
SNN: it is not run a second time (`SameSnn`: its spikes are read as the model runs).

Only IF neurons have an ANN twin (their rate transfer function is ``clamp(z, 0, theta)``): for a model with
any other neuron, `twin_unavailable` says why, and the probe gives no ANN-twin rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from .. import parametrized
from .. import stepmode, stepping
from ..neurons import ClampActivation, is_plain_if, spiking_neurons
from ..quant import weight_quantizers
from ..time_mean import frame_mean, running_mean
from .activation import ANN_ACTIVATIONS
from .copying import clone_model


def set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule called ``name`` of ``root`` by ``new``."""
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


def twin_unavailable(model: nn.Module) -> str | None:
    """Why ``model`` has no ANN twin (None when it has one): a neuron whose rate is not ``clamp(z, 0, theta)``."""
    others = [(name, type(n).__name__) for name, n in spiking_neurons(model) if not is_plain_if(n)]
    if not others:
        return None
    listed = ", ".join(f"{name} ({kind})" for name, kind in others[:4])
    return (f"no ANN twin: layer(s) {listed} are not IF neurons, whose rate would be clamp(z, 0, theta); "
            f"compare with the same SNN at full precision instead (reference='snn')")


def twin_input(x: torch.Tensor, mode: str) -> torch.Tensor:
    """The twin's input for an SNN input ``x [T, B, ...]``: ``[1, B, ...]`` (mean) or ``[T, B, ...]``."""
    if mode == "mean":
        return frame_mean(x)
    if mode == "cumulative":
        return running_mean(x)
    raise ValueError(f"twin_input={mode!r} is not one of ('mean', 'cumulative')")


def ann_twin(model: nn.Module, weights: str = "float") -> nn.Module:
    """The ANN twin of ``model``: a copy whose neurons are `ClampActivation` (``clamp(z, 0, theta)``), with
    float (``weights="float"``) or the SNN's quantized weights (``"quantized"``); ``model`` is unchanged."""
    twin = clone_model(model, weights)
    for name, neuron in spiking_neurons(twin):
        set_module(twin, name, ClampActivation(neuron))
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin.eval()


def activation_modules(ann: nn.Module, neuron_names: list[str]) -> dict[str, nn.Module]:
    """Map neuron name -> the ANN's activation module standing in for it (same name, or definition order)."""
    mods = dict(ann.named_modules())
    if all(isinstance(mods.get(n), ClampActivation) for n in neuron_names):
        return {n: mods[n] for n in neuron_names}
    acts = [m for _, m in ann.named_modules() if isinstance(m, ANN_ACTIVATIONS)]
    if len(acts) != len(neuron_names):
        raise ValueError(f"the reference ANN has {len(acts)} activation modules "
                         f"({', '.join(t.__name__ for t in ANN_ACTIVATIONS)}) but the SNN has "
                         f"{len(neuron_names)} neuron layers; they are matched in definition order")
    return dict(zip(neuron_names, acts, strict=True))


@torch.no_grad()
def _record(model: nn.Module, modules: dict[str, nn.Module], x: torch.Tensor, replace: dict | None = None,
            inputs_too: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """Run ``model`` on ``x`` with a forward hook on each of ``modules``: returns each one's input (unless
    ``inputs_too`` is False: an empty dict) and output, ``[T, ...]``, and the model's output. With ``replace``,
    each module's output is replaced by ``replace[name]`` after it is recorded (the rest of the model then sees
    the replacement). The hooks take one step at a time in a step-major run (`qnoise.stepping`), so the model
    runs in its fastest order."""
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    T = x.shape[0]

    def keep(store: dict, name: str, value: torch.Tensor, t: int) -> None:
        if name not in store:
            store[name] = value.new_empty(T, *value.shape)
        store[name][t] = value

    handles = []
    for name, m in modules.items():
        def hook(mod, args, out, name=name):
            run = stepmode.current()
            if run is not None and not run.fold:  # one step [B, ...] of a step-major run
                if inputs_too:
                    keep(inputs, name, args[0], run.t)
                keep(outputs, name, out, run.t)
                return None if replace is None else replace[name][run.t]
            if inputs_too:
                inputs[name] = args[0]
            outputs[name] = out
            return None if replace is None else replace[name]
        handles.append(m.register_forward_hook(stepping.step_aware(hook)))
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    missing = set(modules) - set(outputs)
    if missing:
        raise ValueError(f"the reference never ran the layers {sorted(missing)}")
    return inputs, outputs, out


@dataclass
class AnnActivations:
    """The ANN reference's view of one batch, per neuron layer ``[Tt, B, ...]``: ``Z`` its pre-activation,
    ``A`` its activation, ``z_hat`` its input through the SNN's quantized synaptic op (None until
    `AnnReference.complete`); ``output [Tt, B, classes]``; ``source_output`` the source ANN's, when known."""

    Z: dict[str, torch.Tensor]
    A: dict[str, torch.Tensor]
    output: torch.Tensor
    z_hat: dict[str, torch.Tensor] | None = None
    source_output: torch.Tensor | None = None

    def nbytes(self) -> int:
        tensors = [*self.Z.values(), *self.A.values(), self.output]
        return sum(t.numel() * t.element_size() for t in tensors)


class _StandIn(nn.Module):
    """Takes a neuron's place in the z_hat pass: the hook records its input; it outputs zeros of its shape
    (the hook then substitutes the reference's activation)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(z)


class AnnReference:
    """An ANN reference for ``model`` (module docstring). ``kind``: ``"ann"``, ``"ann-quantized"``,
    ``"source"`` or ``"ann-given"`` (then ``ann`` is the ANN module). ``source``: the quantized ANN a
    converted model came from, if known, to report its accuracy. Built from the model's weights at this
    moment."""

    def __init__(self, model: nn.Module, kind: str = "ann", ann: nn.Module | None = None,
                 twin_input: str = "mean", source: nn.Module | None = None) -> None:
        neurons = [name for name, _ in spiking_neurons(model)]
        self.kind, self.twin_input = kind, twin_input
        if kind in ("ann", "ann-quantized"):
            self.ann = ann_twin(model, "float" if kind == "ann" else "quantized")
        elif ann is None:
            raise ValueError(f"reference kind {kind!r} needs the ANN")
        else:
            self.ann = ann.eval()
        self.activations = activation_modules(self.ann, neurons)
        self.source = source.eval() if source is not None else (self.ann if kind == "source" else None)
        quantized = bool(weight_quantizers(model))
        self.same_weights = kind == "ann-quantized" or (kind == "ann" and not quantized)
        self.graph: nn.Module | None = None
        if not self.same_weights:  # the SNN's synaptic ops with its quantized weights; neurons are stand-ins
            self.graph = clone_model(model, "quantized").eval()
            for name in neurons:
                set_module(self.graph, name, _StandIn())
            self.stand_ins = {name: self.graph.get_submodule(name) for name in neurons}

    @torch.no_grad()
    def run(self, x: torch.Tensor) -> AnnActivations:
        """The ANN's activations for ``x [T, B, ...]`` (without z_hat: see `complete`)."""
        inp = twin_input(x, self.twin_input)
        Z, A, out = _record(self.ann, self.activations, inp)
        source = None
        if self.source is not None:
            source = out if self.source is self.ann else self.source(inp)
        return AnnActivations(Z, A, out, source_output=source)

    @torch.no_grad()
    def complete(self, acts: AnnActivations, x: torch.Tensor) -> AnnActivations:
        """``acts`` with ``z_hat`` for this model's weights (a new value: cached ``acts`` stay as they were)."""
        if self.same_weights:
            z_hat = acts.Z
        else:
            z_hat, _, _ = _record(self.graph, self.stand_ins, twin_input(x, self.twin_input), replace=acts.A)
        return AnnActivations(acts.Z, acts.A, acts.output, z_hat, acts.source_output)


def float_snn(model: nn.Module) -> nn.Module:
    """The same SNN at full precision: float weights, float thresholds, float membrane."""
    snn = clone_model(model, "float")
    for _, n in spiking_neurons(snn):
        if parametrize.is_parametrized(n, "raw_threshold"):
            parametrized.remove(n, "raw_threshold", leave_parametrized=False)
        n.state_bits = None
    for p in snn.parameters():
        p.requires_grad_(False)
    return snn.eval()


class SameSnn:
    """The float SNN's view when the float SNN is the model itself (`SnnReference.own_is_ref`: float weights,
    thresholds and membrane; `float_snn` would copy it unchanged): its spikes, own outputs and output are the
    model's, read as it runs, so nothing is computed beforehand and nothing is cached."""

    def nbytes(self) -> int:
        return 0


@dataclass
class SnnActivations:
    """The float SNN's view of one batch: each neuron's output ``out_ref [T, B, ...]`` and the network's
    ``output [T, B, classes]``; ``out_own`` each quantized neuron's output on the float SNN's input spikes
    (None until `SnnReference.complete`)."""

    out_ref: dict[str, torch.Tensor]
    output: torch.Tensor
    out_own: dict[str, torch.Tensor] | None = None
    inputs_own: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def nbytes(self) -> int:
        tensors = [*self.out_ref.values(), self.output, *(self.inputs_own or {}).values()]
        return sum(t.numel() * t.element_size() for t in tensors)


class SnnReference:
    """The float SNN of ``model`` and the quantized copy whose neurons are fed the float SNN's spikes.

    When the model's weights are not quantized, its synaptic ops are the float SNN's, so each of its neurons
    fed the float SNN's spikes gets exactly the float SNN's neuron input: the own pass is then the model's
    neurons run on the inputs the float SNN's neurons recorded (``shortcut``), not a second network; and when
    its neurons are at full precision too (thresholds not quantized, float membrane) each of them is the float
    SNN's own neuron, so its output is the float SNN's (``own_is_ref``)."""

    kind = "snn"

    def __init__(self, model: nn.Module) -> None:
        self.snn = float_snn(model)
        self.neurons = dict(spiking_neurons(self.snn))
        self.own = clone_model(model, "quantized").eval()
        self.own_neurons = dict(spiking_neurons(self.own))
        self.shortcut = not weight_quantizers(model)
        self.own_is_ref = self.shortcut and all(
            n.state_bits is None and not parametrize.is_parametrized(n, "raw_threshold")
            for n in self.own_neurons.values())

    @torch.no_grad()
    def run(self, x: torch.Tensor) -> SnnActivations | SameSnn:
        if self.own_is_ref:  # the model is its own float SNN: its spikes are read as it runs
            return SameSnn()
        keep = self.shortcut and not self.own_is_ref
        inputs, out_ref, output = _record(self.snn, self.neurons, x, inputs_too=keep)
        return SnnActivations(out_ref, output, inputs_own=inputs if keep else None)

    @torch.no_grad()
    def complete(self, acts: SnnActivations | SameSnn, x: torch.Tensor) -> SnnActivations | SameSnn:
        if isinstance(acts, SameSnn):
            return acts
        if self.own_is_ref:
            return SnnActivations(acts.out_ref, acts.output, acts.out_ref, acts.inputs_own)
        if self.shortcut and acts.inputs_own is not None:  # each neuron on the float SNN's input to it
            with stepmode.paused():
                out_own = {name: n(acts.inputs_own[name]) for name, n in self.own_neurons.items()}
            return SnnActivations(acts.out_ref, acts.output, out_own, acts.inputs_own)
        inputs, out_own, _ = _record(self.own, self.own_neurons, x, replace=acts.out_ref)
        return SnnActivations(acts.out_ref, acts.output, out_own, inputs)


class SnnLockstep:
    """The float SNN, and each quantized neuron fed its spikes, advanced one timestep at a time in lockstep with a
    step-major run of the model (`qnoise.stepping`): nothing of size T is kept but the float SNN's output.

    `advance` to step t runs the float SNN's step t (a `qnoise.stepping.Stepper`) with hooks that keep each
    neuron's input and output for this step (``ref``), then the own pass: each of the model's neurons at its own
    precision steps on the float SNN's input to it when the model's weights are float (`SnnReference`'s
    shortcut), else the quantized copy steps with each neuron's output replaced by the float SNN's (``own``).
    `close` removes the hooks and leaves ``output [T, B, classes]``, the float SNN's, for the run-level rows.
    """

    def __init__(self, reference: SnnReference, x: torch.Tensor) -> None:
        self.x, self.t, self.shortcut, self.same = x, -1, reference.shortcut, reference.own_is_ref
        self.inputs: dict[str, torch.Tensor] = {}
        self.ref: dict[str, torch.Tensor] = {}
        self.own: dict[str, torch.Tensor] = {}
        self.outputs: list[torch.Tensor] = []
        self.output: torch.Tensor | None = None
        self.snn = stepping.Stepper(lambda h: _step_body(reference.snn, h), T=x.shape[0])
        self.handles = [m.register_forward_hook(stepping.step_aware(
            lambda mod, args, out, name=name: self._keep_ref(name, args[0], out)))
            for name, m in reference.neurons.items()]
        self.own_neurons = reference.own_neurons
        self.states: dict[str, object] = {}
        if not self.shortcut:
            self.own_net = stepping.Stepper(lambda h: _step_body(reference.own, h), T=x.shape[0])
            self.handles += [m.register_forward_hook(stepping.step_aware(
                lambda mod, args, out, name=name: self._swap_own(name, out)))
                for name, m in reference.own_neurons.items()]

    def _keep_ref(self, name: str, x: torch.Tensor, out: torch.Tensor) -> None:
        self.inputs[name], self.ref[name] = x, out

    def _swap_own(self, name: str, out: torch.Tensor) -> torch.Tensor:
        self.own[name] = out
        return self.ref[name]

    @torch.no_grad()
    def advance(self, t: int) -> None:
        """Compute steps up to t (0-based) of the float SNN and of the own pass."""
        while self.t < t:
            self.t += 1
            xt = self.x[self.t]
            self.outputs.append(self.snn.step(xt))
            if self.same:
                self.own = self.ref
            elif self.shortcut:
                for name, n in self.own_neurons.items():
                    self.own[name], self.states[name] = n.step(self.inputs[name], self.states.get(name))
            else:
                self.own_net.step(xt)

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        if self.outputs:
            self.output = torch.stack(self.outputs)


def _step_body(model: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """One step of a network's body: its container's forward (a `qnoise.models.Network`'s own forward takes
    ``[T, B, ...]``)."""
    return nn.Sequential.forward(model, h) if isinstance(model, nn.Sequential) else type(model).forward(model, h)
