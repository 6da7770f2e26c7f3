"""snnTorch -> qnoise (`from_snntorch`), exact to the spike.

snnTorch 0.9 / 1.0 (`snntorch._neurons`), per step, with ``reset = H(mem[t-1] - theta)`` (detached)::

    Leaky     mem = beta.clamp(0, 1) * mem + x - reset * theta          reset_mechanism "subtract"
              mem = beta.clamp(0, 1) * ((1 - reset) * mem) + x          "zero" (reset before the leak)
    Synaptic  syn = alpha.clamp(0, 1) * syn + x
              mem = beta.clamp(0, 1) * mem + syn - reset * theta        "subtract"
              mem = (beta * mem + syn) - (beta * mem + syn) * reset     "zero" (the step's charge is dropped)
    spk = H(mem - theta) with H(0) = 0 (``>``), of value graded_spikes_factor (1)

So a Leaky is `qnoise.neuron_kinds.Leaky` with ``reset_time="next"`` for subtraction (the subtraction comes
after the leak) and ``"now"`` for zero; a Synaptic is `qnoise.neuron_kinds.CUBA` with ``reset_time="next"``.
Both fire with ``">"`` and spikes of value 1. Not mapped (ValueError naming the module): reset_mechanism
"none", inhibition, state_quant, graded spikes != 1, reset_delay=False, other neuron classes.
"""

from __future__ import annotations

import torch
from torch import nn

from ..neuron_kinds import CUBA, Leaky
from .modules import chain
from .shapes import guess_input_shape, output_size

_RESETS = {"subtract": "subtract", "zero": "zero"}


def _value(module: nn.Module, name: str) -> torch.Tensor:
    v = getattr(module, name)
    return (v if torch.is_tensor(v) else torch.tensor(float(v))).detach().float()


def _common(path: str, m: nn.Module) -> str:
    kind = type(m).__name__
    problems = []
    if m.reset_mechanism not in _RESETS:
        problems.append(f"reset_mechanism={m.reset_mechanism!r} (qnoise neurons reset: subtract or zero)")
    if getattr(m, "inhibition", False):
        problems.append("inhibition=True")
    if getattr(m, "state_quant", False):
        problems.append("state_quant is set (quantize in qnoise instead: state_bits)")
    if float(_value(m, "graded_spikes_factor").flatten()[0]) != 1.0 or _value(m, "graded_spikes_factor").numel() != 1:
        problems.append("graded_spikes_factor != 1")
    if not getattr(m, "reset_delay", True):
        problems.append("reset_delay=False")
    if problems:
        raise ValueError(f"snnTorch {kind} '{path}' cannot be imported exactly: {'; '.join(problems)}")
    return _RESETS[m.reset_mechanism]


def neuron(path: str, m: nn.Module) -> nn.Module | None:
    """The qnoise neuron for an snnTorch neuron module (module docstring), or None for other modules."""
    import snntorch as snn

    if type(m) is snn.Leaky:
        reset = _common(path, m)
        return Leaky(_value(m, "threshold"), "beta", beta=_value(m, "beta").clamp(0, 1), reset=reset,
                     reset_time="next" if reset == "subtract" else "now", fire=">", spike_value="one",
                     source="snntorch.Leaky")
    if type(m) is snn.Synaptic:
        reset = _common(path, m)
        return CUBA(_value(m, "threshold"), _value(m, "alpha").clamp(0, 1), _value(m, "beta").clamp(0, 1),
                    reset=reset, reset_time="next", fire=">", spike_value="one", source="snntorch.Synaptic")
    if type(m).__module__.startswith("snntorch"):
        raise ValueError(f"snnTorch {type(m).__name__} '{path}' has no exact qnoise counterpart (Leaky and Synaptic "
                         f"are imported)")
    return None


def from_snntorch(model: nn.Module, input_shape=None, num_classes: int | None = None):
    """An snnTorch ``nn.Sequential`` (per-step layers and ``init_hidden=True`` neurons) as a qnoise
    `qnoise.models.graph.GraphNet` over ``[T, B, *input_shape]``; output = the last neuron's spikes ``[T, B, ...]``.

    ``input_shape`` (one sample, without time and batch) is needed when the first layer is a convolution.
    """
    shape = guess_input_shape(model, input_shape, "snnTorch")
    return chain(model, "snnTorch", neuron, (), shape, num_classes or output_size(model),
                 {"library": "snntorch", "version": _version("snntorch"), "class": type(model).__name__})


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
