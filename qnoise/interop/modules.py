"""Torch modules -> qnoise graph nodes, shared by the snnTorch and SpikingJelly importers.

A model is read as a chain: an ``nn.Sequential`` (nested Sequentials and the libraries' own containers are
entered) whose stateless layers are copied into `qnoise.layers.MultiStep` (run per step, values unchanged) and
whose neurons are mapped by the library's ``neuron`` function. Anything else raises ``ValueError`` naming the
module's path and why: a max pooling is not affine (the probe needs affine ops between neurons), a custom
``forward`` cannot be read without running code (export it to NIR and use `qnoise.interop.from_nir`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import nn

from ..layers import MultiStep
from ..models.graph import GraphNet, clean_name

_STATELESS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.AvgPool2d, nn.Flatten, nn.BatchNorm1d, nn.BatchNorm2d)
_DROPPED = (nn.Identity, nn.Dropout)
_NOT_AFFINE = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d, nn.ReLU)


def _library_dropout(m: nn.Module) -> bool:
    """A peer library's own dropout (SpikingJelly's ``layer.Dropout`` does not subclass ``nn.Dropout``): the
    identity at inference, dropped like ``nn.Dropout``."""
    return type(m).__name__ in ("Dropout", "Dropout2d") and type(m).__module__.split(".")[0] in ("spikingjelly",
                                                                                                 "snntorch")


def plain_copy(module: nn.Module) -> nn.Module:
    """A plain torch layer with the same configuration and values (a library's subclass loses its step mode)."""
    for cls in _STATELESS:
        if isinstance(module, cls):
            new = copy.deepcopy(module)
            new.__class__ = cls  # SpikingJelly's layer.Conv2d etc. subclass the torch layers
            for attr in ("step_mode",):
                new.__dict__.pop(attr, None)
            new._forward_hooks.clear()
            new._forward_pre_hooks.clear()
            return new
    raise TypeError(type(module).__name__)


def chain(model: nn.Module, library: str, neuron: Callable[[str, nn.Module], nn.Module | None],
          containers: tuple[type, ...], input_shape, num_classes: int | None, source: dict) -> GraphNet:
    """Read ``model`` as a chain (module docstring); ``neuron(path, module)`` returns the qnoise neuron for a
    library neuron, or None when ``module`` is not one."""
    nodes: list[tuple[str, nn.Module]] = []

    def walk(m: nn.Module, path: str) -> None:
        if isinstance(m, nn.Sequential) or isinstance(m, containers):
            for name, child in m.named_children():
                walk(child, f"{path}.{name}" if path else name)
            return
        try:
            mapped = neuron(path, m)
        except ValueError as err:
            if f"'{path}'" in str(err):  # already names the module
                raise
            raise ValueError(f"{library} module '{path}' ({type(m).__name__}): {err}") from err
        if mapped is not None:
            nodes.append((path, mapped))
        elif isinstance(m, _STATELESS):
            nodes.append((path, MultiStep(plain_copy(m))))
        elif isinstance(m, _DROPPED) or _library_dropout(m):
            return
        elif isinstance(m, _NOT_AFFINE):
            raise ValueError(f"{library} module '{path}' ({type(m).__name__}) cannot be imported: it is not an affine "
                             f"op, and the probe needs affine ops between neurons (use AvgPool2d / a neuron)")
        else:
            raise ValueError(f"{library} module '{path}' ({type(m).__name__}) has no qnoise counterpart; qnoise reads "
                             f"nn.Sequential models of Linear/Conv1d/Conv2d/AvgPool2d/Flatten/BatchNorm and "
                             f"{library} neurons (for a custom forward, export to NIR and use qnoise.interop.from_nir)")

    if not (isinstance(model, nn.Sequential) or isinstance(model, containers)):
        raise ValueError(f"{library} model {type(model).__name__} is not an nn.Sequential: qnoise cannot read a "
                         f"custom forward; export it to NIR and use qnoise.interop.from_nir")
    walk(model, "")
    if not nodes:
        raise ValueError(f"{library} model {type(model).__name__} holds no layer")
    taken: set[str] = set()
    named = {clean_name(p, taken): m for p, m in nodes}
    names = list(named)
    net = GraphNet(named, list(zip(names[:-1], names[1:])), input_shape, num_classes, source)
    return net.eval()
