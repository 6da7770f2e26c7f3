"""Interleaved timing for ratio benchmarks: each candidate runs once per round (in an order that rotates from
round to round, so none always runs first), rounds repeat, and the median per candidate is kept, so slow phases
of a noisy machine hit every candidate alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_times(candidates: dict[str, Callable[[], object]], rounds: int = 15,
                      warmup: int = 2) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of each candidate in each of ``rounds`` interleaved rounds. CPU time is that of all
    threads of this process (``time.process_time``): other processes sharing the cores disturb it less than
    wall time."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in candidates}
    names = list(candidates)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # each round starts with the next one
            w, c = time.perf_counter(), time.process_time()
            candidates[name]()
            times[name].append((time.perf_counter() - w, time.process_time() - c))
    return times


def paired_ratio(times: dict[str, list[tuple[float, float]]], num: str, den: str) -> tuple[float, float]:
    """Median over rounds of ``num / den`` measured in the same round, (wall, CPU): the load of other processes
    drifts between rounds more than within one."""
    pairs = list(zip(times[num], times[den], strict=True))
    return (statistics.median(a[0] / b[0] for a, b in pairs), statistics.median(a[1] / b[1] for a, b in pairs))


def median_ms(times: list[tuple[float, float]]) -> tuple[float, float]:
    """Median wall and CPU milliseconds of one candidate's rounds."""
    return statistics.median(w for w, _ in times) * 1e3, statistics.median(c for _, c in times) * 1e3
