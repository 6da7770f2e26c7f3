"""Interleaved timing for ratio benchmarks: each candidate runs once per round, rounds repeat, and the
median per candidate is kept, so slow phases of a noisy machine hit every candidate alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(candidates: dict[str, Callable[[], object]], rounds: int = 15,
                        warmup: int = 2) -> dict[str, float]:
    """Median wall time in seconds of each candidate over ``rounds`` interleaved rounds."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}
