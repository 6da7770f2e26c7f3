"""qnoise -> NIR (`to_nir`): weights at the values the model computes with (quantized, when it is).

The inverse of `qnoise.interop.from_nir` at the timestep ``dt``: each node's continuous-time parameters are
those whose Euler step at ``dt`` is the qnoise rule (``tau = tau_steps dt``, ``r = gain / dt`` for IF, ...);
a ``Leaky`` with the "beta" charge and ``0 < beta < 1`` becomes a LIF with ``tau = dt / (1 - beta)`` and
``r = gain / (1 - beta)`` (the same dynamics; its Euler form rounds differently in float). What NIR cannot say
(reset by subtraction and when it happens, the firing test, the spike value, fixed-point state) is written to
each node's metadata (``qnoise.reset``, ``qnoise.reset_time``, ``qnoise.fire``, ``qnoise.spike_value``,
``qnoise.state_bits``) and read back by `from_nir`.
Parameters are per neuron (arrays of the neuron shape), as NIR wants. NIR has no BatchNorm: one in eval mode that
follows a conv or linear node feeding nothing else is folded into it (``W' = W s``, ``b' = b s + shift`` per output
channel with ``s = gamma / sqrt(var + eps)``, ``shift = beta - mean s``, computed in float64), so the exported
weights are the folded ones (off a quantization grid where the model's were on one). qnoise modules NIR has no
node for (any other BatchNorm, a signed IF, a quantized membrane on IF/LIF) raise ``ValueError`` naming the node.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..layer_kinds import Delay, Integrator, LeakyIntegrator, Scale, SumPool2d
from ..layers import MultiStep
from ..models.graph import GraphNet, as_graph
from ..neuron_kinds import CUBA, Leaky
from ..neurons import IF, LIF
from .nir_import import DEFAULT_DT


def _np(t: torch.Tensor, shape=None) -> np.ndarray:
    a = t.detach().cpu().double().numpy()
    return np.broadcast_to(a, shape).copy() if shape is not None else a.copy()


def _meta(m: nn.Module) -> dict:
    out = {"qnoise.reset": m.reset, "qnoise.fire": getattr(m, "fire", ">="),
           "qnoise.spike_value": getattr(m, "spike_value", "theta"),
           "qnoise.reset_time": getattr(m, "reset_time", "now")}
    if isinstance(m, Leaky):  # the rule's own form: NIR's LIF rebuilt as "tau" rounds otherwise (`from_nir`)
        out["qnoise.charge"] = m.charge
    if m.state_bits is not None:
        out["qnoise.state_bits"] = int(m.state_bits)
    return out


def _body(m: MultiStep) -> nn.Module:
    body = m.body
    return body[0] if isinstance(body, nn.Sequential) and len(body) == 1 else body


def _shapes(model: GraphNet) -> dict[str, tuple[int, ...]]:
    """Each node's input shape for one sample (without T and B), from one forward on zeros."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = [getattr(model, n).register_forward_hook(
        lambda mod, args, out, n=n: shapes.__setitem__(n, (tuple(args[0].shape[2:]), tuple(out.shape[2:]))))
        for n in model.order]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, *model.qnoise_config["input_shape"]))
    finally:
        for h in handles:
            h.remove()
    return shapes


_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_WEIGHTS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def foldable_batchnorms(graph: GraphNet) -> dict[str, str]:
    """``{batch norm node: the weight node it folds into}``: each BatchNorm node whose one input is a conv or
    linear node that feeds nothing else (folding it changes only what the BatchNorm saw)."""
    consumers: dict[str, int] = {}
    for name in graph.order:
        for p in graph.preds[name]:
            consumers[p] = consumers.get(p, 0) + 1
    consumers[graph.output_node] = consumers.get(graph.output_node, 0) + 1
    folds = {}
    for name in graph.order:
        m, preds = getattr(graph, name), graph.preds[name]
        if not (isinstance(m, MultiStep) and isinstance(_body(m), _BATCHNORMS) and len(preds) == 1):
            continue
        source = getattr(graph, preds[0], None) if preds[0] in graph.order else None
        if isinstance(source, MultiStep) and isinstance(_body(source), _WEIGHTS) and consumers[preds[0]] == 1:
            folds[name] = preds[0]
    return folds


def _weights(b: nn.Module, bn: nn.Module | None) -> tuple[np.ndarray, np.ndarray | None]:
    """A conv's or linear layer's ``(weight, bias)`` as float64 arrays, with ``bn`` (eval mode) folded in."""
    from ..train.convert import fold_bn

    w = b.weight.detach().double()
    bias = None if b.bias is None else b.bias.detach().double()
    if bn is not None:
        if bn.training:
            raise ValueError(f"{type(bn).__name__} folds into the weights only in eval mode (call model.eval())")
        w, bias = fold_bn(w, bias, copy.deepcopy(bn).double())
    return w.cpu().numpy(), None if bias is None else bias.cpu().numpy()


def node_to_nir(name: str, m: nn.Module, in_shape: tuple[int, ...], dt: float, bn: nn.Module | None = None):
    """The NIR node for one qnoise graph node (``bn``: a BatchNorm after it to fold in, `foldable_batchnorms`)."""
    import nir

    kind = type(m).__name__
    if isinstance(m, MultiStep):
        b = _body(m)
        if isinstance(b, nn.Linear):
            w, bias = _weights(b, bn)
            return nir.Affine(w, bias) if bias is not None else nir.Linear(w)
        if isinstance(b, (nn.Conv1d, nn.Conv2d)):
            w, bias = _weights(b, bn)
            bias = bias if bias is not None else np.zeros(w.shape[0])
            if isinstance(b, nn.Conv1d):
                return nir.Conv1d(in_shape[-1], w, b.stride[0], b.padding if isinstance(b.padding, str)
                                  else b.padding[0], b.dilation[0], b.groups, bias)
            return nir.Conv2d(tuple(in_shape[-2:]), w, b.stride, b.padding, b.dilation, b.groups, bias)
        if isinstance(b, nn.AvgPool2d):
            pair = lambda v: np.array(v if isinstance(v, tuple) else (v, v))  # noqa: E731
            return nir.AvgPool2d(pair(b.kernel_size), pair(b.stride), pair(b.padding))
        if isinstance(b, SumPool2d):
            return nir.SumPool2d(np.array(b.kernel_size), np.array(b.stride), np.array(b.padding))
        if isinstance(b, nn.Flatten):
            shift = lambda d: d - 1 if d > 0 else d  # noqa: E731 - NIR dims exclude the batch
            return nir.Flatten({"input": np.array(in_shape)}, shift(b.start_dim), shift(b.end_dim))
        if isinstance(b, _BATCHNORMS):
            raise ValueError(f"node '{name}' ({type(b).__name__}) has no NIR counterpart and cannot be folded: its "
                             f"input is not a conv or linear node that feeds nothing else")
        raise ValueError(f"node '{name}' ({type(b).__name__}) has no NIR counterpart")
    if isinstance(m, Scale):
        return nir.Scale(_np(m.scale, in_shape))
    if isinstance(m, Delay):
        return nir.Delay(_np(m.steps.double(), in_shape) * dt)
    if isinstance(m, LeakyIntegrator):
        return nir.LI(_np(m.tau, in_shape) * dt, _np(m.r, in_shape), _np(m.v_leak, in_shape))
    if isinstance(m, Integrator):
        return nir.I(_np(m.r, in_shape) / dt)
    if isinstance(m, CUBA):
        alpha, beta = _np(m.alpha, in_shape), _np(m.raw_beta, in_shape)
        if np.any(alpha == 1) or np.any(beta == 1):
            raise ValueError(f"node '{name}' (CUBA) has a decay of 1 (no leak): NIR's CubaLIF needs finite time "
                             f"constants")
        tau_syn, tau_mem = dt / (1 - alpha), dt / (1 - beta)
        theta = _np(m.threshold, in_shape)
        return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=np.zeros(in_shape),
                           v_threshold=theta, v_reset=np.zeros(in_shape), w_in=_np(m.gain, in_shape) * tau_syn / dt,
                           metadata=_meta(m))
    if isinstance(m, Leaky):
        theta = _np(m.threshold, in_shape)
        zeros = np.zeros(in_shape)
        beta = _np(m.raw_beta, in_shape)
        if m.charge == "beta" and np.all(beta == 0) and m.reset == "zero" and np.all(_np(m.gain) == 1):
            return nir.Threshold(theta, metadata=_meta(m))
        if m.charge == "beta" and np.all(beta == 1):
            return nir.IF(_np(m.gain, in_shape) / dt, theta, zeros, metadata=_meta(m))
        if m.charge == "beta":
            if np.any(beta == 1):
                raise ValueError(f"node '{name}' (Leaky) has beta = 1 (no leak) for some neurons and not for others: "
                                 f"NIR's LIF would need an infinite time constant there, and its IF has no leak")
            tau = dt / (1 - beta)
            return nir.LIF(tau, _np(m.gain, in_shape) / (1 - beta), zeros, theta, zeros, metadata=_meta(m))
        tau = _np(m.tau, in_shape)
        r = _np(m.r, in_shape) if m.charge == "tau" else tau  # "tau_no_input": v + (tau x - (v - v_leak)) / tau
        return nir.LIF(tau * dt, r, _np(m.v_leak, in_shape), theta, zeros, metadata=_meta(m))
    if parametrize.type_before_parametrizations(m) in (IF, LIF):  # quantized thresholds: ParametrizedIF
        if m.signed or m.state_bits is not None:
            raise ValueError(f"node '{name}' ({kind}) is signed or has a quantized membrane: NIR cannot say so")
        theta = _np(m.broadcast_threshold(torch.zeros(1, 1, *in_shape)), in_shape)
        if m.v_init != "zero":
            raise ValueError(f"node '{name}' ({kind}) starts at v = theta/2, which NIR cannot say")
        meta = {"qnoise.reset": m.reset, "qnoise.fire": ">=", "qnoise.spike_value": "theta"}
        beta = _np(m.beta, in_shape) if isinstance(m, LIF) else np.ones(in_shape)
        if np.any(beta != 1):  # a LIF: v = beta v + x, rebuilt in that form (`from_nir`)
            meta["qnoise.charge"] = "beta"
            return nir.LIF(dt / (1 - beta), 1 / (1 - beta), np.zeros(in_shape), theta, np.zeros(in_shape),
                           metadata=meta)
        return nir.IF(np.full(in_shape, 1 / dt), theta, np.zeros(in_shape), metadata=meta)
    if isinstance(m, nn.Identity):
        return None
    raise ValueError(f"node '{name}' ({kind}) has no NIR counterpart")


def to_nir(model: nn.Module, dt: float = DEFAULT_DT, input_shape=None, path=None):
    """``model`` (a `GraphNet`, or an ``nn.Sequential`` of qnoise modules with ``input_shape``) as a
    ``nir.NIRGraph`` at timestep ``dt`` seconds; with ``path``, also written there (``nir.write``)."""
    import nir

    graph = as_graph(model, input_shape or (getattr(model, "qnoise_config", None) or {}).get("input_shape"))
    shapes = _shapes(graph)
    source = graph.qnoise_config.get("source") or {}
    original = source.get("nodes") or {}  # names of an imported NIR graph, kept on the way back
    rename = {n: str(original.get(n, n)) for n in graph.order}
    in_name, out_name = str(source.get("input_node", "input")), str(source.get("output_node", "output"))
    nodes, alias = {}, {}
    folds = foldable_batchnorms(graph)
    folded_into = {w: getattr(graph, n) for n, w in folds.items()}
    for name in graph.order:
        if name in folds:  # folded into its weight node: edges pass through to that node
            alias[name] = folds[name]
            continue
        bn = folded_into.get(name)
        node = node_to_nir(name, getattr(graph, name), shapes[name][0], dt, None if bn is None else _body(bn))
        if node is None:  # identity: edges pass through
            alias[name] = graph.preds[name][0] if graph.preds[name] else "input"
        else:
            nodes[name] = node

    def real(n: str) -> str:
        while n in alias:
            n = alias[n]
        return n

    def out_name_of(n: str) -> str:
        n = real(n)
        return in_name if n == "input" else rename[n]

    edges = []
    for name in graph.order:
        if name in alias:
            continue
        preds = graph.preds[name] or ["input"]
        edges += [(out_name_of(p), rename[name]) for p in preds]
    nodes = {rename[n]: v for n, v in nodes.items()}
    nodes[in_name] = nir.Input(input_type={"input": np.array(graph.qnoise_config["input_shape"])})
    out = graph.output_node
    nodes[out_name] = nir.Output(output_type={"output": np.array(shapes[out][1])})
    edges.append((out_name_of(out), out_name))
    result = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"qnoise.dt": float(dt)}, type_check=False)
    if path is not None:
        from pathlib import Path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(path).with_name(f".{Path(path).name}.tmp")
        try:
            nir.write(str(tmp), result)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return result
