"""The ANN twin of an SNN and its activations.

`ann_twin` derives the twin from any model built with qnoise neurons: a deep copy in which every neuron
becomes `qnoise.neurons.ClampActivation`, ``a(z) = clamp(z, 0, theta)`` with the neuron's (effective)
threshold, run with T = 1. Weights are the float weights (``reference="float"``: the whole drop a user
sees) or the SNN's quantized weights, frozen as they are (``reference="quantized"``: what spiking alone
adds). A model converted from a quantized ANN can pass that ANN itself as the reference; its activation
modules (``ReLU``, `LearnableClip`, `ClampActivation`, ...) are matched to the neurons in definition order.

What the twin sees (``twin_input``):

- ``"mean"`` (default): the mean of the T input frames, ``r_0(T)``, once per sample. For static input
  (the same frame at every step) this is the frame itself; for event data it is the rate-coded sample the
  ANN would be given, and the SNN at t < T is compared with the ANN's answer on the whole sample (the part
  of the input not yet seen shows up as propagated error of the first layer).
- ``"cumulative"``: at step t the twin sees ``r_0(t)``, the mean of frames 1..t; the layer-0 propagated
  error is then zero by construction. It costs one twin forward per timestep (T times ``"mean"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..neurons import ClampActivation, spiking_neurons
from ..quant import LearnableClip
from .copying import clone_model
from .functional import cumulative_mean

TWIN_INPUTS = ("mean", "cumulative")
REFERENCES = ("float", "quantized")
ANN_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, LearnableClip, ClampActivation)


@dataclass
class TwinActivations:
    """The twin's view of one batch: per neuron layer its pre-activation ``Z`` and (for a custom
    reference) activation ``A``, each ``[Tt, B, ...]``; and its output ``[Tt, B, classes]``.
    ``Tt`` is 1 (``twin_input="mean"``) or T (``"cumulative"``). ``A`` is None for a clamp twin,
    where ``A = clamp(Z, 0, theta)`` is recomputed on the fly. ``isolated`` caches isolated-mode sums,
    which depend only on the twin's input and the neuron, for runs that share these activations."""

    Z: dict[str, torch.Tensor]
    A: dict[str, torch.Tensor] | None
    output: torch.Tensor
    isolated: dict = field(default_factory=dict)

    def nbytes(self) -> int:
        tensors = [*self.Z.values(), *(self.A or {}).values(), self.output]
        return sum(t.numel() * t.element_size() for t in tensors)


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


def ann_twin(model: nn.Module, reference: str = "float") -> nn.Module:
    """The ANN twin of ``model`` (see the module docstring); ``model`` is left as it was."""
    if reference not in REFERENCES:
        raise ValueError(f"reference={reference!r} is not one of {REFERENCES} (or an nn.Module)")
    twin = clone_model(model, reference)
    for name, neuron in spiking_neurons(twin):
        _set_module(twin, name, ClampActivation(neuron))
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin.eval()


def activation_modules(twin: nn.Module, neuron_names: list[str]) -> dict[str, nn.Module]:
    """Map neuron name -> the twin's activation module standing in for it (same name, or definition order)."""
    mods = dict(twin.named_modules())
    if all(isinstance(mods.get(n), ClampActivation) for n in neuron_names):
        return {n: mods[n] for n in neuron_names}
    acts = [m for _, m in twin.named_modules() if isinstance(m, ANN_ACTIVATIONS)]
    if len(acts) != len(neuron_names):
        raise ValueError(f"the reference ANN has {len(acts)} activation modules "
                         f"({', '.join(t.__name__ for t in ANN_ACTIVATIONS)}) but the SNN has "
                         f"{len(neuron_names)} neuron layers; they are matched in definition order")
    return dict(zip(neuron_names, acts, strict=True))


def twin_input(x: torch.Tensor, mode: str) -> torch.Tensor:
    """The twin's input for an SNN input ``x [T, B, ...]``: ``[1, B, ...]`` (mean) or ``[T, B, ...]``."""
    if mode == "mean":
        return x.mean(0, keepdim=True)
    if mode == "cumulative":
        return cumulative_mean(x)
    raise ValueError(f"twin_input={mode!r} is not one of {TWIN_INPUTS}")


@torch.no_grad()
def run_twin(twin: nn.Module, acts: dict[str, nn.Module], x: torch.Tensor, mode: str,
             keep_activation: bool) -> TwinActivations:
    """Run the twin on ``twin_input(x, mode)`` and record each activation's input (and output)."""
    Z: dict[str, torch.Tensor] = {}
    A: dict[str, torch.Tensor] = {}
    handles = []
    for name, m in acts.items():
        def hook(mod, args, out, name=name):
            Z[name] = args[0]
            if keep_activation:
                A[name] = out
        handles.append(m.register_forward_hook(hook))
    try:
        out = twin(twin_input(x, mode))
    finally:
        for h in handles:
            h.remove()
    missing = set(acts) - set(Z)
    if missing:
        raise ValueError(f"the reference ANN never ran the activations for {sorted(missing)}")
    return TwinActivations(Z, A if keep_activation else None, out)
