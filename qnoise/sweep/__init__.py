"""Sweeps: `qnoise.analyze` over a grid of weight bits x timesteps x rounding x state bits x neuron kind, as
one tidy DataFrame, stored one parquet file per grid cell in a run folder (`qnoise.sweep.folder`).

Running the same sweep again skips finished cells; a different grid over the same model, data and options
extends the folder; different options are refused. A process runs a sweep in a folder only while it holds the
folder's lock, so two sweeps started together in one folder cannot mix: the second is refused, naming the
first's process. The manifest is the one list of which cells the folder holds (`load_sweep` reads it).

Executors (`qnoise.sweep.executors`): ``"local"`` runs cells in this process (``workers=1``) or in
``workers`` spawned local processes, which exit when this process dies; ``"ray"`` submits them as Ray tasks
(``pip install qnoise[ray]``): to a local Ray started for the sweep, or to the cluster a prior
``ray.init(address=...)`` connected to, where ``out`` must be a folder every node sees. Cells whose reference
is the same (same data and T; with ``reference="ann-quantized"`` also the same weights) go to the same
worker, which computes the reference's activations once per batch (the ANN twin's, or the float SNN's
spikes) and reuses them (up to ``reference_cache_mb`` per worker). Cells that differ only in T and see the same
static frames (an image repeated to T steps) are one run at their longest T, which gives the shorter cells'
tables bit for bit (`qnoise.sweep.worker.shared_runs`); frames binned for each T are run cell by cell.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
from pathlib import Path

import pandas as pd
from torch import nn
from tqdm.auto import tqdm

from ..probe import COLUMNS, Compare, Count, Execution, Setting
from ..probe.copying import to_portable
from ..probe.options import split_options
from ..samples import sample_checkpoint
from .cells import AXES, cell_id, make_cells, twin_key
from .executors import chunks, run_processes, run_ray
from .folder import (
    CELLS_DIR,
    MANIFEST,
    FolderInUse,
    cell_file,
    data_identity,
    finished,
    locked,
    manifest_cells,
    model_identity,
    prepare,
)
from .worker import dataset_name, run_cells

EXECUTORS = ("local", "ray")


def _options(compare: Compare, count: Count, execution: Execution, weight_method: str,
             reference_cache_mb: int) -> tuple[dict, dict]:
    """``(options, identity options)``: what every worker needs, and the part that must match to extend a run
    folder (not where or how fast it runs)."""
    if isinstance(compare.reference, nn.Module):
        raise ValueError("a sweep's reference must be a name or an ANN checkpoint folder, not a module (its "
                         "cells may run in other processes)")
    options = {"compare": {**dataclasses.asdict(compare), "reference": str(compare.reference)},
               "count": {"energy": count.energy.as_dict(), "keep_tensors": count.keep_tensors},
               "execution": {k: v for k, v in dataclasses.asdict(execution).items() if k != "progress"},
               "weight_method": weight_method, "reference_cache_mb": int(reference_cache_mb)}
    local = ("device", "compile", "batch_size", "data_root")
    same = {**{k: v for k, v in options.items() if k not in ("execution", "reference_cache_mb")},
            "execution": {k: v for k, v in options["execution"].items() if k not in local}}
    return options, same


def _source(checkpoint) -> tuple[tuple, str]:
    """How workers get the model, and the ``model`` column."""
    if isinstance(checkpoint, (str, Path)):
        return ("checkpoint", str(checkpoint)), Path(checkpoint).resolve().name
    if isinstance(checkpoint, nn.Module):
        arch = (getattr(checkpoint, "qnoise_config", None) or {}).get("arch")
        return ("module", checkpoint), arch or type(checkpoint).__name__
    return ("factory", checkpoint), getattr(checkpoint, "__name__", "model")


def sweep(checkpoint=None, dataset=None, weight_bits=None, timesteps=None, rounding="nearest", state_bits=None,
          neuron=None, out: str | Path | None = None, executor: str = "local", workers: int | None = None, *,
          compare: Compare | None = None, count: Count | None = None, execution: Execution | None = None,
          weight_method: str = "uniform", reference_cache_mb: int = 1024, weight_step: float | None = None,
          ties: str = "half-even", **options):
    """Analyse every cell of a grid and return the concatenated table (`qnoise.probe.COLUMNS`).

    Args:
        checkpoint: a checkpoint directory (`qnoise.io.load_checkpoint`), an ``nn.Module`` or a picklable
            zero-argument factory returning one; None: the bundled sample model.
        dataset: a dataset name (loaded per T with `qnoise.data.load_dataset`, ``split``, ``limit``), data
            as `qnoise.probe.analyze` takes it (static frames repeat to each T), or a picklable function
            ``T -> data``; None: the checkpoint's dataset.
        weight_bits, timesteps, rounding, state_bits, neuron: the grid axes (a value or a list; None keeps
            the model's own setting). weight_bits 32 is float, 1 binary; state_bits 32 a float membrane;
            neuron ``"if"`` or ``"signed"``. ``weight_method`` applies to every cell.
        out: run folder (module docstring); None keeps everything in memory (no resume).
        executor, workers: ``"local"`` (``workers=1``: this process; default: one process per core, at
            most one per cell; this process when ``out`` is None) or ``"ray"``.
        compare, count, execution: as `qnoise.probe.analyze` (`qnoise.probe.options`), or their fields by name
            (``reference="snn", limit=256``); a reference must be a name or an ANN checkpoint folder.
        reference_cache_mb: per-worker memory for reference activations shared between cells.
        weight_step, ties: as `qnoise.probe.options.Setting`, for every cell (a hardware's weight grid).

    Returns:
        One DataFrame with the rows of every cell of this grid (finished earlier or now).

    Raises:
        FolderInUse: another process is running a sweep in ``out``.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r} is not one of {EXECUTORS}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be an int >= 1 (or None: one per core), got {workers!r}")
    checkpoint = sample_checkpoint() if checkpoint is None else checkpoint
    cells = make_cells(weight_bits, timesteps, rounding, state_bits, neuron)
    _, compare, count, execution = split_options({"compare": compare, "count": count, "execution": execution},
                                                 **options)
    Setting(weight_method=weight_method, ties=ties)  # checks the method
    options, same = _options(compare, count, execution, weight_method, reference_cache_mb)
    if weight_step is not None or ties != "half-even":  # a hardware's grid (issue 11); absent: as before
        for cell in cells:
            Setting(weight_bits=cell["weight_bits"], weight_method=weight_method, weight_step=weight_step, ties=ties)
        # weight_bits 32 cells stay float (the step applies to the quantized ones)
        options.update(weight_step=weight_step, ties=ties)
        same.update(weight_step=weight_step, ties=ties)
    identity = {"model": model_identity(checkpoint), "data": data_identity(dataset, execution.split, execution.limit),
                "options": same}
    if out is None:
        return _run(cells, None, checkpoint, dataset, options, identity, (compare, count, execution), executor,
                    workers)
    with locked(Path(out)):
        fresh = not (Path(out) / MANIFEST).exists()
        prepare(Path(out), identity, cells)
        try:
            return _run(cells, Path(out), checkpoint, dataset, options, identity, (compare, count, execution),
                        executor, workers)
        except BaseException:
            if fresh and not any((Path(out) / CELLS_DIR).glob("*.parquet")):
                (Path(out) / MANIFEST).unlink(missing_ok=True)  # nothing done: the corrected call starts afresh
            raise


def _run(cells, out_dir, checkpoint, dataset, options, identity, values, executor, workers) -> pd.DataFrame:
    compare, count, execution = values
    todo = [c for c in cells if out_dir is None or not finished(out_dir, c["id"])]
    source, model_name = _source(checkpoint)
    results: dict = {}
    base = {"model": source, "dataset": dataset, "options": options, "out": str(out_dir) if out_dir else None,
            "model_name": model_name, "dataset_name": dataset_name(dataset), "identity": identity,
            "values": (compare, count, dataclasses.replace(execution, progress=False))}
    cpus = os.cpu_count() or 1
    if workers is None:
        workers = 1 if out_dir is None or len(todo) <= 1 else max(1, min(cpus, len(todo)))
    if out_dir is None and (workers > 1 or executor == "ray"):
        raise ValueError("parallel sweeps write their cells to files: give out=DIR")
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), unit="cell", desc="sweep",
               disable=None if execution.progress is None else not execution.progress)
    try:
        if todo and executor == "local" and workers == 1:
            ordered = [c for chunk in chunks(todo, options, 1) for c in chunk]
            run_cells({**base, "cells": ordered, "results": results}, on_cell=lambda _: bar.update(1))
        elif todo:
            if source[0] == "module":
                base["model"] = ("portable", to_portable(checkpoint))
            threads = max(1, cpus // workers)
            tasks = [{**base, "cells": chunk, "threads": threads} for chunk in chunks(todo, options, 2 * workers)]
            (run_processes if executor == "local" else run_ray)(tasks, workers, bar)
    finally:
        bar.close()
    frames = [results[c["id"]] if c["id"] in results else pd.read_parquet(cell_file(out_dir, c["id"]))
              for c in cells]
    if not frames:
        raise ValueError("the sweep produced no cell")
    return pd.concat(frames, ignore_index=True)


def load_sweep(out: str | Path) -> pd.DataFrame:
    """The table of every finished cell a run folder's manifest lists (or of a single parquet file, or of a
    folder of parquet tables without a sweep manifest)."""
    out = Path(out)
    if out.is_file():
        return _results_table(out)
    if not out.is_dir():
        raise FileNotFoundError(f"{out} does not exist")
    try:
        listed = manifest_cells(out)
        files = [out / c["file"] for c in listed if finished(out, c["id"])]
    except (FileNotFoundError, ValueError, KeyError):  # not a qnoise sweep folder: its tables as they are
        folder = out / CELLS_DIR if (out / CELLS_DIR).is_dir() else out
        files = sorted(folder.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{out} holds no finished cell (no {CELLS_DIR}/*.parquet or *.parquet)")
    return pd.concat([_results_table(f) for f in files], ignore_index=True)


def _results_table(path: Path) -> pd.DataFrame:
    """One parquet file of qnoise's results (`qnoise.probe.COLUMNS`); any other file is refused by name."""
    try:
        df = pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - pyarrow's errors for a file that is not parquet vary
        raise ValueError(f"{path} is not a readable parquet file: {err}") from err
    missing = [c for c in ("layer", "t", "metric", "value") if c not in df.columns]
    if missing:
        raise ValueError(f"{path} is not a qnoise results table: it has no {', '.join(missing)} column "
                         f"(qnoise tables have {', '.join(COLUMNS)})")
    return df


# ``qnoise.sweep`` is both this package and, through qnoise's lazy exports, the function `sweep`: whichever
# the name resolves to, ``qnoise.sweep(...)`` runs a sweep and ``qnoise.sweep.load_results`` reads one.
load_results = load_sweep
sweep.load_results = load_results
sweep.load_sweep = load_sweep


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["AXES", "CELLS_DIR", "EXECUTORS", "MANIFEST", "FolderInUse", "cell_id", "load_results", "load_sweep",
           "make_cells", "run_cells", "sweep", "twin_key"]
