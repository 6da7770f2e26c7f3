"""Keep freed memory in the process so that large tensors are reused instead of page-faulted in anew (Linux).

glibc's malloc serves each allocation above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and
returns it with ``munmap`` when freed, so every new tensor that large is first touched one 4 KiB page fault at
a time. BPTT over ``[T, B, ...]`` tensors makes several such tensors per layer and step (the reference CNN's
first layer: 75 MB each at T=8, B=64), and on the 2-core machine this project measures on a first touch
costs about 0.45 ms per MB, which made a training step 1.7x slower than it needs to be (benchmarks/
bench_train.py, docs/methods.md). Raising the mmap threshold (and the heap trim threshold with it) keeps
freed blocks in the heap, where the next step's tensors reuse them; what the process holds at its peak is
unchanged, it is only not handed back to the system between steps.

Inference pays the same: a step-major SNN forward makes a fresh ``[B, ...]`` tensor per layer and step, and the
reference ResNet's forward (T=8, B=64, 2 threads) took 94 ms with glibc's defaults against 50 ms with the setting
(the CNN 55 against 43 ms). The setting is process-wide (``mallopt``): `qnoise.train.train`, layer-wise
fine-tuning, `qnoise.Probe` (every analysis, sweep cell and search evaluation), `evaluate_model`,
`qnoise.accuracy.predictions` and the ``qnoise`` command apply it. Intel's PyTorch CPU tuning guide gets the
same effect by preloading jemalloc or tcmalloc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30  # bytes: allocations up to 1 GiB come from the heap and are reused

_applied: bool | None = None


def recycle_large_allocations() -> bool:
    """Apply the setting once per process; True when it is in effect (glibc), False elsewhere (a no-op)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _applied = bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                                            THRESHOLD))
        except (OSError, AttributeError):
            _applied = False
    return _applied
