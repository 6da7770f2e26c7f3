"""One worker's share of a sweep: load the model once, analyse its cells, write each cell's table at once."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..probe import Execution, Setting, analyze
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


def data_for(dataset, T: int | None, execution: Execution, model_cfg: dict) -> tuple[object, tuple, bool]:
    """``(data, load key, frames static)`` for a cell with T steps: a dataset name is loaded with the
    number of frames the model is fed (`qnoise.train.evaluation.data_plan`), a factory is called with T."""
    static, steps, bins = data_plan(model_cfg, T, execution.input_mode)
    if isinstance(dataset, str) or dataset is None:
        data = resolve_data(dataset, model_cfg, bins, execution.split, execution.limit, execution.data_root)[0]
        return data, ("named", bins), static
    if callable(dataset) and not hasattr(dataset, "__getitem__") and not isinstance(dataset, (tuple, list)):
        return dataset(steps), ("factory", steps), static
    one_frame = isinstance(dataset, (tuple, list)) and torch.is_tensor(dataset[0]) and dataset[0].shape[1] == 1
    return dataset, ("fixed",), static or one_frame


def dataset_name(dataset) -> str | None:
    if isinstance(dataset, str):
        return dataset
    if callable(dataset) and not hasattr(dataset, "__getitem__") and not isinstance(dataset, (tuple, list)):
        return getattr(dataset, "__name__", None)
    return None


def run_cells(task: dict, on_cell: Callable[[str], None] | None = None) -> list[str]:
    """Run a list of cells (one worker's share) and write each cell's table as soon as it is done.

    Skips cells already finished (`qnoise.sweep.folder.finished`). Returns the ids it wrote.
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
    for cell in task["cells"]:
        if out is not None and finished(out, cell["id"]):
            continue
        T = cell["timesteps"]
        if T not in data_cache:
            data_cache = {T: data_for(task["dataset"], T, execution, cfg)}
        data, data_key, frames_static = data_cache[T]
        shareable = not isinstance(data, torch.utils.data.DataLoader)  # a loader may shuffle
        key = twin_key(cell, opts, data_key, frames_static)
        if key not in reference_caches:
            reference_caches = {key: {}}  # cells come grouped by reference: keep only the current group's
        setting = Setting(weight_bits=cell["weight_bits"], timesteps=T, rounding=cell["rounding"],
                          state_bits=cell["state_bits"], neuron=cell["neuron"], weight_method=opts["weight_method"],
                          weight_step=opts.get("weight_step"), ties=opts.get("ties", "half-even"))
        df = analyze(model, data, setting=setting, compare=compare, count=count,
                     execution=dataclasses.replace(execution, progress=False),
                     model_name=task["model_name"], dataset_name=task["dataset_name"],
                     reference_cache=reference_caches[key] if shareable else None,
                     reference_cache_bytes=int(opts["reference_cache_mb"]) << 20)
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
