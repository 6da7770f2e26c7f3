"""A model as a graph of qnoise modules, described by JSON alone (no code, no pickle).

`GraphNet` runs named nodes in topological order over ``[T, B, ...]``; a node fed by several nodes gets the sum
of their outputs (as NIR defines it); nodes without a predecessor get the network's input, and the one node
without a successor gives its output. Each node is a module from a closed list (`node_spec` / `build_node`):

    linear, conv1d, conv2d, avgpool2d, sumpool2d, flatten, batchnorm1d/2d, identity   (run per step, `MultiStep`)
    scale, delay, li, integrator                                                      (`qnoise.neuron_kinds`)
    if, lif (`qnoise.neurons`), leaky, cuba (`qnoise.neuron_kinds`)

``GraphNet.qnoise_config`` = ``{"arch": "graph", "kind": "snn", "input_shape", "num_classes", "graph":
{"nodes": {name: spec}, "edges": [[src, dst], ...]}, "source": {...}}`` rebuilds the model with `graph_from_config`
(tensor values come from the checkpoint's safetensors file; the spec holds every buffer's shape).
"""

from __future__ import annotations

import copy
import math
from graphlib import CycleError, TopologicalSorter

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..layer_kinds import Delay, Integrator, LeakyIntegrator, Scale, SumPool2d
from ..layers import MultiStep
from ..neuron_kinds import CUBA, Leaky
from ..neurons import IF, LIF
from ..pooling import AvgPool2d

_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_STEP_OPS = ("linear", "conv1d", "conv2d", "avgpool2d", "sumpool2d", "flatten", "batchnorm1d", "batchnorm2d",
             "identity")
OPS = (*_STEP_OPS, "scale", "delay", "li", "integrator", "if", "lif", "leaky", "cuba")


def clean_name(name: str, taken: set[str]) -> str:
    """A module attribute name for a graph node: letters, digits and ``_`` (others become ``_``), unique."""
    base = "".join(c if c in _NAME_OK else "_" for c in str(name)) or "node"
    if base[0].isdigit():
        base = f"n{base}"
    out, k = base, 1
    while out in taken or out in ("forward", "training") or hasattr(nn.Module, out):
        k += 1
        out = f"{base}_{k}"
    taken.add(out)
    return out


def _ints(v):
    return [int(a) for a in v] if isinstance(v, (tuple, list)) else int(v)


def _shapes(m: nn.Module, names) -> dict[str, list[int]]:
    return {k: list(getattr(m, k).shape) for k in names}


def node_spec(module: nn.Module) -> dict:
    """The JSON description of one graph node (`build_node` inverts it); ``ValueError`` for anything else."""
    body = module.body if isinstance(module, MultiStep) else None
    if isinstance(body, nn.Sequential) and len(body) == 1:
        body = body[0]
    if body is not None:
        if isinstance(body, nn.Linear):
            return {"op": "linear", "in_features": body.in_features, "out_features": body.out_features,
                    "bias": body.bias is not None}
        if isinstance(body, (nn.Conv1d, nn.Conv2d)):
            if body.padding_mode != "zeros":
                raise ValueError(f"{type(body).__name__} with padding_mode={body.padding_mode!r} is not supported")
            return {"op": f"conv{body.weight.dim() - 2}d", "in_channels": body.in_channels,
                    "out_channels": body.out_channels, "kernel_size": _ints(body.kernel_size),
                    "stride": _ints(body.stride), "dilation": _ints(body.dilation), "groups": body.groups,
                    "padding": body.padding if isinstance(body.padding, str) else _ints(body.padding),
                    "bias": body.bias is not None}
        if isinstance(body, nn.AvgPool2d):
            if body.ceil_mode or body.divisor_override is not None or not body.count_include_pad:
                raise ValueError("AvgPool2d with ceil_mode, divisor_override or count_include_pad=False is not "
                                 "supported")
            return {"op": "avgpool2d", "kernel_size": _ints(body.kernel_size), "stride": _ints(body.stride),
                    "padding": _ints(body.padding)}
        if isinstance(body, SumPool2d):
            return {"op": "sumpool2d", "kernel_size": list(body.kernel_size), "stride": list(body.stride),
                    "padding": list(body.padding)}
        if isinstance(body, nn.Flatten):
            return {"op": "flatten", "start_dim": body.start_dim, "end_dim": body.end_dim}
        if isinstance(body, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return {"op": f"batchnorm{'1' if isinstance(body, nn.BatchNorm1d) else '2'}d",
                    "num_features": body.num_features, "eps": body.eps, "momentum": body.momentum,
                    "affine": body.affine, "track_running_stats": body.track_running_stats}
        if isinstance(body, (nn.Identity, nn.Dropout)):
            return {"op": "identity"}
        raise ValueError(f"{type(body).__name__} inside MultiStep is not a graph node qnoise can save")
    if isinstance(module, nn.Identity):
        return {"op": "identity"}
    if isinstance(module, Scale):
        return {"op": "scale", "shapes": _shapes(module, ["scale"])}
    if isinstance(module, Delay):
        return {"op": "delay", "shapes": _shapes(module, ["steps"])}
    if isinstance(module, LeakyIntegrator):
        return {"op": "li", "shapes": _shapes(module, ["tau", "r", "v_leak"])}
    if isinstance(module, Integrator):
        return {"op": "integrator", "shapes": _shapes(module, ["r"])}
    if isinstance(module, IF):
        common = {"state_bits": module.state_bits, "surrogate": module.surrogate,
                  "learn_threshold": module.learn_threshold, "reset": module.reset}
        if isinstance(module, Leaky):
            return {"op": "leaky", **common, "charge": module.charge, "reset_time": module.reset_time,
                    "fire": module.fire, "spike_value": module.spike_value, "source": module.source,
                    "state_rounding": module.state_rounding,
                    "shapes": _shapes(module, ["raw_threshold", "raw_beta", "gain", "tau", "r", "v_leak"])}
        if isinstance(module, CUBA):
            return {"op": "cuba", **common, "reset_time": module.reset_time, "fire": module.fire,
                    "spike_value": module.spike_value, "source": module.source,
                    "shapes": _shapes(module, ["raw_threshold", "alpha", "raw_beta", "gain"])}
        kind = parametrize.type_before_parametrizations(module)  # ParametrizedIF (quantized thresholds): IF
        if kind in (IF, LIF):
            spec = {"op": kind.__name__.lower(), **common, "v_init": module.v_init, "signed": module.signed,
                    "per_channel": module.per_channel, "state_rounding": module.state_rounding,
                    "channels": module.raw_threshold.numel() if module.per_channel else None}
            if isinstance(module, LIF):
                spec["learn_beta"] = isinstance(module.raw_beta, nn.Parameter)
            return spec
    raise ValueError(f"{type(module).__name__} is not a graph node qnoise can save (nodes: {', '.join(OPS)})")


def _zeros(shapes: dict, key: str):
    shape = shapes.get(key, [])
    if not isinstance(shape, list) or not all(isinstance(d, int) and 0 <= d <= 1 << 24 for d in shape):
        raise ValueError(f"shape of {key!r} must be a list of ints, got {shape!r:.80}")
    return torch.zeros(shape)


def _whole(value, low: int = 1) -> bool:
    """An int (not a bool) >= ``low``, or a list of such."""
    items = value if isinstance(value, list) and value else [value]
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in items)


_POSITIVE = {"linear": ("in_features", "out_features"),
             "conv": ("in_channels", "out_channels", "kernel_size", "stride", "dilation", "groups"),
             "pool": ("kernel_size", "stride"), "batchnorm": ("num_features",)}


def check_layer_spec(op: str, a: dict) -> None:
    """A layer node's fields as `node_spec` writes them: sizes, kernels, strides, dilations and groups whole
    numbers >= 1, paddings >= 0 (or a conv's "same"/"valid"), flatten dims ints, batch norm's eps a finite
    number >= 0 and momentum None or in [0, 1], flags booleans; else a ValueError naming the field (torch would
    fail later, at the first forward, without saying which)."""
    family = "conv" if op in ("conv1d", "conv2d") else "pool" if op in ("avgpool2d", "sumpool2d") else \
        "batchnorm" if op.startswith("batchnorm") else op
    for field in _POSITIVE.get(family, ()):
        if not _whole(a.get(field)):
            raise ValueError(f"{op} {field} must be a whole number >= 1 (or a list of them), got {a.get(field)!r}")
    if family in ("conv", "pool") and not (_whole(a.get("padding"), 0)
                                           or (family == "conv" and a.get("padding") in ("same", "valid"))):
        raise ValueError(f"{op} padding must be a whole number >= 0 (or a list of them), got {a.get('padding')!r}")
    if op == "flatten" and not all(isinstance(a.get(k), int) and not isinstance(a.get(k), bool)
                                   for k in ("start_dim", "end_dim")):
        raise ValueError(f"flatten start_dim and end_dim must be ints, got {a.get('start_dim')!r}, "
                         f"{a.get('end_dim')!r}")
    if family == "batchnorm":
        eps, momentum = a.get("eps"), a.get("momentum")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
            raise ValueError(f"{op} eps must be a finite number >= 0, got {eps!r}")
        if momentum is not None and (isinstance(momentum, bool) or not isinstance(momentum, (int, float))
                                     or not 0 <= momentum <= 1):
            raise ValueError(f"{op} momentum must be null or a number in [0, 1], got {momentum!r}")
    for flag in ("bias", "affine", "track_running_stats"):
        if flag in a and not isinstance(a[flag], bool):
            raise ValueError(f"{op} {flag} must be true or false, got {a[flag]!r}")


def _named_spec(name: str, module: nn.Module) -> dict:
    """`node_spec`, its refusal naming the node."""
    try:
        return node_spec(module)
    except ValueError as err:
        raise ValueError(f"graph node {name!r}: {err}") from err


def build_node(spec: dict) -> nn.Module:
    """The module a `node_spec` describes, with placeholder values (load the state dict next)."""
    if not isinstance(spec, dict) or spec.get("op") not in OPS:
        raise ValueError(f"node op {spec.get('op') if isinstance(spec, dict) else spec!r} is not one of {OPS}")
    op, a = spec["op"], {k: v for k, v in spec.items() if k != "op"}
    check_layer_spec(op, a)
    if op == "linear":
        return MultiStep(nn.Linear(a["in_features"], a["out_features"], bias=a["bias"]))
    if op in ("conv1d", "conv2d"):
        cls = nn.Conv1d if op == "conv1d" else nn.Conv2d
        return MultiStep(cls(a["in_channels"], a["out_channels"], a["kernel_size"], stride=a["stride"],
                             padding=a["padding"], dilation=a["dilation"], groups=a["groups"], bias=a["bias"]))
    if op == "avgpool2d":
        return MultiStep(AvgPool2d(a["kernel_size"], a["stride"], a["padding"]))
    if op == "sumpool2d":
        return MultiStep(SumPool2d(a["kernel_size"], a["stride"], a["padding"]))
    if op == "flatten":
        return MultiStep(nn.Flatten(a["start_dim"], a["end_dim"]))
    if op in ("batchnorm1d", "batchnorm2d"):
        cls = nn.BatchNorm1d if op == "batchnorm1d" else nn.BatchNorm2d
        return MultiStep(cls(a["num_features"], eps=a["eps"], momentum=a["momentum"], affine=a["affine"],
                             track_running_stats=a["track_running_stats"]))
    if op == "identity":
        return nn.Identity()
    shapes = a.get("shapes") or {}
    if op == "scale":
        return Scale(_zeros(shapes, "scale"))
    if op == "delay":
        return Delay(_zeros(shapes, "steps").to(torch.int64))
    if op == "li":
        return LeakyIntegrator(_zeros(shapes, "tau") + 1, _zeros(shapes, "r"), _zeros(shapes, "v_leak"))
    if op == "integrator":
        return Integrator(_zeros(shapes, "r"))
    common = {k: a[k] for k in ("state_bits", "surrogate", "learn_threshold", "reset")}
    if op == "leaky":
        return Leaky(_zeros(shapes, "raw_threshold") + 1, a["charge"], _zeros(shapes, "raw_beta"),
                     _zeros(shapes, "gain"), _zeros(shapes, "tau") + 1, _zeros(shapes, "r"), _zeros(shapes, "v_leak"),
                     reset_time=a["reset_time"], fire=a["fire"], spike_value=a["spike_value"], source=a["source"],
                     state_rounding=a["state_rounding"], **common)
    if op == "cuba":
        return CUBA(_zeros(shapes, "raw_threshold") + 1, _zeros(shapes, "alpha"), _zeros(shapes, "raw_beta"),
                    _zeros(shapes, "gain"), reset_time=a["reset_time"], fire=a["fire"], spike_value=a["spike_value"],
                    source=a["source"], **common)
    kw = dict(v_init=a["v_init"], signed=a["signed"], per_channel=a["per_channel"], channels=a["channels"],
              state_rounding=a["state_rounding"], **common)
    if op == "lif":
        return LIF(learn_beta=a.get("learn_beta", False), **kw)
    return IF(**kw)


class GraphNet(nn.Module):
    """Named nodes run in topological order (module docstring): ``[T, B, *input_shape] -> [T, B, ...]``."""

    def __init__(self, nodes: dict[str, nn.Module], edges: list[tuple[str, str]], input_shape,
                 num_classes: int | None = None, source: dict | None = None) -> None:
        super().__init__()
        if not nodes:
            raise ValueError("a graph needs at least one node")
        for name in nodes:
            if not isinstance(name, str) or not name or any(c not in _NAME_OK for c in name) or name[0].isdigit():
                raise ValueError(f"node name {name!r} must be an identifier (letters, digits, _)")
        preds: dict[str, list[str]] = {n: [] for n in nodes}
        succ: dict[str, int] = {n: 0 for n in nodes}
        for src, dst in edges:
            if src not in nodes or dst not in nodes:
                raise ValueError(f"edge {src!r} -> {dst!r} names a node that is not in the graph")
            preds[dst].append(src)
            succ[src] += 1
        try:
            sorter = TopologicalSorter({n: set(p) for n, p in preds.items()})
            sorter.prepare()
            order, rank = [], {n: i for i, n in enumerate(nodes)}  # ties broken by the given order
            while sorter.is_active():
                ready = sorted(sorter.get_ready(), key=rank.__getitem__)
                order += ready
                sorter.done(*ready)
            self.order = order
        except CycleError as err:
            raise ValueError(f"the graph has a cycle ({err.args[1]}); qnoise runs feed-forward graphs") from err
        for name in self.order:  # registered in execution order: "first" and "last" layers mean what they say
            self.add_module(name, nodes[name])
        outputs = [n for n in nodes if succ[n] == 0]
        if len(outputs) != 1:
            raise ValueError(f"the graph must have exactly one output node, found {outputs}")
        self.preds = preds
        self.output_node = outputs[0]
        self.edges = [[s, d] for s, d in edges]
        specs = {n: _named_spec(n, m) for n, m in nodes.items()}
        self.qnoise_config = {"arch": "graph", "kind": "snn", "input_shape": [int(d) for d in input_shape],
                              "num_classes": num_classes, "source": dict(source or {}), "quantization": None,
                              "graph": {"nodes": specs, "edges": self.edges}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {}
        for name in self.order:
            p = self.preds[name]
            inp = x if not p else values[p[0]]
            for other in p[1:]:
                inp = inp + values[other]
            values[name] = getattr(self, name)(inp)
        return values[self.output_node]


def graph_from_config(config: dict) -> GraphNet:
    """Rebuild a `GraphNet` from its ``qnoise_config`` (placeholder tensor values)."""
    graph = config.get("graph") if isinstance(config, dict) else None
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), dict) or not isinstance(graph.get("edges"),
                                                                                                 list):
        raise ValueError("a graph model config holds graph.nodes (an object) and graph.edges (a list)")
    nodes = {}
    for name, spec in graph["nodes"].items():
        try:
            nodes[name] = build_node(spec)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"graph node {name!r}: {err}") from err
    edges = []
    for e in graph["edges"]:
        if not (isinstance(e, list) and len(e) == 2 and all(isinstance(v, str) for v in e)):
            raise ValueError(f"graph edge {e!r:.80} must be [source, target]")
        edges.append((e[0], e[1]))
    model = GraphNet(nodes, edges, config.get("input_shape") or [], config.get("num_classes"), config.get("source"))
    model.qnoise_config = copy.deepcopy(config)
    return model


def graph_state_shapes(config: dict) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """``{key: (shape, dtype)}`` of the state dict a graph config builds, on the meta device."""
    with torch.device("meta"):
        model = graph_from_config(config)
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def as_graph(model: nn.Module, input_shape=None) -> GraphNet:
    """``model`` as a `GraphNet`: a GraphNet is returned as is; an ``nn.Sequential`` of graph nodes (nested
    Sequentials flattened, a `MultiStep` over several ops split into one node per op, as `qnoise.models`'
    reference networks hold them) becomes a chain, its modules shared (not copied)."""
    if isinstance(model, GraphNet):
        return model
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"{type(model).__name__} is neither a qnoise GraphNet nor an nn.Sequential of qnoise "
                         f"modules; build it with qnoise.interop or qnoise.models.build_model to save it")
    flat: list[tuple[str, nn.Module]] = []

    def walk(seq: nn.Sequential, prefix: str) -> None:
        for name, m in seq.named_children():
            if isinstance(m, nn.Sequential):
                walk(m, f"{prefix}{name}_")
            elif type(m) is MultiStep and isinstance(m.body, nn.Sequential) and len(m.body) > 1:
                # a reference network's block (e.g. Flatten + Linear): one node per op, the same values
                for i, op in enumerate(m.body):
                    flat.append((f"{prefix}{name}_{i}", MultiStep(op, mode=m.mode)))
            else:
                flat.append((f"{prefix}{name}", m))

    walk(model, "")
    taken: set[str] = set()
    nodes = {clean_name(n, taken): m for n, m in flat}
    names = list(nodes)
    if input_shape is None:
        raise ValueError("input_shape is needed to save an nn.Sequential as a graph")
    return GraphNet(nodes, list(zip(names[:-1], names[1:])), input_shape)
