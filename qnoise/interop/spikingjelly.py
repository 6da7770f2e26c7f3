"""SpikingJelly -> qnoise (`from_spikingjelly`), exact to the spike.

SpikingJelly 0.0.0.0.14 / 2.x (`activation_based.neuron`), per step; ``H(x) = 1 if x >= 0`` (``>=``), spikes of
value 1, reset right after firing; ``v_reset=None`` is reset by subtraction, ``0.0`` reset to zero::

    IFNode       v = v + x
    LIFNode      v = v + (x - (v - v_reset)) / tau            decay_input=True
                 v = v - (v - v_reset) / tau + x              decay_input=False
    CUBALIFNode  c = c * c_decay + x;  v = v * v_decay + c
    spike = H(v - v_threshold);  v = v - spike * v_threshold  |  v = spike * v_reset + (1 - spike) * v

These are `qnoise.neuron_kinds.Leaky` (``charge`` "beta", "tau", "tau_no_input") and `qnoise.neuron_kinds.CUBA`
with ``fire=">="``, ``spike_value="one"``. Not mapped (ValueError naming the module): v_reset other than
None/0, ParametricLIFNode (its charge multiplies by sigmoid(w), a rule qnoise does not copy), other classes.
"""

from __future__ import annotations

from torch import nn

from ..neuron_kinds import CUBA, Leaky
from .modules import chain
from .shapes import guess_input_shape, output_size
from .snntorch import _version


def _reset(path: str, m: nn.Module) -> str:
    if m.v_reset is None:
        return "subtract"
    if float(m.v_reset) == 0.0:
        return "zero"
    raise ValueError(f"SpikingJelly {type(m).__name__} '{path}' resets to v_reset={m.v_reset}; qnoise neurons reset "
                     f"to 0 or by subtraction")


def neuron(path: str, m: nn.Module) -> nn.Module | None:
    """The qnoise neuron for a SpikingJelly neuron module (module docstring), or None for other modules."""
    from spikingjelly.activation_based import neuron as sj

    kind = type(m).__name__
    if type(m) is sj.IFNode:
        return Leaky(float(m.v_threshold), "beta", reset=_reset(path, m), fire=">=", spike_value="one",
                     source="spikingjelly.IFNode")
    if type(m) is sj.LIFNode:
        return Leaky(float(m.v_threshold), "tau" if m.decay_input else "tau_no_input", tau=float(m.tau),
                     reset=_reset(path, m), fire=">=", spike_value="one", source="spikingjelly.LIFNode")
    if type(m) is getattr(sj, "CUBALIFNode", None):
        return CUBA(float(m.v_threshold), float(m.c_decay), float(m.v_decay), reset=_reset(path, m), fire=">=",
                    spike_value="one", source="spikingjelly.CUBALIFNode")
    if type(m).__module__.startswith("spikingjelly") and "neuron" in type(m).__module__:
        raise ValueError(f"SpikingJelly {kind} '{path}' has no exact qnoise counterpart (IFNode, LIFNode and "
                         f"CUBALIFNode are imported)")
    return None


def _containers() -> tuple[type, ...]:
    from spikingjelly.activation_based import layer

    return tuple(c for c in (getattr(layer, "SeqToANNContainer", None), getattr(layer, "MultiStepContainer", None))
                 if c is not None)


def from_spikingjelly(model: nn.Module, input_shape=None, num_classes: int | None = None):
    """A SpikingJelly ``nn.Sequential`` (multi-step ``[T, B, ...]`` models; SeqToANNContainer entered) as a
    qnoise `qnoise.models.graph.GraphNet`; output = the last layer's output ``[T, B, ...]``. ``input_shape`` (one
    sample) is needed when the first layer is a convolution."""
    shape = guess_input_shape(model, input_shape, "SpikingJelly")
    return chain(model, "SpikingJelly", neuron, _containers(), shape, num_classes or output_size(model),
                 {"library": "spikingjelly", "version": _version("spikingjelly"), "class": type(model).__name__})
