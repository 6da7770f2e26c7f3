"""Copies of models that carry parametrizations (quantized weights, thresholds) safely.

``copy.deepcopy`` of a module with a ``torch.nn.utils.parametrize`` parametrization shares the generated
``Parametrized...`` class with the original, so removing a parametrization from the copy deletes the
property from the original too (and from every other copy of it), and such a module cannot be pickled. Here
the copy's parametrized modules get classes of their own (`_own_copy`, `qnoise.parametrized`), so a copy's
parametrizations can be removed or changed without touching the original, which is never modified, not even
for a moment (it used to have its parametrizations lifted while it was copied, which broke any sibling the
user had made with ``copy.deepcopy``: analysing one copy of a quantized model left the other without its
``weight``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize

from .. import parametrized
from ..quant import weight_layers

REFERENCES = ("float", "quantized")
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")

# (module name, tensor name, [parametrization modules in order])
Lifted = list[tuple[str, str, list[nn.Module]]]


def _without_hooks(model: nn.Module) -> dict:
    """A deepcopy memo that gives every module of the copy empty hook tables (a probe's hooks, or a user's,
    must not run inside twins and indicator copies)."""
    memo: dict = {}
    for m in model.modules():
        for attr in _HOOK_DICTS:
            d = m.__dict__.get(attr)
            if d is not None:
                memo[id(d)] = type(d)()
    return memo


def restore(model: nn.Module, saved: Lifted) -> None:
    """Register parametrizations taken off a copy of ``model`` (`to_portable`) on ``model`` again.

    ``unsafe=True``: torch's check runs each parametrization once on the tensor to compare shapes and dtypes,
    which here would quantize every weight again (a sweep cell paid it about ten times); these modules
    passed that check on these very tensors when they were first registered."""
    for name, tensor, plist in saved:
        m = model.get_submodule(name)
        for p in plist:
            parametrized.register(m, tensor, p, unsafe=True)


def _own_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` without hooks whose parametrized modules have classes of their own (the same
    bases and contents as torch's generated ``Parametrized*`` class, which the copy would otherwise share)."""
    clone = copy.deepcopy(model, _without_hooks(model))
    for m in clone.modules():
        parametrized.own_class(m)
    return clone


def clone_model(model: nn.Module, weights: str = "float") -> nn.Module:
    """A deep copy of ``model`` without hooks. ``weights="float"``: float weights, no weight quantizer;
    ``"quantized"``: the current (possibly quantized) weights frozen as plain parameters. Other
    parametrizations (e.g. quantized thresholds) are kept, the copy's own. ``model`` is not modified."""
    if weights not in REFERENCES:
        raise ValueError(f"weights={weights!r} is not one of {REFERENCES}")
    clone = _own_copy(model)
    with torch.no_grad():
        # the original's weights as they are now (inside `parametrize.cached` a value already computed)
        current = {name: m.weight for name, m in weight_layers(model)} if weights == "quantized" else {}
        for name, m in weight_layers(clone):
            if parametrize.is_parametrized(m, "weight"):
                parametrized.remove(m, "weight", leave_parametrized=False)
                if weights == "quantized":
                    m.weight.copy_(current[name])
    return clone


def private_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parametrizations are its own (`to_portable` / `from_portable`):
    ``copy.deepcopy`` would share torch's generated ``Parametrized*`` classes with the original, and removing a
    quantizer from the copy would then delete the original's ``weight``."""
    return from_portable(to_portable(model))


def to_portable(model: nn.Module) -> tuple[nn.Module, Lifted]:
    """A picklable ``(plain copy, parametrizations)`` pair; `from_portable` rebuilds the model. ``model`` is not
    modified."""
    plain = _own_copy(model)
    params: Lifted = []
    for name, m in [(n, m) for n, m in plain.named_modules() if parametrize.is_parametrized(m)]:
        for tensor in list(m.parametrizations.keys()):
            params.append((name, tensor, list(m.parametrizations[tensor])))
            parametrized.remove(m, tensor, leave_parametrized=False)
    return plain, params


def from_portable(portable: tuple[nn.Module, Lifted]) -> nn.Module:
    plain, params = portable
    restore(plain, params)
    return plain
