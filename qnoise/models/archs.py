"""Reference architectures: ``mlp``, ``cnn`` and ``resnet``, each a function of its (complete) config.

Layer names are stable, so checkpoints, probes and plots can refer to them: weight ops are ``fc<i>`` /
``conv<i>``, activations ``act<i>``, pooling ``pool<i>``, residual blocks ``block<i>`` (each with
``act1`` and ``act2`` inside) and the readout is ``readout``.

    mlp     [flatten] -> (fc -> [BN] -> act) x len(hidden) -> readout
    cnn     (conv3x3 -> [BN] -> act -> avgpool2x2) x len(channels) -> flatten -> [fc -> act] -> readout
    resnet  conv3x3 -> [BN] -> act -> (residual block, stride 2 after the first stage) x stages
            -> global avgpool -> readout

With the defaults ``cnn`` on ``(2, 34, 34)`` is the speed benchmark's reference network: conv 2->32,
conv 32->64 (3x3, BN, neuron, 2x2 avgpool each), linear 4096->256, neuron, linear 256->10.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

from torch import nn

from ..pooling import AvgPool2d
from .blocks import ResidualBlock, conv_bn, multistep

# defaults of each architecture's own options; build_model stores the completed dict
ARCH_DEFAULTS: dict[str, dict] = {
    "mlp": {"hidden": [256, 256], "batchnorm": True},
    "cnn": {"channels": [32, 64], "hidden": 256, "kernel": 3, "pool": 2, "batchnorm": True},
    "resnet": {"channels": [16, 32], "blocks": 1, "batchnorm": True},
}

# act(channels) -> a fresh activation module for a layer of that many channels
ActFactory = Callable[[int], nn.Module]


def mlp(input_shape: tuple[int, ...], num_classes: int, act: ActFactory, hidden: list[int],
        batchnorm: bool) -> OrderedDict:
    layers: OrderedDict = OrderedDict()
    width = math.prod(input_shape)
    for i, h in enumerate(hidden, 1):
        ops: list[nn.Module] = [nn.Flatten()] if i == 1 else []
        ops.append(nn.Linear(width, h, bias=not batchnorm))
        if batchnorm:
            ops.append(nn.BatchNorm1d(h))
        layers[f"fc{i}"] = multistep(*ops)
        layers[f"act{i}"] = act(h)
        width = h
    layers["readout"] = multistep(*([] if hidden else [nn.Flatten()]), nn.Linear(width, num_classes))
    return layers


def cnn(input_shape: tuple[int, ...], num_classes: int, act: ActFactory, channels: list[int], hidden: int | None,
        kernel: int, pool: int, batchnorm: bool) -> OrderedDict:
    if len(input_shape) != 3:
        raise ValueError(f"cnn needs an input shape (C, H, W), got {tuple(input_shape)}")
    cin, h, w = input_shape
    layers: OrderedDict = OrderedDict()
    for i, c in enumerate(channels, 1):
        if min(h, w) < pool:
            raise ValueError(f"cnn: input {tuple(input_shape)} is too small for {len(channels)} pooling stages "
                             f"of {pool}x{pool} (stage {i} sees {h}x{w})")
        layers[f"conv{i}"] = multistep(*conv_bn(cin, c, kernel, 1, batchnorm))
        layers[f"act{i}"] = act(c)
        layers[f"pool{i}"] = multistep(AvgPool2d(pool))
        cin, h, w = c, h // pool, w // pool
    flat = cin * h * w
    if hidden:
        n = len(channels) + 1
        layers[f"fc{n}"] = multistep(nn.Flatten(), nn.Linear(flat, hidden))
        layers[f"act{n}"] = act(hidden)
        layers["readout"] = multistep(nn.Linear(hidden, num_classes))
    else:
        layers["readout"] = multistep(nn.Flatten(), nn.Linear(flat, num_classes))
    return layers


def resnet(input_shape: tuple[int, ...], num_classes: int, act: ActFactory, channels: list[int], blocks: int,
           batchnorm: bool) -> OrderedDict:
    if len(input_shape) != 3:
        raise ValueError(f"resnet needs an input shape (C, H, W), got {tuple(input_shape)}")
    if not channels or blocks < 1:
        raise ValueError(f"resnet needs at least one stage and one block, got {channels=}, {blocks=}")
    layers: OrderedDict = OrderedDict()
    layers["conv1"] = multistep(*conv_bn(input_shape[0], channels[0], 3, 1, batchnorm))
    layers["act1"] = act(channels[0])
    cin, k = channels[0], 1
    for stage, c in enumerate(channels):
        for b in range(blocks):
            stride = 2 if stage > 0 and b == 0 else 1
            layers[f"block{k}"] = ResidualBlock(cin, c, stride, batchnorm, act(c), act(c))
            cin, k = c, k + 1
    layers["readout"] = multistep(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))
    return layers


ARCHS: dict[str, Callable[..., OrderedDict]] = {"mlp": mlp, "cnn": cnn, "resnet": resnet}
