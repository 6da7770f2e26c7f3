"""What the probe needs to know about a model's graph, found once per model by running it on one sample:

- the spiking layers in execution order, and for each the synaptic (Conv/Linear) modules that feed it
  (every weight layer executed after the previous neuron and before this one; the weight layers after the
  last neuron form the readout layer);
- fan-out maps: for each spike source (a neuron layer, or the data ``"<input>"``) and each weight layer it
  reaches without crossing another neuron, how many *nonzero* weights each source position reaches (the
  effective synaptic operations of NeuroBench: a spike reaching a zero weight costs nothing);
- dense MACs per weight layer (per sample and timestep), for the ANN's cost.

Fan-outs come from an *indicator copy* of the model: every weight set to 1 where the model's (quantized)
weight is nonzero and to 0 where it is zero, bias to 0, batch norm removed,
average pooling turned into sum pooling, and each neuron replaced by a fresh leaf tensor. The gradient of the
sum of a weight layer's outputs with respect to a source then counts, per source position, the weights that
position's events reach — the accumulates an event costs when pooling is folded into the next layer's
weights (as neuromorphic hardware does), with padding handled exactly. This assumes, as the probe does,
that the ops between neurons are affine and built from modules (`qnoise.layers.MultiStep`, ``nn.AvgPool``,
``nn.Flatten``, residual adds); max pooling would be counted as one path per window.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers import MultiStep
from ..metrics import dense_macs
from ..layer_kinds import Delay
from ..neurons import IF
from ..quant import float_weight, weight_layers
from .copying import clone_model

INPUT = "<input>"
OUTPUT = "<output>"

_AVG_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ADAPTIVE_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)


@dataclass
class LayerInfo:
    """One row group of the table: a neuron layer (``neuron`` set) or the readout (``neuron`` None)."""

    name: str
    neuron: str | None
    synapses: list[str] = field(default_factory=list)


@dataclass
class Structure:
    """See the module docstring. ``fanout[source] = (F [N_source, M] float64, [weight layer names])``."""

    layers: list[LayerInfo]
    fanout: dict[str, tuple[torch.Tensor, list[str]]]
    macs: dict[str, int]
    layer_of: dict[str, str]
    neuron_size: dict[str, int]

    @property
    def neuron_layers(self) -> list[LayerInfo]:
        return [layer for layer in self.layers if layer.neuron is not None]


class _Source(nn.Module):
    """Stands in for a neuron in the indicator copy: its output is a new leaf, cutting paths from below."""

    def __init__(self) -> None:
        super().__init__()
        self.leaf: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.leaf = torch.zeros_like(x, dtype=torch.float32).requires_grad_(True)
        return self.leaf


class _SumPool(nn.Module):
    """Average pooling times its window size: one path of weight 1 per (input, window) pair."""

    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(x)
        if isinstance(self.pool, _AVG_POOLS):
            k = self.pool.kernel_size
            area = math.prod(k) if isinstance(k, tuple) else k ** (x.dim() - 2)
        else:  # adaptive: average window = input size / output size
            dims = {nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3}[type(self.pool)]
            area = math.prod(x.shape[-dims:]) / math.prod(y.shape[-dims:])
        return y * area


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def display_name(model: nn.Module, module_name: str) -> str:
    """A weight layer's name as the table shows it: its outermost `MultiStep` ancestor (``readout``), else
    its own qualified name."""
    parts = module_name.split(".")
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if isinstance(model.get_submodule(prefix), MultiStep):
            return prefix
    return module_name


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {signature: Structure}
CACHED = 8  # structures kept per model


def nonzero_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """``name -> (weight != 0)`` of every Conv/Linear, with its weight as the model uses it (quantized)."""
    with torch.no_grad():
        return {name: (m.weight != 0).detach().cpu() for name, m in weight_layers(model)}


def _signature(model: nn.Module, sample_shape: tuple[int, ...], masks: dict[str, torch.Tensor]) -> tuple:
    """What the structure depends on: the module tree (names, types, shapes of weights), the input shape and
    which weights are zero."""
    weights = {name: tuple(float_weight(m).shape) for name, m in weight_layers(model)}
    parts = [(name, type(m).__name__.removeprefix("Parametrized"), weights.get(name))
             for name, m in model.named_modules() if "parametrizations" not in name.split(".")]
    digest = hashlib.sha1()
    for name in sorted(masks):
        digest.update(name.encode())
        digest.update(np.packbits(masks[name].numpy().reshape(-1)).tobytes())
    return (tuple(sample_shape), tuple(parts), digest.hexdigest())


def model_structure(model: nn.Module, sample_shape: tuple[int, ...]) -> Structure:
    """Analyse ``model`` (``[T, B, *sample_shape] -> [T, B, classes]``) as described in the module docstring.

    The result depends on the architecture and on which weights are zero (not on other weight values) and is
    cached per model, input shape and zero pattern (the last ``CACHED`` of each model: a sweep's cells take
    turns between the zero patterns of their weight bits).
    """
    masks = nonzero_masks(model)
    sig = _signature(model, tuple(sample_shape), masks)
    cached = _CACHE.setdefault(model, {})
    if sig in cached:
        cached[sig] = cached.pop(sig)  # most recently used last
        return cached[sig]
    structure = _model_structure(model, tuple(sample_shape), masks)
    cached[sig] = structure
    while len(cached) > CACHED:
        cached.pop(next(iter(cached)))
    return structure


def _model_structure(model: nn.Module, sample_shape: tuple[int, ...], masks: dict[str, torch.Tensor]) -> Structure:
    ind = clone_model(model, "float").cpu().float().eval()
    for p in ind.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        for name, m in weight_layers(ind):
            m.weight.copy_(masks[name].to(m.weight.dtype))
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
    sources: dict[str, _Source] = {}
    for name, m in list(ind.named_modules()):
        if not name:
            continue
        if isinstance(m, IF):
            sources[name] = _Source()
            _set_module(ind, name, sources[name])
        elif isinstance(m, (_BatchNorm, Delay)):  # a delay moves events in time only: same fan-out
            _set_module(ind, name, nn.Identity())
        elif isinstance(m, _AVG_POOLS + _ADAPTIVE_POOLS):
            _set_module(ind, name, _SumPool(m))
    order: list[tuple[str, str]] = []
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name, m in weight_layers(ind):
        def hook(mod, args, out, name=name):
            order.append(("syn", name))
            outputs[name] = out
        handles.append(m.register_forward_hook(hook))
    for name, m in sources.items():
        handles.append(m.register_forward_hook(lambda mod, a, o, name=name: order.append(("neuron", name))))
    x0 = torch.zeros(1, 1, *sample_shape, requires_grad=True)
    try:
        with torch.enable_grad():
            ind(x0)
    finally:
        for h in handles:
            h.remove()
    if not sources:
        raise ValueError(f"{type(model).__name__} has no qnoise spiking neurons (IF/LIF) to probe")
    # group weight layers by the neuron they feed (execution order)
    layers: list[LayerInfo] = []
    pending: list[str] = []
    seen_neurons: set[str] = set()
    for kind, name in order:
        if kind == "syn":
            pending.append(name)
        else:
            if name in seen_neurons:
                raise ValueError(f"neuron {name!r} runs twice in one forward; the probe needs one call per layer")
            seen_neurons.add(name)
            layers.append(LayerInfo(name, name, pending))
            pending = []
    if pending:
        layers.append(LayerInfo(display_name(model, pending[0]), None, pending))
    layer_of = {syn: layer.name for layer in layers for syn in layer.synapses}
    # fan-out of every source into every weight layer it reaches
    src_names = [INPUT, *[n for _, n in order if n in sources]]
    src_tensors = [x0, *[sources[n].leaf for n in src_names[1:]]]
    syn_names = [n for k, n in order if k == "syn"]
    maps: dict[str, dict[str, torch.Tensor]] = {s: {} for s in src_names}
    for syn in syn_names:
        with torch.enable_grad():
            grads = torch.autograd.grad(outputs[syn].sum(), src_tensors, retain_graph=True, allow_unused=True)
        for src, g in zip(src_names, grads, strict=True):
            if g is not None and bool((g != 0).any()):
                maps[src][syn] = g.detach().flatten().double()
    fanout = {}
    for src, per_syn in maps.items():
        if per_syn:
            names = list(per_syn)
            fanout[src] = (torch.stack([per_syn[n] for n in names], dim=1), names)
    macs = {name: dense_macs(ind.get_submodule(name), tuple(outputs[name].shape)) for name in syn_names}
    neuron_size = {n: sources[n].leaf[0, 0].numel() for n in sources if sources[n].leaf is not None}
    return Structure(layers, fanout, macs, layer_of, neuron_size)
