"""NIR -> qnoise (`from_nir`): NIR 1.0 graphs as `qnoise.models.graph.GraphNet`.

NIR describes continuous-time neurons (time constants in seconds); qnoise runs them with forward Euler at the
timestep ``dt`` (seconds), as SpikingJelly and nirtorch do. With ``k = dt / tau`` and x the node's input::

    IF        v = v + (r dt) x                                   Leaky "beta", beta 1, gain r dt
    LIF       v = v + (r x - (v - v_leak)) / (tau / dt)          Leaky "tau", tau in steps
    CubaLIF   i = (1 - dt/tau_syn) i + g x,  g = (w_in dt / tau_syn) (r dt / tau_mem)
              v = (1 - dt/tau_mem) v + i                         CUBA (v_leak must be 0)
    LI, I     the same charges without spikes (readouts; output = membrane)
    Threshold s = H(x - theta)                                   Leaky "beta", beta 0, reset to zero
    Delay     delay / dt whole steps                             Delay
    Affine, Linear, Conv1d, Conv2d, Flatten, AvgPool2d, SumPool2d, Scale, Input, Output

What NIR does not say is taken from arguments and recorded in the model's ``qnoise_config["source"]``: ``dt``,
``reset`` ("zero", NIR's v_reset, or "subtract"), ``fire`` (">" by default: NIR's Heaviside is 0 at 0),
``spike_value`` ("one"). A node written by `qnoise.interop.to_nir` carries these in its metadata
(``qnoise.reset`` ...), which take precedence, and a LIF the form of its rule (``qnoise.charge``: "beta" for
``beta v + g x``, "tau_no_input" for ``v - (v - v_leak)/tau + x``), rebuilt as written: the same dynamics in
NIR's form round differently, and a membrane on the threshold would fire otherwise. Anything that does not map
one to one raises ``ValueError`` naming the node and why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..layer_kinds import Delay, Integrator, LeakyIntegrator, Scale, SumPool2d
from ..layers import MultiStep
from ..models.graph import GraphNet, clean_name
from ..neuron_kinds import CUBA, FIRES, Leaky
from ..pooling import AvgPool2d
from .snntorch import _version

DEFAULT_DT = 1e-4  # seconds; SpikingJelly's and nirtorch's default


class NIRImportError(ValueError):
    """A NIR node that qnoise cannot run exactly; the message names the node."""


def _arr(node, field: str, name: str) -> np.ndarray:
    value = getattr(node, field, None)
    if value is None:
        raise NIRImportError(f"NIR node '{name}' ({type(node).__name__}) has no {field}")
    a = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise NIRImportError(f"NIR node '{name}' ({type(node).__name__}): {field} holds non-finite values")
    return a


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64)).float()


def _meta(node, key: str, default):
    value = (getattr(node, "metadata", None) or {}).get(f"qnoise.{key}", default)
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.ndarray):
        value = value.item() if value.ndim == 0 else value
        value = value.decode() if isinstance(value, bytes) else value
    return value


def _zero_reset(node, name: str) -> None:
    v_reset = getattr(node, "v_reset", None)
    if v_reset is not None and np.any(np.asarray(v_reset) != 0):
        raise NIRImportError(f"NIR node '{name}' ({type(node).__name__}) resets to v_reset != 0; qnoise neurons reset "
                             f"to 0 (reset='zero') or by subtraction")


def _steps(a: np.ndarray, dt: float, name: str, field: str) -> torch.Tensor:
    steps = a / dt
    if np.any(steps <= 0):
        raise NIRImportError(f"NIR node '{name}': {field} must be > 0, got {a.flatten()[:4].tolist()}")
    return _t(steps)


def _pair(v):
    a = np.asarray(v).astype(int).flatten().tolist()
    return a[0] if len(a) == 1 else tuple(a)


def node_module(node, name: str, dt: float, reset: str, fire: str, spike_value: str) -> nn.Module | None:
    """The qnoise module for one NIR node (None for Input/Output); `NIRImportError` naming the node otherwise."""
    import nir

    kind = type(node).__name__
    opts = {"reset": _meta(node, "reset", reset), "fire": _meta(node, "fire", fire),
            "spike_value": _meta(node, "spike_value", spike_value), "source": f"nir.{kind}"}
    state_bits = _meta(node, "state_bits", None)  # a fixed-point membrane qnoise wrote (`to_nir`)
    if state_bits is not None:
        if isinstance(state_bits, bool) or float(state_bits) != int(float(state_bits)):
            raise NIRImportError(f"NIR node '{name}' ({kind}): qnoise.state_bits {state_bits!r} is not a whole number")
        state_bits = int(float(state_bits))
    stateful = {**opts, "reset_time": _meta(node, "reset_time", "now"), "state_bits": state_bits}
    if isinstance(node, (nir.Input, nir.Output)):
        return None
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = _arr(node, "weight", name)
        if w.ndim != 2:
            raise NIRImportError(f"NIR node '{name}' ({kind}): weight of shape {w.shape} is not [out, in]")
        lin = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
        with torch.no_grad():
            lin.weight.copy_(_t(w))
            if lin.bias is not None:
                lin.bias.copy_(_t(_arr(node, "bias", name)))
        return MultiStep(lin)
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        w = _arr(node, "weight", name)
        cls = nn.Conv1d if isinstance(node, nir.Conv1d) else nn.Conv2d
        padding = node.padding if isinstance(node.padding, str) else _pair(node.padding)
        conv = cls(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[2:]), stride=_pair(node.stride),
                   padding=padding, dilation=_pair(node.dilation), groups=int(node.groups), bias=True)
        with torch.no_grad():
            conv.weight.copy_(_t(w))
            bias = getattr(node, "bias", None)
            conv.bias.copy_(_t(np.zeros(w.shape[0]) if bias is None else _arr(node, "bias", name)))
        return MultiStep(conv)
    if isinstance(node, nir.Flatten):
        shift = lambda d: int(d) + 1 if int(d) >= 0 else int(d)  # noqa: E731 - NIR dims exclude the batch
        return MultiStep(nn.Flatten(shift(node.start_dim), shift(node.end_dim)))
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        args = (_pair(node.kernel_size), _pair(node.stride), _pair(node.padding))
        return MultiStep(AvgPool2d(*args) if isinstance(node, nir.AvgPool2d) else SumPool2d(*args))
    if isinstance(node, nir.Scale):
        return Scale(_t(_arr(node, "scale", name)))
    if isinstance(node, nir.Delay):
        steps = _arr(node, "delay", name) / dt
        if np.any(np.abs(steps - np.round(steps)) > 1e-6 * np.maximum(1, np.abs(steps))) or np.any(steps < 0):
            raise NIRImportError(f"NIR node '{name}' (Delay): delay / dt = {steps.flatten()[:4].tolist()} is not a "
                                 f"whole number of steps >= 0 (dt = {dt})")
        return Delay(torch.as_tensor(np.round(steps).astype(np.int64)))
    if isinstance(node, nir.Threshold):
        return Leaky(_t(_arr(node, "threshold", name)), "beta", beta=0.0, reset="zero", fire=opts["fire"],
                     spike_value=opts["spike_value"], source=opts["source"])
    if isinstance(node, nir.IF):
        _zero_reset(node, name)
        return Leaky(_t(_arr(node, "v_threshold", name)), "beta", beta=1.0, gain=_t(_arr(node, "r", name) * dt),
                     **stateful)
    if isinstance(node, nir.LIF):
        _zero_reset(node, name)
        tau = _arr(node, "tau", name)
        # the rule `to_nir` wrote it from (qnoise.charge; snnTorch's reset_time "next" is a "beta" rule), in its
        # own form: the same dynamics in NIR's "tau" form round differently, and spikes on the threshold flip
        charge = _meta(node, "charge", "beta" if stateful["reset_time"] == "next" else "tau")
        if charge not in ("beta", "tau", "tau_no_input"):
            raise NIRImportError(f"NIR node '{name}' (LIF): qnoise.charge {charge!r} is not one of 'beta', 'tau', "
                                 f"'tau_no_input'")
        if charge == "beta":
            if np.any(_arr(node, "v_leak", name) != 0):
                raise NIRImportError(f"NIR node '{name}' (LIF): qnoise.charge 'beta' needs v_leak = 0")
            _steps(tau, dt, name, "tau")
            return Leaky(_t(_arr(node, "v_threshold", name)), "beta", beta=_t(1 - dt / tau),
                         gain=_t(_arr(node, "r", name) * dt / tau), **stateful)
        return Leaky(_t(_arr(node, "v_threshold", name)), charge, tau=_steps(tau, dt, name, "tau"),
                     r=_t(_arr(node, "r", name)) if charge == "tau" else 1.0, v_leak=_t(_arr(node, "v_leak", name)),
                     **stateful)
    if isinstance(node, nir.CubaLIF):
        _zero_reset(node, name)
        if np.any(_arr(node, "v_leak", name) != 0):
            raise NIRImportError(f"NIR node '{name}' (CubaLIF): v_leak != 0 is not supported (qnoise's CUBA has no "
                                 f"leak potential)")
        tau_syn, tau_mem = _arr(node, "tau_syn", name), _arr(node, "tau_mem", name)
        if np.any(tau_syn < dt) or np.any(tau_mem < dt):
            raise NIRImportError(f"NIR node '{name}' (CubaLIF): time constants must be >= dt = {dt} (Euler would "
                                 f"overshoot)")
        gain = (_arr(node, "w_in", name) * dt / tau_syn) * (_arr(node, "r", name) * dt / tau_mem)
        return CUBA(_t(_arr(node, "v_threshold", name)), _t(1 - dt / tau_syn), _t(1 - dt / tau_mem), _t(gain),
                    **stateful)
    if isinstance(node, nir.LI):
        return LeakyIntegrator(_steps(_arr(node, "tau", name), dt, name, "tau"), _t(_arr(node, "r", name)),
                               _t(_arr(node, "v_leak", name)))
    if isinstance(node, nir.I):
        return Integrator(_t(_arr(node, "r", name) * dt))
    raise NIRImportError(f"NIR node '{name}' is a {kind}, which qnoise does not import (supported: Input, Output, "
                         f"Affine, Linear, Conv1d, Conv2d, Flatten, AvgPool2d, SumPool2d, Scale, IF, LIF, CubaLIF, LI, "
                         f"I, Threshold, Delay)")


def from_nir(graph, dt: float = DEFAULT_DT, reset: str = "zero", fire: str = ">", spike_value: str = "one",
             num_classes: int | None = None) -> GraphNet:
    """A NIR graph (a ``nir.NIRGraph`` or the path of a ``.nir`` file) as a qnoise `GraphNet` over ``[T, B, ...]``.

    Args:
        graph: the graph, or a file written by ``nir.write``.
        dt: the timestep in seconds (NIR has none); default 1e-4 as SpikingJelly and nirtorch.
        reset: ``"zero"`` (NIR's v_reset = 0) or ``"subtract"`` (NIR cannot say so).
        fire: ``">"`` (default) or ``">="`` at the threshold; spike_value: ``"one"`` or ``"theta"``.
        num_classes: recorded in the config (default: the output node's size).
    """
    import nir

    path = None
    if isinstance(graph, (str, Path)):
        path = Path(graph)
        if not path.is_file():
            raise FileNotFoundError(f"NIR file {path} does not exist")
        try:
            graph = nir.read(str(path))
        except Exception as err:  # h5py / nir raise their own types
            raise ValueError(f"{path} is not a readable NIR file: {err}") from err
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"from_nir takes a nir.NIRGraph or a .nir file, got {type(graph).__name__}")
    if not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive number of seconds, got {dt!r}")
    if reset not in ("zero", "subtract"):
        raise ValueError(f"reset={reset!r} is not 'zero' or 'subtract'")
    if fire not in FIRES:
        raise ValueError(f"fire={fire!r} is not one of {FIRES}")
    inputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    outputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRImportError(f"the NIR graph must have one Input and one Output node, has inputs {inputs} and "
                             f"outputs {outputs}")
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise NIRImportError(f"NIR node '{name}' is a nested graph; qnoise imports flat graphs")
    modules, names, taken = {}, {}, set()
    for name, node in graph.nodes.items():
        try:
            m = node_module(node, name, float(dt), reset, fire, spike_value)
        except NIRImportError:
            raise
        except ValueError as err:  # a qnoise module refused the node's values
            raise NIRImportError(f"NIR node '{name}' ({type(node).__name__}): {err}") from err
        if m is not None:
            names[name] = clean_name(name, taken)
            modules[names[name]] = m
    # edges through Input/Output collapse: the GraphNet's input feeds the nodes with no predecessor
    edges = []
    for src, dst in graph.edges:
        if src in names and dst in names:
            edges.append((names[src], names[dst]))
        elif src not in graph.nodes or dst not in graph.nodes:
            raise NIRImportError(f"NIR edge {src!r} -> {dst!r} names a node that is not in the graph")
    fed_by_input = {names[d] for s, d in graph.edges if s == inputs[0] and d in names}
    orphans = {n for n in modules if not any(e[1] == n for e in edges)} - fed_by_input
    if orphans:
        raise NIRImportError(f"NIR node(s) {sorted(orphans)} receive no input")
    in_shape = np.asarray(graph.nodes[inputs[0]].input_type["input"]).astype(int).tolist()
    out_type = graph.nodes[outputs[0]].output_type.get("output")
    classes = num_classes or (int(np.prod(out_type)) if out_type is not None and len(np.atleast_1d(out_type)) else None)
    both = sorted(n for n in fed_by_input if any(e[1] == n for e in edges))
    if both:
        raise NIRImportError(f"NIR node(s) {both} are fed by the Input and by other nodes; qnoise feeds the input "
                             f"only to nodes without other predecessors")
    source = {"library": "nir", "version": _version("nir"), "dt": float(dt), "reset": reset, "fire": fire,
              "spike_value": spike_value, "nodes": {v: k for k, v in names.items()}, "input_node": inputs[0],
              "output_node": outputs[0]}
    if path is not None:
        source["file"] = path.name
    return GraphNet(modules, edges, in_shape, classes, source).eval()
