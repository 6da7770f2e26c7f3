"""Run the probe's per-step functions eagerly or fused by ``torch.compile`` (one loop per step and mode
instead of ~40 passes over the layer).

``compile="auto"`` uses the compiled kernel for a layer when that kernel variant (mode, neuron flags, dtype,
device) is already compiled in this process, or when the layer is big enough to repay a compilation
(``T * B * N >= COMPILE_MIN_ELEMENTS``; compiling takes a few seconds, cached on disk by PyTorch for later
processes). Small models stay eager and start instantly. If compilation fails (no C++ compiler, no
Triton, ...) the probe warns once and stays eager. ``QNOISE_COMPILE=0`` / ``1`` in the environment
overrides ``"auto"``. Both paths run the same Python function, so they compute the same sums (up to the
order of float additions; tests/test_probe.py compares them).
"""

from __future__ import annotations

import os
import warnings

import torch

from .functional import isolated_step, propagated_step

STEPS = {"propagated": propagated_step, "isolated": isolated_step}

COMPILE_MIN_ELEMENTS = 1 << 22
_compiled: dict = {}
_ready: set = set()  # variants that ran compiled at least once
_failed = False


def _compiled_step(kind: str):
    if kind not in _compiled:
        _compiled[kind] = torch.compile(STEPS[kind], dynamic=True)
    return _compiled[kind]


def want_compile(compile: bool | str, elements: int, variant: tuple = ()) -> bool:
    """Whether to use the compiled kernel for a layer with ``elements = T * B * N`` values."""
    if _failed or compile is False:
        return False
    if compile is True:
        return True
    if compile != "auto":
        raise ValueError(f"compile={compile!r}: expected True, False or 'auto'")
    env = os.environ.get("QNOISE_COMPILE")
    if env is not None:
        return env not in ("0", "false", "False", "")
    return variant in _ready or elements >= COMPILE_MIN_ELEMENTS


def run_step(kind: str, use_compiled: bool, variant: tuple, *args, **kwargs):
    """``STEPS[kind](*args, **kwargs)``, through the compiled kernel when asked and it works."""
    global _failed
    if use_compiled and not _failed:
        try:
            out = _compiled_step(kind)(*args, **kwargs)
            _ready.add(variant)
            return out
        except Exception as err:  # compilation problems vary by platform; eager always works
            _failed = True
            warnings.warn(f"qnoise probe: torch.compile failed ({type(err).__name__}: {str(err)[:200]}); "
                          f"using the eager kernel", RuntimeWarning, stacklevel=2)
    return STEPS[kind](*args, **kwargs)
