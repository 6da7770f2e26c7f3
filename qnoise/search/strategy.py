"""How a search walks its space: exhaustively, or guided by the probe (the default).

Guided, in the manner of AIMET's automatic mixed precision, with the probe's noise measures in place of a
single accuracy number:

1. *Sensitivity.* Every axis's lower choices are evaluated one at a time, all other axes at their highest
   precision, against the same SNN at full precision: how often the prediction then differs from the float
   SNN's (``disagreement``) and how much noise the neuron layers carry (``noise``, their mean NMSE). The float
   SNN runs at the candidate's own T, so a lower T is scored by the accuracy it loses instead (against the
   same SNN at the higher T, it would differ from nothing).
2. *Greedy path.* From the highest precision, take the one-step lowering whose sensitivity increase costs
   least per unit of cost saved (memory and energy, each relative to the top configuration's), evaluate it,
   and repeat until no axis can go lower: one evaluated configuration per step, from precise to cheap.
3. *Refinement* (Pareto local search). Every configuration one step away from a point of the accuracy/memory or
   accuracy/energy front is evaluated; repeat until the fronts stop changing or the evaluation budget is spent.

Every point a search reports was evaluated, none estimated; a configuration is never evaluated twice
(`qnoise.search.store`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from ..insights import pareto_front
from .space import Candidate, SearchSpace

NOISE_WEIGHT = 1e-3  # the noise only breaks ties between moves that change equally many predictions

Evaluate = Callable[[list[Candidate], bool], None]  # evaluates (and stores) the candidates not yet evaluated


def fronts(records: list[dict]) -> list[str]:
    """Keys of the configurations on the accuracy/memory or the accuracy/energy front."""
    if not records:
        return []
    pts = pd.DataFrame([{"key": r["key"], "accuracy": r["accuracy"], "memory_bits": r["memory_bits"],
                         "energy_pj": r["energy_pj"]} for r in records])
    keys = set(pareto_front(pts, "memory_bits")["key"]) | set(pareto_front(pts, "energy_pj")["key"])
    return sorted(keys)


def exhaustive(space: SearchSpace, evaluate: Evaluate, store, max_evaluations: int) -> None:
    """Evaluate every configuration of the space (refused above ``max_evaluations``)."""
    if space.size > max_evaluations:
        raise ValueError(f"the space holds {space.size} configurations, more than max_evaluations="
                         f"{max_evaluations}; use strategy='guided' or a smaller space")
    evaluate(space.enumerate(), False)


def _move_score(store, top: Candidate, base: dict, axis: str, name, choices, i: int) -> float:
    """Sensitivity gained per unit of cost saved by lowering ``axis`` from ``choices[i]`` to ``choices[i + 1]``,
    from the one-axis evaluations of phase 1."""
    def rec(v):
        return store.get(top if v == choices[0] else top.replace(axis, name, v))

    hi, lo = rec(choices[i]), rec(choices[i + 1])
    if axis == "timesteps":  # its float-SNN reference ran at the lowered T too: no disagreement, no noise to read
        sens = hi["accuracy"] - lo["accuracy"]
    else:
        sens = (lo["disagreement"] - hi["disagreement"]) + NOISE_WEIGHT * (lo["noise"] - hi["noise"])
    saved = ((hi["memory_bits"] - lo["memory_bits"]) / max(base["memory_bits"], 1.0)
             + (hi["energy_pj"] - lo["energy_pj"]) / max(base["energy_pj"], 1e-12))
    if saved <= 0:
        return math.inf  # saves nothing: last
    return max(sens, 0.0) / saved


def guided(space: SearchSpace, evaluate: Evaluate, store, max_evaluations: int) -> list[str]:
    """The guided search (module docstring); returns the greedy path's keys, precise to cheap."""
    top = space.top()
    axes = space.axes()
    singles = [top] + [top.replace(axis, name, v) for axis, name, choices in axes for v in choices[1:]]
    evaluate(singles, True)
    base = store.get(top)
    current, path = top, [top.key]
    position = {(axis, name): 0 for axis, name, _ in axes}
    while True:
        options = []
        for axis, name, choices in axes:
            i = position[(axis, name)]
            if i + 1 < len(choices):
                options.append((_move_score(store, top, base, axis, name, choices, i), axis, name, choices))
        if not options:
            break
        _, axis, name, choices = min(options, key=lambda o: o[0])
        position[(axis, name)] += 1
        current = current.replace(axis, name, choices[position[(axis, name)]])
        evaluate([current], False)
        path.append(current.key)
    while len(store.records) < max_evaluations:
        front = [Candidate.from_dict(store.records[k]["candidate"]) for k in fronts(list(store.records.values()))]
        new = list(dict.fromkeys(n.key for c in front for n in space.neighbours(c) if n not in store))
        if not new:
            break
        todo = {c.key: c for f in front for c in space.neighbours(f)}
        evaluate([todo[k] for k in new[:max_evaluations - len(store.records)]], False)
    return path
