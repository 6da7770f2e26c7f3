"""Building blocks of the reference networks: the activation of one layer (neuron or ANN activation),
the multi-step `Network` container and the residual block.

Every network maps a multi-step input ``[T, B, ...]`` to per-step outputs ``[T, B, num_classes]``; its
prediction is the argmax of its readout summed over the steps (`qnoise.metrics.predicted_class`). Stateless
ops sit inside `qnoise.layers.MultiStep`; each activation (an `IF`/`LIF` neuron, or ``nn.ReLU`` /
`LearnableClip` in an ANN) is a direct module of the graph. Synaptic ops between two activations are affine
(conv/linear, BN, bias, average pooling).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .. import stepping
from ..layers import MultiStep
from ..neuron_add import step_added
from ..neurons import IF, LIF
from ..quant import LearnableClip

# every key a neuron spec may hold, with its default; membrane quantization lives in the quantization spec
NEURON_DEFAULTS: dict = {
    "type": "if",            # "if" or "lif"
    "threshold": 1.0,        # initial theta
    "v_init": "zero",        # "zero" (truncating) or "half" (rounding, v[0] = theta/2)
    "reset": "subtract",     # "subtract" or "zero"
    "signed": False,         # Fast-SNN signed IF
    "learn_threshold": False,
    "per_channel": False,
    "surrogate": "atan",
    "beta": 0.9,             # LIF only
    "learn_beta": False,     # LIF only
}
NEURON_TYPES = ("if", "lif")
ACTIVATIONS = ("relu", "clip")


def neuron_spec(neuron: str | dict | None = None) -> dict:
    """Complete neuron spec from ``None`` (plain IF), a type name (``"if"``/``"lif"``) or a partial dict."""
    if neuron is None:
        given: dict = {}
    elif isinstance(neuron, str):
        given = {"type": neuron}
    elif isinstance(neuron, dict):
        given = dict(neuron)
    else:
        raise ValueError(f"neuron must be None, 'if', 'lif' or a dict, got {neuron!r}")
    unknown = set(given) - set(NEURON_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown neuron option(s) {sorted(unknown)}; known: {sorted(NEURON_DEFAULTS)}")
    spec = {**NEURON_DEFAULTS, **given}
    spec["type"] = str(spec["type"]).lower()
    if spec["type"] not in NEURON_TYPES:
        raise ValueError(f"neuron type {spec['type']!r} is not one of {NEURON_TYPES}")
    return spec


def make_neuron(spec: dict, channels: int) -> IF:
    """An `IF` or `LIF` layer from a complete neuron spec; ``channels`` sizes per-channel thresholds."""
    kwargs = {k: spec[k] for k in ("threshold", "v_init", "reset", "signed", "learn_threshold", "per_channel",
                                   "surrogate")}
    kwargs["channels"] = channels if spec["per_channel"] else None
    if spec["type"] == "lif":
        return LIF(beta=spec["beta"], learn_beta=spec["learn_beta"], **kwargs)
    return IF(**kwargs)


def make_activation(kind: str, neuron: dict, activation: str, act_bits: int | None, act_alpha: float,
                    channels: int) -> nn.Module:
    """One layer's nonlinearity: a neuron (``kind="snn"``), ``nn.ReLU`` or ``LearnableClip(act_bits)``."""
    if kind == "snn":
        return make_neuron(neuron, channels)
    if activation == "relu":
        return nn.ReLU()
    return LearnableClip(bits=act_bits, alpha=act_alpha)


class Network(nn.Sequential):
    """A multi-step network ``[T, B, *input_shape] -> [T, B, num_classes]`` that carries its config.

    ``qnoise_config`` is the JSON-able dict `qnoise.models.build_model` was called with (plus the
    quantization spec once applied): ``build_model(**config)`` rebuilds the same architecture.

    At inference it runs in the order `qnoise.stepping.plan` picks: step-major (the whole network one
    timestep at a time), folded (T into the batch, small networks) or layer-major (each layer over all T, as
    in training); the outputs are the same bit for bit.
    """

    def __init__(self, layers: OrderedDict, config: dict) -> None:
        super().__init__(layers)
        self.qnoise_config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = tuple(self.qnoise_config["input_shape"])
        if x.dim() != len(shape) + 2 or tuple(x.shape[2:]) != shape:
            raise ValueError(
                f"{self.qnoise_config['arch']} expects input [T, B, {', '.join(map(str, shape))}], got shape "
                f"{tuple(x.shape)}"
            )
        order = stepping.plan(self, x)
        if order == "step":
            return stepping.forward(self, x)
        with stepping.layer_major(order, x.shape[0]):
            return super().forward(x)


class ResidualBlock(nn.Module):
    """``act2(conv2(act1(conv1(x))) + shortcut(x))``: the add happens before the second activation.

    ``conv1`` may stride to downsample; ``shortcut`` is the identity or a 1x1 conv (+BN) when the shape
    changes. Every path is affine, so the input of ``act2`` is affine in the rates of ``act1`` and ``x``.
    In a step-major run the addition and ``act2``'s step are one kernel where it applies (`qnoise.neuron_add`).
    """

    step_transparent = True  # its forward only composes its children: it runs one step at a time as well

    def __init__(self, cin: int, cout: int, stride: int, batchnorm: bool, act1: nn.Module,
                 act2: nn.Module) -> None:
        super().__init__()
        self.conv1 = multistep(*conv_bn(cin, cout, 3, stride, batchnorm))
        self.act1 = act1
        self.conv2 = multistep(*conv_bn(cout, cout, 3, 1, batchnorm))
        if stride != 1 or cin != cout:
            self.shortcut: nn.Module = multistep(*conv_bn(cin, cout, 1, stride, batchnorm))
        else:
            self.shortcut = nn.Identity()
        self.act2 = act2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # act2(a + b); step-major, the addition and act2's step are one kernel (qnoise.neuron_add)
        return step_added(self.act2, self.conv2(self.act1(self.conv1(x))), self.shortcut(x))


def multistep(*modules: nn.Module) -> MultiStep:
    """``MultiStep(nn.Sequential(*modules))``: always a Sequential body, so parameter names (``body.0``, ...)
    stay the same whether or not a BN follows the conv (a converted, BN-folded model loads like its ANN)."""
    return MultiStep(nn.Sequential(*modules))


def conv_bn(cin: int, cout: int, kernel: int, stride: int, batchnorm: bool) -> list[nn.Module]:
    """``[Conv2d, BatchNorm2d]`` (conv without bias) or ``[Conv2d]`` with bias when ``batchnorm`` is off."""
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=not batchnorm)
    return [conv, nn.BatchNorm2d(cout)] if batchnorm else [conv]
