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
import math

import torch
from torch import nn

from ..limits import MAX_INPUT_ELEMENTS, MAX_LAYERS, check_bytes, check_int

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
    opts = check_arch_options(arch, options)
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {KINDS}")
    if act_bits is not None and not (isinstance(act_bits, int) and not isinstance(act_bits, bool)
                                     and 1 <= act_bits <= 16):
        raise ValueError(f"act_bits must be an int in 1..16 or None, got {act_bits!r}")
    shape = _check_shape(input_shape)
    num_classes = check_int(num_classes, "num_classes", 1)
    if isinstance(act_alpha, bool) or not isinstance(act_alpha, (int, float)) or not (math.isfinite(act_alpha)
                                                                                       and act_alpha > 0):
        raise ValueError(f"act_alpha must be a finite number > 0, got {act_alpha!r}")
    if quantization is not None and not isinstance(quantization, dict):
        raise ValueError(f"quantization must be a dict of parts (weights, thresholds, membrane) or None, got "
                         f"{quantization!r:.100}")
    if kind == "snn":
        spec, activation = neuron_spec(neuron), None
        for key, value in spec.items():
            _check_option("neuron", key, value, NEURON_DEFAULTS[key])
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

    with torch.device("meta"):  # shapes only, no memory: refuse a model too large before allocating it
        meta = Network(ARCHS[arch](shape, int(num_classes), act, **opts), config)
    elements = sum(t.numel() for t in meta.state_dict().values())
    check_bytes(4 * elements, f"a {arch} of {elements:,} parameters", "choose smaller widths or fewer layers")
    model = Network(ARCHS[arch](shape, int(num_classes), act, **opts), config)
    if quantization:
        apply_quantization(model, {k: v for k, v in quantization.items() if v is not None})
    return model


def _check_shape(input_shape) -> tuple[int, ...]:
    """One sample's shape: 1 to 3 positive integers whose product is at most `MAX_INPUT_ELEMENTS`."""
    if not isinstance(input_shape, (list, tuple)) or not 1 <= len(input_shape) <= 3:
        raise ValueError(f"input_shape must be a list of 1 to 3 positive integers, got {input_shape!r:.100}")
    shape = tuple(check_int(s, "input_shape entries") for s in input_shape)
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise ValueError(f"input_shape {list(shape)} holds {math.prod(shape):,} values per sample and step; the "
                         f"limit is {MAX_INPUT_ELEMENTS:,}")
    return shape


def _check_option(where: str, key: str, value, default) -> None:
    """An architecture or neuron option must have its default's type: bool, int >= 1, finite number, str,
    or a list of at most `MAX_LAYERS` ints >= 1 (``cnn``'s ``hidden`` may be None: no hidden layer)."""
    name = f"{where} option {key}"
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        if value is None and (where, key) == ("cnn", "hidden"):
            return
        check_int(value, name, 1, MAX_LAYERS if key == "blocks" else None)
        return
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        expected = "a finite number"
    elif isinstance(default, str):
        ok, expected = isinstance(value, str), "a string"
    else:
        if not isinstance(value, list) or len(value) > MAX_LAYERS:
            raise ValueError(f"{name} must be a list of at most {MAX_LAYERS} positive integers, got {value!r:.100}")
        for v in value:
            check_int(v, f"{name} entries")
        return
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r:.100}")


def check_arch_options(arch: str, options: dict) -> dict:
    """Validate an architecture name and its options (names and types) without building anything; returns
    the completed options. What `build_model` checks first, available before the data is loaded."""
    if not isinstance(arch, str) or arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHS)}")
    if not isinstance(options, dict):
        raise ValueError(f"{arch} options must be a dict, got {options!r:.100}")
    unknown = set(options) - set(ARCH_DEFAULTS[arch])
    if unknown:
        raise ValueError(f"unknown {arch} option(s) {sorted(unknown)}; known: {sorted(ARCH_DEFAULTS[arch])}")
    opts = {**copy.deepcopy(ARCH_DEFAULTS[arch]), **copy.deepcopy(options)}
    for key, value in opts.items():
        _check_option(arch, key, value, ARCH_DEFAULTS[arch][key])
    return opts


def model_from_config(config: dict) -> Network:
    """``build_model(**config)``, with a message naming what is wrong when the config is not one."""
    if not isinstance(config, dict) or "arch" not in config:
        raise ValueError(f"a model config is a dict with an 'arch' key, got {config!r:.200}")
    try:
        return build_model(**config)
    except TypeError as err:  # an unexpected or missing key: say so instead of a traceback
        raise ValueError(f"the model config does not fit build_model: {err}") from err


def state_shapes(config: dict) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """``{key: (shape, dtype)}`` of the state dict ``config`` builds without its quantization, computed on the
    meta device (no memory, no time): what a checkpoint's tensor file must hold before the model is built.
    Quantized weights and thresholds appear under their plain names (``fc1.weight``, ``act1.raw_threshold``)."""
    if not isinstance(config, dict) or "arch" not in config:
        raise ValueError(f"a model config is a dict with an 'arch' key, got {config!r:.200}")
    try:
        with torch.device("meta"):
            model = build_model(**{**config, "quantization": None})
    except TypeError as err:
        raise ValueError(f"the model config does not fit build_model: {err}") from err
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


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
           "ThresholdQuantizer", "apply_quantization", "build_model", "check_arch_options", "make_neuron",
           "model_from_config", "neuron_spec", "quantization_spec", "set_act_bits", "state_shapes",
           "sync_threshold_step", "threshold_quantizers"]
