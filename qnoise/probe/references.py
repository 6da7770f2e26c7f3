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
quantized weights; its output is ``out_own``.

Only IF neurons have an ANN twin (their rate transfer function is ``clamp(z, 0, theta)``): for a model with
any other neuron, `twin_unavailable` says why, and the probe gives no ANN-twin rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..neurons import IF, ClampActivation, spiking_neurons
from ..quant import weight_quantizers
from .activation import ANN_ACTIVATIONS
from .copying import clone_model
from .terms import cumulative_mean


def set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule called ``name`` of ``root`` by ``new``."""
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


def twin_unavailable(model: nn.Module) -> str | None:
    """Why ``model`` has no ANN twin (None when it has one): a neuron whose rate is not ``clamp(z, 0, theta)``."""
    others = [(name, type(n).__name__) for name, n in spiking_neurons(model) if type(n) is not IF]
    if not others:
        return None
    listed = ", ".join(f"{name} ({kind})" for name, kind in others[:4])
    return (f"no ANN twin: layer(s) {listed} are not IF neurons, whose rate would be clamp(z, 0, theta); "
            f"compare with the same SNN at full precision instead (reference='snn')")


def twin_input(x: torch.Tensor, mode: str) -> torch.Tensor:
    """The twin's input for an SNN input ``x [T, B, ...]``: ``[1, B, ...]`` (mean) or ``[T, B, ...]``."""
    if mode == "mean":
        return x.mean(0, keepdim=True)
    if mode == "cumulative":
        return cumulative_mean(x)
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
def _record(model: nn.Module, modules: dict[str, nn.Module], x: torch.Tensor, replace: dict | None = None
            ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """Run ``model`` on ``x`` with a forward hook on each of ``modules``: returns each one's input and output
    and the model's output. With ``replace``, each module's output is replaced by ``replace[name]`` after it
    is recorded (the rest of the model then sees the replacement)."""
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name, m in modules.items():
        def hook(mod, args, out, name=name):
            inputs[name], outputs[name] = args[0], out
            return None if replace is None else replace[name]
        handles.append(m.register_forward_hook(hook))
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    missing = set(modules) - set(inputs)
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
            parametrize.remove_parametrizations(n, "raw_threshold", leave_parametrized=False)
        n.state_bits = None
    for p in snn.parameters():
        p.requires_grad_(False)
    return snn.eval()


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
        return sum(t.numel() * t.element_size() for t in [*self.out_ref.values(), self.output])


class SnnReference:
    """The float SNN of ``model`` and the quantized copy whose neurons are fed the float SNN's spikes."""

    kind = "snn"

    def __init__(self, model: nn.Module) -> None:
        self.snn = float_snn(model)
        self.neurons = dict(spiking_neurons(self.snn))
        self.own = clone_model(model, "quantized").eval()
        self.own_neurons = dict(spiking_neurons(self.own))

    @torch.no_grad()
    def run(self, x: torch.Tensor) -> SnnActivations:
        _, out_ref, output = _record(self.snn, self.neurons, x)
        return SnnActivations(out_ref, output)

    @torch.no_grad()
    def complete(self, acts: SnnActivations, x: torch.Tensor) -> SnnActivations:
        inputs, out_own, _ = _record(self.own, self.own_neurons, x, replace=acts.out_ref)
        return SnnActivations(acts.out_ref, acts.output, out_own, inputs)
