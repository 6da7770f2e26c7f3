"""torch's parametrizations registered and removed without touching other modules.

``copy.deepcopy`` of a parametrized module shares torch's generated ``Parametrized*`` class between the module
and its copy, and torch adds or deletes a parametrized tensor's property on that class: removing the weight
quantizer from one copy deleted ``weight`` from every other (``'ParametrizedLinear' object has no attribute
'weight'``), and registering one on a copy gave the others a property they cannot serve. qnoise changes a
model's parametrizations only through `register` and `remove`, which first give the module a class of its own
(`own_class`: the same name, bases and contents), so a user's copies of a model never change with it.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize


def own_class(module: nn.Module) -> None:
    """Give a parametrized ``module`` a class of its own (no effect on an unparametrized one)."""
    if parametrize.is_parametrized(module):
        cls = type(module)
        module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))


def register(module: nn.Module, tensor: str, parametrization: nn.Module, *, unsafe: bool = False) -> None:
    """``parametrize.register_parametrization`` on ``module``'s own class."""
    own_class(module)
    parametrize.register_parametrization(module, tensor, parametrization, unsafe=unsafe)


def remove(module: nn.Module, tensor: str, *, leave_parametrized: bool = False) -> None:
    """``parametrize.remove_parametrizations`` on ``module``'s own class."""
    own_class(module)
    parametrize.remove_parametrizations(module, tensor, leave_parametrized=leave_parametrized)
