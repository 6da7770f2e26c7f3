"""Quantized ANN -> SNN conversion (Fast-SNN): BN folding, thresholds from clip levels, T = 2^b - 1.

BN folding (eval-mode statistics), per output channel c, for ``y = BN(W x + b)``::

    s_c = gamma_c / sqrt(var_c + eps)      W'_c = s_c * W_c      b'_c = s_c * (b_c - mean_c) + beta_c

so ``W' x + b' == BN(W x + b)`` exactly (up to float rounding).

Conversion: every ``LearnableClip(bits, alpha)`` becomes ``IF(threshold=alpha, v_init="half",
reset="subtract", signed=...)``; run for ``T = 2^b - 1`` steps on the static input, a single layer's mean
output equals the clip quantizer exactly: ``(alpha/T) * clip(floor(T z/alpha + 1/2), 0, T)`` (in float, except
within a few units in the last place of a half level, where the neuron's step-by-step sum and the formula may
round to neighbouring levels).
Deeper layers see spike trains instead of constants, which adds the sequential error the probe measures.
Weights are folded float weights; a layer the ANN quantizes keeps the ANN's quantizer, wrapped so that the
folded weights stay on its grid (`qnoise.quant.FoldedWeight`): the SNN reports the ANN's weight bits.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..models import model_from_config
from ..neurons import spiking_neurons
from ..quant import LearnableClip, float_weight, weight_layers
from ..quant.clip import CLIP_FLOOR

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s, shift)`` per channel of ``bn`` in eval mode: ``BN(y) = s * y + shift`` (module docstring)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_bn needs a BatchNorm with running statistics (track_running_stats=True)")
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
    return scale.clone(), shift.clone()


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.modules.batchnorm._BatchNorm,
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W', b')`` of a Conv/Linear ``(weight, bias)`` followed by ``bn`` in eval mode (module docstring)."""
    scale, shift = bn_affine(bn)
    with torch.no_grad():
        b = shift if bias is None else bias * scale + shift
        w = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
    return w.clone(), b.clone()


def batchnorm_after(model: nn.Module) -> dict[int, nn.Module]:
    """``{id(weight layer): BN}`` for every Conv/Linear directly followed by a BatchNorm in a Sequential."""
    pairs = {}
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            children = list(seq.children())
            for a, b in zip(children, children[1:]):
                if isinstance(b, BN_TYPES) and isinstance(a, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                    pairs[id(a)] = b
    return pairs


def clip_layers(model: nn.Module) -> list[LearnableClip]:
    return [m for m in model.modules() if isinstance(m, LearnableClip)]


def convert_to_snn(ann: nn.Module, signed: bool = False) -> nn.Module:
    """The SNN of a quantized ANN (`qnoise.models.Network`, ``kind="ann"``, LearnableClip activations).

    Returns a new model: same architecture without BN, ``IF(theta = alpha, v_init="half",
    reset="subtract", signed)``; run it for ``timesteps_for(ann)`` steps on the static input. Layers whose
    weights the ANN quantizes keep its quantizer inside a `qnoise.quant.FoldedWeight` (batch norm folded in
    as a per-channel scale), so their weights stay on the ANN's grid at the ANN's bits.
    """
    cfg = copy.deepcopy(getattr(ann, "qnoise_config", None) or {})
    if cfg.get("kind") != "ann" or cfg.get("activation") != "clip":
        raise ValueError("convert_to_snn needs an ANN with LearnableClip activations (kind='ann', "
                         f"activation='clip'), got kind={cfg.get('kind')!r}, activation={cfg.get('activation')!r}")
    clips = clip_layers(ann)
    bits = {m.bits for m in clips}
    if None in bits or len(bits) != 1:
        raise ValueError(f"convert_to_snn needs every LearnableClip at one bit width, got {sorted(map(str, bits))}")
    weight_spec = (cfg.get("quantization") or {}).get("weights")
    cfg.update(kind="snn", activation=None, batchnorm=False, act_bits=bits.pop(),
               neuron={"type": "if", "threshold": 1.0, "v_init": "half", "reset": "subtract", "signed": signed},
               quantization={"weights": {**weight_spec, "folded": True}} if weight_spec else None)
    snn = model_from_config(cfg)
    targets, sources = weight_layers(snn), weight_layers(ann)
    if [n for n, _ in targets] != [n for n, _ in sources]:
        raise ValueError("convert_to_snn: the ANN's and the SNN's weight layers differ: "
                         f"{[n for n, _ in sources]} vs {[n for n, _ in targets]}")
    bns = batchnorm_after(ann)
    with torch.no_grad():
        for (_, m), (_, a) in zip(targets, sources, strict=True):
            w = float_weight(a).detach()
            scale, shift = bn_affine(bns[id(a)]) if id(a) in bns else (torch.ones(w.shape[0]), torch.zeros(w.shape[0]))
            bias = shift if a.bias is None else a.bias.detach() * scale + shift
            folded = w * scale.view(-1, *[1] * (w.dim() - 1))
            if parametrize.is_parametrized(a, "weight"):
                q = m.parametrizations.weight[0]  # a FoldedWeight around a quantizer like the ANN's
                q.quantizer.load_state_dict(a.parametrizations.weight[0].state_dict())
                q.scale.copy_(torch.where(scale == 0, torch.ones_like(scale), scale))
                m.parametrizations.weight.original.copy_(folded)
            else:
                m.weight.copy_(folded)
            m.bias.copy_(bias)
        for (_, neuron), clip in zip(spiking_neurons(snn), clips, strict=True):
            neuron.set_threshold(clip.alpha.detach().clamp_min(CLIP_FLOOR))
    return snn.eval()


def timesteps_for(model: nn.Module) -> int:
    """``T = 2^b - 1`` for a quantized ANN or its converted SNN (``act_bits`` in its config)."""
    bits = model.qnoise_config.get("act_bits")
    if bits is None:
        raise ValueError("the model has no act_bits: T = 2^b - 1 applies to quantized ANNs and their SNNs")
    return 2**bits - 1
