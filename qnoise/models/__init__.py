"""Reference networks (``mlp``, ``cnn``, ``resnet``) built from a small JSON-able config.

``build_model(name, input_shape, num_classes, kind="snn"|"ann", neuron=..., act_bits=..., **options)``
returns a `Network` (``[T, B, *input_shape] -> [T, B, num_classes]``) whose ``qnoise_config`` holds the
complete config: ``build_model(**model.qnoise_config)`` rebuilds it, quantization parametrizations
included. An ANN uses ``nn.ReLU`` (``act_bits=None``) or ``LearnableClip(act_bits)`` (``activation="clip"``,
the default when ``act_bits`` is given; ``act_bits=None`` with ``"clip"`` is the float clip) and runs with
T = 1 on the static or time-averaged input.
"""

from __future__ import annotations

import copy

from torch import nn

from .archs import ARCH_DEFAULTS, ARCHS
from .blocks import ACTIVATIONS, NEURON_DEFAULTS, Network, ResidualBlock, make_activation, make_neuron, neuron_spec
from .quantization import (
    QUANT_DEFAULTS,
    ThresholdQuantizer,
    apply_quantization,
    quantization_spec,
    sync_threshold_step,
    threshold_quantizers,
)

KINDS = ("snn", "ann")


def build_model(
    arch: str,
    input_shape: tuple[int, ...] | list[int],
    num_classes: int,
    kind: str = "snn",
    neuron: str | dict | None = None,
    act_bits: int | None = None,
    activation: str | None = None,
    act_alpha: float = 1.0,
    quantization: dict | None = None,
    **options,
) -> Network:
    """Build a reference network.

    Args:
        arch: ``"mlp"``, ``"cnn"`` or ``"resnet"`` (options and defaults in `ARCH_DEFAULTS`).
        input_shape: one sample's shape without time, ``(C, H, W)`` or ``(N,)``.
        num_classes: outputs of the readout.
        kind: ``"snn"`` (neurons) or ``"ann"`` (ReLU / LearnableClip).
        neuron: SNN neuron spec (`neuron_spec`): ``"if"``, ``"lif"`` or a dict of `NEURON_DEFAULTS` keys.
        act_bits: ANN activation bits (LearnableClip); for an SNN it only records where it came from.
        activation: ANN activation, ``"relu"`` or ``"clip"`` (default: ``"clip"`` iff ``act_bits`` is set).
        act_alpha: initial clip level alpha of LearnableClip.
        quantization: weight / threshold / membrane quantization spec (`apply_quantization`).
        **options: architecture options (e.g. ``channels=[32, 64], hidden=256`` for ``cnn``).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHS)}")
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {KINDS}")
    unknown = set(options) - set(ARCH_DEFAULTS[arch])
    if unknown:
        raise ValueError(f"unknown {arch} option(s) {sorted(unknown)}; known: {sorted(ARCH_DEFAULTS[arch])}")
    if act_bits is not None and not (isinstance(act_bits, int) and 1 <= act_bits <= 16):
        raise ValueError(f"act_bits must be an int in 1..16 or None, got {act_bits!r}")
    shape = tuple(int(s) for s in input_shape)
    opts = {**copy.deepcopy(ARCH_DEFAULTS[arch]), **copy.deepcopy(options)}
    if kind == "snn":
        spec, activation = neuron_spec(neuron), None
    else:
        if neuron is not None:
            raise ValueError("an ANN takes no neuron spec (neuron=None); use activation='relu' or 'clip'")
        spec = None
        activation = activation or ("clip" if act_bits is not None else "relu")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not one of {ACTIVATIONS}")
        if activation == "relu" and act_bits is not None:
            raise ValueError(f"activation='relu' cannot be quantized (act_bits={act_bits}); use 'clip'")
    config = {"arch": arch, "input_shape": list(shape), "num_classes": int(num_classes), "kind": kind,
              "neuron": spec, "activation": activation, "act_bits": act_bits, "act_alpha": float(act_alpha),
              **opts, "quantization": quantization_spec(None)}

    def act(channels: int) -> nn.Module:
        return make_activation(kind, spec, activation, act_bits, act_alpha, channels)

    model = Network(ARCHS[arch](shape, int(num_classes), act, **opts), config)
    if quantization:
        apply_quantization(model, {k: v for k, v in quantization.items() if v is not None})
    return model


def model_from_config(config: dict) -> Network:
    """``build_model(**config)``, with a message naming what is wrong when the config is not one."""
    if not isinstance(config, dict) or "arch" not in config:
        raise ValueError(f"a model config is a dict with an 'arch' key, got {config!r:.200}")
    return build_model(**config)


def set_act_bits(model: nn.Module, bits: int | None) -> int:
    """Set the bits of every `LearnableClip` (progressive quantization); updates the config. Returns count."""
    from ..quant import LearnableClip

    clips = [m for m in model.modules() if isinstance(m, LearnableClip)]
    for m in clips:
        m.bits = bits
    if clips and hasattr(model, "qnoise_config"):
        model.qnoise_config["act_bits"] = bits
    return len(clips)


__all__ = ["ARCHS", "ARCH_DEFAULTS", "KINDS", "NEURON_DEFAULTS", "QUANT_DEFAULTS", "Network", "ResidualBlock",
           "ThresholdQuantizer", "apply_quantization", "build_model", "make_neuron", "model_from_config",
           "neuron_spec", "quantization_spec", "set_act_bits", "sync_threshold_step", "threshold_quantizers"]
