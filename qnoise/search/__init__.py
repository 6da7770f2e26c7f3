"""Mixed precision under a budget: per-layer weight bits, per-layer membrane bits, threshold bits and T,
chosen by a search whose every point is evaluated (`qnoise.search.strategy`).

    result = qnoise.search("ckpt/", "digits", budget={"memory_kib": 64}, limit=256)
    result.front_memory            # accuracy vs memory, each point a full per-layer configuration
    result.layers()                # the chosen configuration per layer
    result.save_checkpoint(model, "chosen/")   # evaluate, analyze and the dashboard open it

Costs are the probe's (`qnoise.probe.costs`: memory at real widths, energy at the operands' bit widths), so a
budget means what the memory and energy columns mean. Accuracy comes with its sample count and a Wilson
interval; the choice is called within tolerance only when the interval supports it (`qnoise.search.result`).
Evaluations are cached (a configuration is never evaluated twice), kept in a run folder when ``out`` is given
(resumable, locked like a sweep's), and run in local processes or on Ray with ``workers``.
"""

from __future__ import annotations

import contextlib
import sys
import types
from pathlib import Path

from tqdm.auto import tqdm

from ..probe.copying import to_portable
from ..probe.inputs import resolve_data, resolve_model
from ..sweep.executors import run_processes, run_ray
from ..sweep.folder import data_identity, locked, model_identity
from ..sweep.worker import load_model
from ..train.evaluation import data_plan
from .evaluate import Evaluator
from .result import SearchResult, choose, layer_table, records_table
from .space import Candidate, SearchSpace
from .store import Store
from .strategy import exhaustive, guided

STRATEGIES = ("guided", "exhaustive")
OPTION_KEYS = ("batch_size", "limit", "split", "input_mode", "device", "seed", "energy")


def evaluate_task(task: dict) -> list[dict]:
    """A worker's share: evaluate its candidates (`Evaluator`) on the model and data the task names."""
    model = load_model(task["model"])
    ev = Evaluator(model, task["data"], task["options"], task["method"])
    return ev.many([Candidate.from_dict(c) for c in task["candidates"]], task["sensitivity"])


def _default_timesteps(model, ckpt: dict, data) -> int:
    if ckpt.get("timesteps"):
        return int(ckpt["timesteps"])
    if isinstance(data, (tuple, list)) and hasattr(data[0], "shape"):
        return int(data[0].shape[1])
    raise ValueError("give the timesteps to search (space=SearchSpace(..., timesteps=...) or timesteps=[...])")


def search(model, data=None, budget: dict | None = None, space: SearchSpace | dict | None = None,
           tolerance: float = 0.01, *, strategy: str = "guided", out: str | Path | None = None,
           max_evaluations: int = 400, workers: int = 1, executor: str = "local", method: str = "uniform",
           progress: bool | None = None, **options) -> SearchResult:
    """Search per-layer precision for the most accurate SNN within a budget (module docstring).

    Args:
        model: an SNN or a checkpoint folder.
        data: as `qnoise.analyze` takes it (a name is loaded with the checkpoint's options, ``split``, ``limit``).
        budget: ``{"memory_kib": ..., "energy_nj": ...}`` (either, both, or None: the fronts only).
        space: a `SearchSpace`, or keyword arguments of `SearchSpace.for_model` (``weight_bits``, ``state_bits``,
            ``timesteps``, ``threshold_bits``, ``rounding``, ``fixed``); None: weights {float, 8, 4, 2} and
            membranes {float, 8, 6} per layer at the model's T.
        tolerance: accuracy (a fraction: 0.01 is one point) the choice may lose against the highest precision.
        strategy: ``"guided"`` (sensitivity, greedy path, Pareto refinement) or ``"exhaustive"``.
        out: run folder (resumable); None keeps the evaluations in memory.
        max_evaluations: the most configurations to evaluate (the exhaustive search refuses a larger space).
        workers, executor: evaluate batches in ``workers`` local processes (``"local"``) or Ray tasks (``"ray"``).
        method: the weight quantizer of every candidate (``"uniform"``; 1 bit is binary).
        **options: `qnoise.analyze`'s ``batch_size``, ``limit``, ``split``, ``input_mode``, ``device``, ``seed``,
            ``energy``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is not one of {STRATEGIES}")
    bad = sorted(set(options) - set(OPTION_KEYS))
    if bad:
        raise TypeError(f"unknown option(s) {bad}; known: {list(OPTION_KEYS)}")
    if not (isinstance(tolerance, (int, float)) and 0 <= tolerance <= 1):
        raise ValueError(f"tolerance is a fraction of accuracy in [0, 1] (0.01 = one point), got {tolerance!r}")
    budget = {k: v for k, v in (budget or {}).items() if v is not None}
    unknown = sorted(set(budget) - {"memory_kib", "energy_nj"})
    if unknown or any(not v > 0 for v in budget.values()):
        raise ValueError(f"budget takes memory_kib and energy_nj, both > 0; got {budget}")
    source_path = model if isinstance(model, (str, Path)) else None
    data_arg = data
    model, _, ckpt = resolve_model(model)
    static, steps, bins = data_plan(ckpt, None, options.get("input_mode"))
    data, _ = resolve_data(data, ckpt, bins, options.get("split", "test"), options.get("limit"))
    if not isinstance(space, SearchSpace):
        kw = dict(space or {})
        kw.setdefault("timesteps", _default_timesteps(model, ckpt, data))
        space = SearchSpace.for_model(model, **kw)
    space.check(model)
    identity = {"model": model_identity(source_path or model),
                "data": data_identity(data_arg if data_arg is not None else (ckpt.get("dataset") or {}).get("name"),
                                      options.get("split", "test"), options.get("limit")),
                "space": space.as_dict(), "method": method,
                "options": {k: (v.as_dict() if hasattr(v, "as_dict") else v) for k, v in options.items()
                            if k not in ("device", "batch_size")}}
    folder = Path(out) if out is not None else None
    with locked(folder) if folder is not None else contextlib.nullcontext():
        store = Store(folder, identity)
        evaluator = Evaluator(model, data, options, method)
        bar = tqdm(total=0, unit="config", desc="search", disable=None if progress is None else not progress)

        def evaluate(candidates: list[Candidate], sensitivity: bool) -> None:
            todo = [c for c in dict.fromkeys(candidates)
                    if c not in store or (sensitivity and "noise" not in store.get(c))]
            bar.total += len(todo)
            bar.refresh()
            if workers <= 1 or len(todo) <= 1:
                def done(record: dict) -> None:  # stored as soon as it is evaluated: an interrupted search resumes
                    store.add(record)
                    bar.update(1)

                evaluator.many(todo, sensitivity, on_record=done)
                return
            portable = ("checkpoint", str(source_path)) if source_path is not None else ("portable", to_portable(model))
            share = [todo[i::workers] for i in range(workers)]
            tasks = [{"model": portable, "data": data, "options": options, "method": method, "sensitivity": sensitivity,
                      "candidates": [c.as_dict() for c in part]} for part in share if part]

            def collect(records: list[dict]) -> None:
                for r in records:
                    store.add(r)

            (run_processes if executor == "local" else run_ray)(tasks, workers, bar, evaluate_task, collect)

        try:
            path = None
            if strategy == "exhaustive":
                exhaustive(space, evaluate, store, max_evaluations)
            else:
                path = guided(space, evaluate, store, max_evaluations)
        finally:
            bar.close()
        table = records_table(list(store.records.values()), path)
        reference = table[table["key"] == space.top().key].iloc[0]
        chosen, message = choose(table, reference, budget, tolerance)
        return SearchResult(table, dict(store.records), reference, budget, tolerance, chosen, message, store.loaded,
                            {"strategy": strategy, "evaluations": len(store.records), "space": space.as_dict()})


# ``qnoise.search`` is both this package and, through qnoise's lazy exports, the function `search` (as
# ``qnoise.sweep`` is): whichever the name resolves to, ``qnoise.search(...)`` runs a search.
class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["Candidate", "Evaluator", "SearchResult", "SearchSpace", "layer_table", "search"]
