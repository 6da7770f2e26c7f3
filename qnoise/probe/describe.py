"""What the table's config columns and sidecar say about a model: its neuron kind, weight and membrane bits,
rounding, and each neuron's rule as the probe used it."""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize

from ..neurons import LIF, spiking_neurons
from ..quant import weight_bits, weight_layers
from .terms import rate_rule


def describe_neurons(model: nn.Module) -> str:
    """The neuron column: ``IF``, ``LIF``, ``signed IF``, ``signed LIF``, or ``mixed``."""
    kinds = {("signed " if n.signed else "") + parametrize.type_before_parametrizations(n).__name__
             for _, n in spiking_neurons(model)}
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "none")


def describe_weight_bits(model: nn.Module) -> int:
    """The weight_bits column: the lowest per-layer width (32 when no layer is quantized)."""
    return min((weight_bits(m) for _, m in weight_layers(model)), default=32)


def describe_state_bits(model: nn.Module) -> int:
    """The state_bits column: the lowest membrane width (32 = float membrane)."""
    return min((n.state_bits or 32 for _, n in spiking_neurons(model)), default=32)


def describe_rounding(model: nn.Module) -> str:
    """The rounding column: the first weight quantizer's rounding (``"nearest"`` for float weights)."""
    for _, m in weight_layers(model):
        if parametrize.is_parametrized(m, "weight"):
            return str(getattr(m.parametrizations.weight[0], "rounding", "nearest"))
    return "nearest"


def neuron_rules(model: nn.Module) -> dict[str, dict]:
    """Each neuron layer's rule as the probe used it (for the table's sidecar)."""
    out = {}
    for name, n in spiking_neurons(model):
        theta = n.threshold.detach()
        out[name] = {"type": type(n).__name__, "v_init": n.v_init, "reset": n.reset, "signed": bool(n.signed),
                     "state_bits": n.state_bits, "per_channel": bool(n.per_channel), "q_t": rate_rule(n),
                     "threshold": _values(theta)}
        for key in ("fire", "spike_value", "reset_time", "charge", "source"):  # imported neurons' own rule
            if isinstance(getattr(n, key, None), str):
                out[name][key] = getattr(n, key)
        if isinstance(n, LIF):
            out[name]["beta"] = float(n.beta)
    return out


def _values(t):
    """A parameter for the sidecar: a number, a list (one per channel), or for per-neuron arrays of more than
    one dimension their shape and range (uniform arrays as one number)."""
    t = t.detach().float().cpu()
    if t.dim() == 0:
        return float(t)
    if t.dim() == 1:
        return [float(v) for v in t]
    if bool((t == t.flatten()[0]).all()):
        return float(t.flatten()[0])
    return {"shape": list(t.shape), "min": float(t.min()), "max": float(t.max())}
