"""One worker's share of a sweep: load the model once, analyse its cells, write each cell's table at once.

Cells over T of the same static frames (an image repeated to T steps) are one run at their longest T: the
shorter cells' tables are that run's first steps (`qnoise.probe.Probe.table_of_first_steps`), equal to their
own runs bit for bit (tests/test_sweep.py), at the cost of the longest cell alone."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..probe import Execution, Setting
from ..probe.analysis import analysis
from ..probe.copying import from_portable
from ..probe.inputs import resolve_data, resolve_model
from ..table_files import write_parquet_atomic
from ..train.evaluation import data_plan
from .cells import twin_key
from .folder import cell_file, finished


def load_model(source) -> nn.Module:
    """The model a task names: ``("checkpoint", path)``, ``("portable", ...)``, ``("module", m)`` or a factory."""
    kind, value = source
    if kind == "checkpoint":
        return resolve_model(value)[0]
    if kind == "portable":
        return from_portable(value)
    if kind == "module":
        return value
    return value()  # factory


def _is_factory(dataset) -> bool:
    return callable(dataset) and not hasattr(dataset, "__getitem__") and not isinstance(dataset, (tuple, list))


def frames_plan(dataset, T: int | None, execution: Execution, model_cfg: dict) -> tuple[tuple, bool]:
    """``(load key, frames static)`` of a cell with T steps, without loading anything: cells of one load key
    read the same data; static frames show every step the same frame (`qnoise.train.evaluation.data_plan`, or
    data of one frame per sample)."""
    static, steps, bins = data_plan(model_cfg, T, execution.input_mode)
    if isinstance(dataset, str) or dataset is None:
        return ("named", bins), static
    if _is_factory(dataset):
        return ("factory", steps), static
    one_frame = isinstance(dataset, (tuple, list)) and torch.is_tensor(dataset[0]) and dataset[0].shape[1] == 1
    return ("fixed",), static or one_frame


def data_for(dataset, T: int | None, execution: Execution, model_cfg: dict) -> tuple[object, tuple, bool]:
    """``(data, load key, frames static)`` for a cell with T steps (`frames_plan`): a dataset name is loaded
    with the number of frames the model is fed (`qnoise.train.evaluation.data_plan`), a factory is called with
    T."""
    key, static = frames_plan(dataset, T, execution, model_cfg)
    if key[0] == "named":
        data = resolve_data(dataset, model_cfg, key[1], execution.split, execution.limit, execution.data_root)[0]
    elif key[0] == "factory":
        data = dataset(key[1])
    else:
        data = dataset
    return data, key, static


def shared_runs(cells: list[dict], dataset, execution: Execution, model_cfg: dict, keep_tensors: int) -> list[list]:
    """The cells in runs: cells that differ only in T and see the same static frames are one run at their
    longest T, whose first steps give the others' tables (`qnoise.probe.Probe.table_of_first_steps`, exact);
    every other cell is a run of its own. Each run lists its cells longest T first; runs keep the cells'
    order (by their first cell)."""
    runs: dict = {}
    for cell in cells:
        T = cell["timesteps"]
        key, static = frames_plan(dataset, T, execution, model_cfg) if T is not None else ((), False)
        if T is None or not static or key[0] == "factory" or keep_tensors:
            runs[("alone", cell["id"])] = [cell]
            continue
        same = (key, cell["weight_bits"], cell["rounding"], cell["state_bits"], cell["neuron"])
        runs.setdefault(same, []).append(cell)
    return [sorted(run, key=lambda c: -c["timesteps"]) for run in runs.values()]


def dataset_name(dataset) -> str | None:
    if isinstance(dataset, str):
        return dataset
    if _is_factory(dataset):
        return getattr(dataset, "__name__", None)
    return None


def run_cells(task: dict, on_cell: Callable[[str], None] | None = None) -> list[str]:
    """Run a list of cells (one worker's share) and write each cell's table as soon as it is done.

    Skips cells already finished (`qnoise.sweep.folder.finished`); cells over T of the same static frames are
    one run (`shared_runs`). Returns the ids it wrote.
    """
    if task.get("threads"):
        torch.set_num_threads(task["threads"])
    model = load_model(task["model"])
    cfg = getattr(model, "qnoise_checkpoint", {}) or {}
    opts = task["options"]
    compare, count, execution = task["values"]
    out = Path(task["out"]) if task["out"] else None
    data_cache: dict = {}
    reference_caches: dict = {}
    results = task.get("results")
    written = []
    todo = [c for c in task["cells"] if out is None or not finished(out, c["id"])]
    for run in shared_runs(todo, task["dataset"], execution, cfg, count.keep_tensors):
        longest = run[0]
        T = longest["timesteps"]
        if T not in data_cache:
            data_cache = {T: data_for(task["dataset"], T, execution, cfg)}
        data, data_key, frames_static = data_cache[T]
        shareable = not isinstance(data, torch.utils.data.DataLoader)  # a loader may shuffle
        key = twin_key(longest, opts, data_key, frames_static)
        if key not in reference_caches:
            reference_caches = {key: {}}  # cells come grouped by reference: keep only the current group's
        setting = Setting(weight_bits=longest["weight_bits"], timesteps=T, rounding=longest["rounding"],
                          state_bits=longest["state_bits"], neuron=longest["neuron"],
                          weight_method=opts["weight_method"], weight_step=opts.get("weight_step"),
                          ties=opts.get("ties", "half-even"))
        with analysis(model, data, setting=setting, compare=compare, count=count,
                      execution=dataclasses.replace(execution, progress=False),
                      model_name=task["model_name"], dataset_name=task["dataset_name"],
                      reference_cache=reference_caches[key] if shareable else None,
                      reference_cache_bytes=int(opts["reference_cache_mb"]) << 20) as table:
            for cell in run:
                df = table(None if cell is longest else cell["timesteps"])
                if out is not None:
                    write_parquet_atomic(df, cell_file(out, cell["id"]),
                                         {"cell": dict(cell), "options": opts, "model": task["identity"]["model"],
                                          "data": task["identity"]["data"], "probe": df.attrs.get("qnoise", {})})
                if results is not None:
                    results[cell["id"]] = df
                written.append(cell["id"])
                if on_cell is not None:
                    on_cell(cell["id"])
    return written
