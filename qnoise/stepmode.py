"""Which step-major run is in progress in this thread (DESIGN.md, "Tensor layout").

`qnoise.stepping` runs a network one timestep at a time: it sets the current `Step` here while it calls the
network on ``x[t] [B, ...]``, and the two module kinds that know about time read it: `qnoise.layers.MultiStep`
applies its body to the one step it is given, a `qnoise.neurons.IF` advances its state by one step (kept in
the `Step`'s ``states``). Outside a run (``current()`` is None), or in a folded run, both take ``[T, B, ...]``.
A context variable, so threads and nested runs (a reference network stepped inside a probe's hook) keep their
own.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class Step:
    """One step-major run over a batch: ``t`` the step being computed (0-based), ``T`` the number of steps
    (None when the caller steps without knowing it), ``states`` each neuron's state, keyed by the module.

    ``fold=True`` marks a folded layer-major run instead: modules take ``[T, B, ...]`` and each `MultiStep`
    applies its body once to ``[T*B, ...]`` (`qnoise.stepping`, for networks whose activations are small).

    ``observers`` lets a step-aware hook (a probe's pre-hook) take over a neuron's step for this run:
    ``observers[neuron](neuron, x, state)`` returns the neuron's output for the step ``x`` (having advanced
    ``state`` by the neuron's own rule, and done its own work in the same pass), or None to let the neuron
    step as usual."""

    t: int = 0
    T: int | None = None
    states: dict = field(default_factory=dict)
    fold: bool = False
    observers: dict = field(default_factory=dict)


_CURRENT: ContextVar[Step | None] = ContextVar("qnoise_step", default=None)
# neuron module -> bytes of one sample's input at one step, as last seen (how `qnoise.stepping.plan` sizes a run)
SAMPLE_BYTES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def current() -> Step | None:
    """The run whose step is being computed in this context, or None (modules then take ``[T, B, ...]``)."""
    return _CURRENT.get()


@contextmanager
def running(step: Step | None):
    """Make ``step`` the current run inside the block (None: no run, e.g. for a hook that calls a neuron's
    multi-step forward on tensors of its own)."""
    token = _CURRENT.set(step)
    try:
        yield step
    finally:
        _CURRENT.reset(token)


def paused():
    """No step-major run inside the block: modules take ``[T, B, ...]`` (what a step-aware hook uses to run a
    neuron over whole tensors of its own)."""
    return running(None)
