"""Copies of models that carry parametrizations (quantized weights, thresholds) safely.

``copy.deepcopy`` of a module with a ``torch.nn.utils.parametrize`` parametrization shares the generated
``Parametrized...`` class with the original, so removing a parametrization from the copy deletes the
property from the original too, and such a module cannot be pickled. Here parametrizations are lifted off
the original for the moment of copying (the same quantizer modules and float parameters are put back
right after), and the copy gets its own.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn
from torch.nn.utils import parametrize

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


@contextlib.contextmanager
def lifted(model: nn.Module):
    """Remove every parametrization of ``model`` (float tensors back in place) and restore them on exit;
    yields the list of what was removed."""
    saved: Lifted = []
    for name, m in model.named_modules():
        if parametrize.is_parametrized(m):
            for tensor in list(m.parametrizations.keys()):
                saved.append((name, tensor, list(m.parametrizations[tensor])))
                parametrize.remove_parametrizations(m, tensor, leave_parametrized=False)
    try:
        yield saved
    finally:
        restore(model, saved)


def restore(model: nn.Module, saved: Lifted) -> None:
    """Register lifted parametrizations (these very modules, or copies of them) on ``model`` again.

    ``unsafe=True``: torch's check runs each parametrization once on the tensor to compare shapes and dtypes,
    which here would quantize every weight again (a sweep cell paid it about ten times); these modules
    passed that check on these very tensors when they were first registered."""
    for name, tensor, plist in saved:
        m = model.get_submodule(name)
        for p in plist:
            parametrize.register_parametrization(m, tensor, p, unsafe=True)


def clone_model(model: nn.Module, weights: str = "float") -> nn.Module:
    """A deep copy of ``model`` without hooks. ``weights="float"``: float weights, no weight quantizer;
    ``"quantized"``: the current (possibly quantized) weights frozen as plain parameters. Other
    parametrizations (e.g. quantized thresholds) are copied along."""
    if weights not in REFERENCES:
        raise ValueError(f"weights={weights!r} is not one of {REFERENCES}")
    with torch.no_grad():
        current = {name: m.weight.detach().clone() for name, m in weight_layers(model)}
    with lifted(model) as saved:
        clone = copy.deepcopy(model, _without_hooks(model))
        others = [(n, t, copy.deepcopy(p)) for n, t, p in saved if t != "weight"]
    restore(clone, others)
    if weights == "quantized":
        with torch.no_grad():
            for name, m in weight_layers(clone):
                m.weight.copy_(current[name])
    return clone


def private_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parametrizations are its own (`to_portable` / `from_portable`):
    ``copy.deepcopy`` would share torch's generated ``Parametrized*`` classes with the original, and removing a
    quantizer from the copy would then delete the original's ``weight``."""
    return from_portable(to_portable(model))


def to_portable(model: nn.Module) -> tuple[nn.Module, Lifted]:
    """A picklable ``(plain copy, parametrizations)`` pair; `from_portable` rebuilds the model."""
    with lifted(model) as saved:
        plain = copy.deepcopy(model, _without_hooks(model))
        params = [(n, t, copy.deepcopy(p)) for n, t, p in saved]
    return plain, params


def from_portable(portable: tuple[nn.Module, Lifted]) -> nn.Module:
    plain, params = portable
    restore(plain, params)
    return plain
