"""The order of work at inference: step-major, folded or layer-major (DESIGN.md, "Tensor layout").

`plan` picks one of three orders for a network ``[T, B, ...] -> [T, B, ...]``; each gives the layer-major
path's outputs bit for bit (tests/test_stepping.py):

- ``"step"`` (`forward`): the whole network advances one timestep at a time, T calls on ``x[t] [B, ...]``:
  each `qnoise.layers.MultiStep` applies its body to the step, each neuron advances its state by one step
  (`qnoise.neurons.IF.step`; the state a small value kept for the run, `qnoise.neuron_step.StepState`), and
  nothing of size T is kept but the output. Per-step tensors stay in cache between layers, where a layer-major
  run materialises ``[T, B, ...]`` per layer. In an ``nn.Sequential`` network a neuron and the average pooling
  right after it step as one kernel (`qnoise.neuron_pool`), and a residual block's addition and the neuron
  after it (`qnoise.neuron_add`), unless a hook needs what the fusion skips. Every module sees the tensors it
  sees layer-major (a `MultiStep` applies its body per step there too), so the outputs are the same;
- ``"fold"``: layer-major with T folded into the batch, each `MultiStep` body called once on ``[T*B, ...]``,
  for networks whose activations are small (at most `FOLD_BYTES` per layer for the batch): one large matrix
  product beats T small ones and Python's per-call cost. A backend may round a sample's output differently
  in a larger batch (a GEMM with few rows takes another path), so a `MultiStep` folds only once it has given
  the same values folded and per step for that input shape (`qnoise.layers.MultiStep`);
- ``"layer"``: each layer over all T before the next, as in training.

`qnoise.models.Network` runs in `plan`'s order. Training (autograd on) is always layer-major, the order its
backward pass needs (`qnoise.neuron_fused`). ``"step"`` needs every module to work one step at a time
(`why_not` names the first that does not): containers that only compose their children (``nn.Sequential``,
``nn.Identity``, a class with ``step_transparent = True`` such as `qnoise.models.ResidualBlock`), `MultiStep`
in ``"loop"`` mode, and neurons with `IF`'s own forward (a subclass with a forward of its own, e.g. an imported
neuron kind, is not stepped); no module in training mode; no stochastic membrane rounding (its random numbers
would be drawn in another order); and every forward hook or pre-hook inside the network marked `step_aware`
(such a hook sees one step ``[B, ...]`` per call and can ask `qnoise.stepmode.current` for ``t``). Any other
hook keeps the run layer-major or folded (neurons still see ``[T, B, ...]`` there), so existing hooks see what
they expect; hooks on the network itself always see ``[T, B, ...]``. ``"fold"`` needs no module in training
mode and no hook inside a `MultiStep` body. `plan` uses these orders on the devices where they were measured
faster (`DEVICES`), unless `mode` forces one.

`Stepper` steps a network one call at a time (a probe's reference network runs in lockstep with the model).
"""

from __future__ import annotations

import contextlib
import os
from contextvars import ContextVar

import torch
from torch import nn
from torch.nn.utils import parametrize

from . import stepmode
from .layers import MultiStep
from .neuron_pool import sequential_plan, sequential_step
from .neurons import IF

STEP_AWARE = "__qnoise_step_aware__"
DEVICES = frozenset({"cpu"})  # "auto" plans here (benchmarks/bench_forward.py); elsewhere layer-major
FOLD_BYTES = 8 << 20  # a layer's activations for the whole batch and all T up to this: folding T is cheaper
MODES = ("auto", "step", "fold", "layer")
_MODE: ContextVar[str | None] = ContextVar("qnoise_step_mode", default=None)


def step_aware(hook):
    """Mark a forward hook (or pre-hook) as one that handles one step ``[B, ...]`` per call; returns it."""
    setattr(hook, STEP_AWARE, True)
    return hook


@contextlib.contextmanager
def mode(kind: str):
    """Force the order inside the block: ``"step"`` or ``"fold"`` (wherever the model allows it, on any device),
    ``"layer"``, or ``"auto"`` (`plan`). ``QNOISE_STEP_MAJOR`` in the environment sets the default (``0``:
    ``"layer"``, ``1``: ``"step"``, or a mode's name)."""
    if kind not in MODES:
        raise ValueError(f"mode={kind!r} is not one of {MODES}")
    token = _MODE.set(kind)
    try:
        yield
    finally:
        _MODE.reset(token)


def current_mode() -> str:
    kind = _MODE.get()
    if kind is not None:
        return kind
    env = os.environ.get("QNOISE_STEP_MAJOR")
    if env is None or env in MODES:
        return env or "auto"
    return "layer" if env in ("0", "false", "False", "") else "step"


def _transparent(module: nn.Module) -> bool:
    """A container whose forward only composes its children's calls (no operation along time)."""
    cls = type(module)
    return (cls is nn.Sequential or cls is nn.Identity or getattr(cls, "step_transparent", False)
            or (isinstance(module, nn.Sequential) and cls.forward is nn.Sequential.forward))


def _hooks_ok(module: nn.Module) -> bool:
    if not (module._forward_hooks or module._forward_pre_hooks):
        return True
    hooks = [*module._forward_hooks.values(), *module._forward_pre_hooks.values()]
    return all(getattr(h, STEP_AWARE, False) for h in hooks)


def _check(module: nn.Module, name: str, root: bool) -> str | None:
    label = name or type(module).__name__
    if module.training and not isinstance(module, MultiStep):
        return f"{label} is in training mode"
    if not root and not _hooks_ok(module):
        return f"{label} has a forward hook that expects [T, B, ...] (mark it qnoise.stepping.step_aware)"
    if isinstance(module, MultiStep):
        if module.mode != "loop":
            return f"{label} folds T into the batch (mode='fold')"
        return _body_check(module, label, _hooks_ok)
    if isinstance(module, IF):
        cls = type(module)
        if cls.forward is not IF.forward or cls.step is not IF.step:
            return f"{label} ({cls.__name__}) has a forward of its own"
        if module.state_bits is not None and module.state_rounding == "stochastic":
            return f"{label} rounds its membrane stochastically"
        return None
    if not (root and isinstance(module, nn.Sequential)) and not _transparent(module):
        return f"{label} ({type(module).__name__}) is not known to work one step at a time"
    for child_name, child in module.named_children():
        reason = _check(child, f"{name}.{child_name}" if name else child_name, False)
        if reason:
            return reason
    return None


def _body_check(module: MultiStep, label: str, hooks_ok) -> str | None:
    """A `MultiStep` body runs in another order only if it does the same whatever the order: no module in
    training mode (a weight parametrization's mode is its own business: it transforms weights, not data) and no
    weight drawn at random at each access (stochastic rounding outside ``parametrize.cached()``)."""
    for name, sub in module.body.named_modules():
        if "parametrizations" not in name.split(".") and sub.training:
            return f"{label}.body.{name} is in training mode"
        if not hooks_ok(sub):
            return f"{label}.body.{name} has a forward hook that expects [T, B, ...]"
        if getattr(sub, "rounding", None) == "stochastic" and not parametrize._cache_enabled:
            return f"{label}.body.{name} draws its weights at random at each use"
    return None


def _global_hooks() -> bool:
    from torch.nn.modules import module as torch_module

    return bool(torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks)


def why_not(model: nn.Module) -> str | None:
    """Why ``model`` cannot run step-major now (module docstring), or None when it can."""
    if torch.is_grad_enabled():
        return "autograd is on (training runs layer-major)"
    if _global_hooks():
        return "a global forward hook is registered"
    return _check(model, "", True)


def why_not_fold(model: nn.Module) -> str | None:
    """Why ``model`` cannot run folded now, or None when it can."""
    if torch.is_grad_enabled():
        return "autograd is on (training runs layer-major)"
    if _global_hooks():
        return "a global forward hook is registered"
    for name, m in model.named_modules():
        if isinstance(m, MultiStep):
            reason = _body_check(m, name, lambda sub: not (sub._forward_hooks or sub._forward_pre_hooks))
            if reason:
                return reason
        elif m.training and "parametrizations" not in name.split("."):
            return f"{name or type(m).__name__} is in training mode"
    return None


def _small(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether every neuron layer's input, for the whole batch and all T, holds at most `FOLD_BYTES` (as last
    seen: a network not run before is not known to be small)."""
    sizes = [stepmode.SAMPLE_BYTES.get(m) for m in model.modules() if isinstance(m, IF)]
    return bool(sizes) and None not in sizes and max(sizes) * x.shape[0] * x.shape[1] <= FOLD_BYTES


def plan(model: nn.Module, x: torch.Tensor) -> str:
    """The order (``"step"``, ``"fold"`` or ``"layer"``) in which ``model`` runs ``x [T, B, ...]`` now (module
    docstring): folded when its activations are small and it allows it, else step-major when it allows it,
    else layer-major."""
    kind = current_mode()
    if kind == "layer" or x.shape[0] == 0 or torch.is_grad_enabled():
        return "layer"
    if kind == "auto" and x.device.type not in DEVICES:
        return "layer"
    if kind == "fold" or (kind == "auto" and _small(model, x)):
        if why_not_fold(model) is None:
            return "fold"
    if kind in ("auto", "step") and why_not(model) is None:
        return "step"
    return "layer"


def layer_major(kind: str, T: int):
    """The context of a ``"fold"`` or ``"layer"`` run: a folded run as the current `stepmode.Step`, or none
    (a network called from inside another network's step runs layer-major, not as that step)."""
    return stepmode.running(stepmode.Step(T=T, fold=True) if kind == "fold" else None)


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model`` on ``x [T, B, ...]``, step-major: ``out[t] = model.forward(x[t])`` with every neuron's state
    carried from step to step (hooks on ``model`` itself run around the whole call, not per step). Neuron state
    starts afresh: nothing carries over between calls."""
    T = x.shape[0]
    run = stepmode.Step(T=T)
    if isinstance(model, nn.Sequential):  # not Network's forward: its children's, with neuron+pooling fused
        plan = sequential_plan(model)

        def body(_model, xt):
            return sequential_step(plan, xt)
    else:
        body = type(model).forward
    out = None
    for t in range(T):
        run.t = t
        with stepmode.running(run):
            y = body(model, x[t])
        if out is None:
            out = y.new_empty(T, *y.shape)
        out[t] = y
    return out


class Stepper:
    """A step-major run of ``call`` (a network taking one step ``[B, ...]``) over one batch, one `step` per
    timestep; `forward` in pieces, for a caller that interleaves it with another run (a probe's reference)."""

    def __init__(self, call, T: int | None = None) -> None:
        self.call = call
        self.run = stepmode.Step(T=T)
        self.run.t = -1

    @property
    def t(self) -> int:
        """The last step computed (-1 before the first)."""
        return self.run.t

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Advance by one step on ``x [B, ...]``; returns the network's output for it."""
        self.run.t += 1
        with stepmode.running(self.run):
            return self.call(x)
