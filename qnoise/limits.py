"""Bounds on what one request may ask for, checked up front with a message instead of an allocation that
takes minutes or all the memory (timesteps, batch size, model size, tensors held in memory).

    MAX_TIMESTEPS      65535: the largest T a conversion produces (16-bit activations, T = 2^16 - 1)
    MAX_BATCH_SIZE     65536 samples per batch
    MAX_LAYERS         256 layers (entries of ``hidden`` / ``channels``, residual blocks) per model
    MAX_INPUT_ELEMENTS 2^24 values per sample and timestep (an input shape's product)
    memory_budget()    bytes one tensor, a model's parameters or an in-memory split may take:
                       ``$QNOISE_MAX_GIB`` GiB (default 4)

Pure functions, no torch: every layer (io, models, data, train, commands) can use them.
"""

from __future__ import annotations

import math
import os

MAX_TIMESTEPS = 2**16 - 1
MAX_BATCH_SIZE = 2**16
MAX_LAYERS = 256
MAX_INPUT_ELEMENTS = 2**24
MEMORY_ENV = "QNOISE_MAX_GIB"
DEFAULT_MEMORY_GIB = 4.0


def memory_budget() -> int:
    """Bytes one tensor (or a model's parameters) may take: ``$QNOISE_MAX_GIB`` GiB, default 4."""
    text = os.environ.get(MEMORY_ENV)
    if not text:
        return int(DEFAULT_MEMORY_GIB * 2**30)
    try:
        gib = float(text)
    except ValueError:
        gib = float("nan")
    if not (math.isfinite(gib) and gib > 0):
        raise ValueError(f"${MEMORY_ENV}={text!r} is not a positive number of GiB")
    return int(gib * 2**30)


def check_int(value, name: str, low: int = 1, high: int | None = None, hint: str = "") -> int:
    """``value`` as an int in ``low..high``; else ``ValueError`` naming ``name``, the value and the range."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if not ok:
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}{hint}")
    return value


def check_timesteps(value, name: str = "timesteps") -> int:
    """A number of timesteps T in 1..`MAX_TIMESTEPS`."""
    return check_int(value, name, 1, MAX_TIMESTEPS)


def check_batch_size(value, name: str = "batch_size") -> int:
    """A batch size in 1..`MAX_BATCH_SIZE`."""
    return check_int(value, name, 1, MAX_BATCH_SIZE)


def gib(nbytes: float) -> str:
    """``nbytes`` in GiB, or in MiB below 1 GiB."""
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def check_bytes(nbytes: float, what: str, hint: str = "") -> None:
    """Refuse ``what`` when it needs more than `memory_budget` bytes; the message says how much and how to
    lower it (``hint``) or raise the budget."""
    budget = memory_budget()
    if nbytes > budget:
        raise ValueError(f"{what} needs {gib(nbytes)}, more than the {gib(budget)} allowed"
                         f"{'; ' + hint if hint else ''} (or raise ${MEMORY_ENV})")
