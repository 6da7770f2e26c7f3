"""Sweeps: `qnoise.analyze` over a grid of weight bits x timesteps x rounding x state bits x neuron kind,
as one tidy DataFrame, stored one parquet file per grid cell in a run directory.

Run directory::

    manifest.json                  what is swept (model, data, options) and every cell with its file
    cells/<cell id>.parquet        one cell's table (`qnoise.probe.COLUMNS`), written atomically
    cells/<cell id>.parquet.json   its JSON sidecar (cell, options, package versions)

A cell is finished exactly when its parquet file exists: files are written to a temporary name and moved
into place (``os.replace``), so a sweep killed at any moment loses at most the cells in flight (one per
worker) and never leaves a half-written table. Running the same sweep again skips finished cells; a
different grid over the same model, data and options extends the directory; different options are refused.

Executors: ``"local"`` runs cells in this process (``workers=1``) or in ``workers`` local processes
(``concurrent.futures.ProcessPoolExecutor``, spawn); ``"ray"`` submits them as Ray tasks (``pip install
qnoise[ray]``): to a local Ray started for the sweep, or to the cluster a prior ``ray.init(address=...)``
connected to, where ``out`` must be a folder every node sees. Cells whose ANN twin is the same (same data
and T; with ``reference="quantized"`` also the same weights) go to the same worker, which computes the
reference's activations once per batch (the ANN twin's, or the float SNN's spikes) and reuses them (up to
``reference_cache_mb`` per worker).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import multiprocessing as mp
import os
import sys
import time
import types
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .io import atomic_write_json, read_json, write_parquet_atomic
from .probe import Compare, Count, Execution, Setting, analyze
from .probe.copying import from_portable, to_portable
from .probe.inputs import resolve_data, resolve_model
from .probe.options import split_options
from .samples import sample_checkpoint
from .train.evaluation import data_plan

MANIFEST = "manifest.json"
CELLS_DIR = "cells"
FORMAT = "qnoise-sweep"
VERSION = 1
EXECUTORS = ("local", "ray")
AXES = ("weight_bits", "timesteps", "rounding", "state_bits", "neuron")


# ------------------------------------------------------------------------------------------------ cells

def _as_list(v) -> list:
    if v is None:
        return [None]
    if isinstance(v, (str, int)):
        return [v]
    out = list(v)
    return out or [None]


def cell_id(cell: dict) -> str:
    """File-safe, readable id: ``w4-T8-nearest-s32-if`` (``model`` where the model's own setting is kept)."""
    def f(v):
        return "model" if v is None else str(v)
    return (f"w{f(cell['weight_bits'])}-T{f(cell['timesteps'])}-{f(cell['rounding'])}-s{f(cell['state_bits'])}"
            f"-{f(cell['neuron'])}")


def make_cells(weight_bits, timesteps, rounding, state_bits, neuron) -> list[dict]:
    """The grid's cells, in order (each axis a list; None keeps the model's own setting)."""
    cells = []
    for wb, T, r, sb, n in itertools.product(_as_list(weight_bits), _as_list(timesteps), _as_list(rounding),
                                             _as_list(state_bits), _as_list(neuron)):
        cell = {"weight_bits": wb, "timesteps": T, "rounding": r or "nearest", "state_bits": sb, "neuron": n}
        cell["id"] = cell_id(cell)
        cells.append(cell)
    ids = [c["id"] for c in cells]
    if len(set(ids)) != len(ids):
        raise ValueError("the grid repeats a value on some axis")
    return cells


def twin_key(cell: dict, options: dict, data_key: tuple = (), frames_static: bool = False) -> tuple:
    """Cells with the same key see the same reference activations: same data (and T, unless every step shows
    the same frame for an ANN reference) and, with ``reference="ann-quantized"``, the same weights; the float
    SNN (``"snn"``) runs T steps and keeps the neuron kind."""
    reference = options["compare"]["reference"]
    static = frames_static and reference != "snn"
    key = (*data_key, None if static else cell["timesteps"])
    if reference == "ann-quantized":
        return (*key, cell["weight_bits"], cell["rounding"])
    if reference == "snn":
        return (*key, cell["neuron"])
    return key


# ------------------------------------------------------------------------------------------------ identity

def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _tensor_sha(tensors: Iterable[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def _model_identity(checkpoint) -> dict:
    if isinstance(checkpoint, (str, Path)):
        path = Path(checkpoint).resolve()
        cfg = path / "config.json"
        sha = json.loads(cfg.read_text()).get("tensors", {}).get("sha256") if cfg.is_file() else None
        return {"checkpoint": str(path), "sha256": sha}
    if isinstance(checkpoint, nn.Module):
        state = checkpoint.state_dict()
        return {"module": type(checkpoint).__name__, "sha256": _tensor_sha(state[k] for k in sorted(state))}
    if callable(checkpoint):
        return {"factory": f"{checkpoint.__module__}.{getattr(checkpoint, '__qualname__', repr(checkpoint))}"}
    raise TypeError(f"checkpoint must be a directory, an nn.Module or a model factory, got {type(checkpoint)}")


def _data_identity(dataset, split: str, limit: int | None) -> dict:
    if isinstance(dataset, str):
        return {"name": dataset, "split": split, "limit": limit}
    if dataset is None:
        return {"name": None, "split": split, "limit": limit}
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2 and torch.is_tensor(dataset[0]):
        return {"tensors": _tensor_sha([t for t in dataset if t is not None]), "limit": limit}
    if callable(dataset) and not hasattr(dataset, "__getitem__"):
        return {"factory": f"{dataset.__module__}.{getattr(dataset, '__qualname__', repr(dataset))}",
                "limit": limit}
    return {"object": type(dataset).__name__, "length": len(dataset) if hasattr(dataset, "__len__") else None,
            "limit": limit}


# ------------------------------------------------------------------------------------------------ atomic files

def _atomic_json(path: Path, obj) -> None:
    atomic_write_json(path, obj)


def _write_table(df, path: Path, sidecar: dict) -> None:
    write_parquet_atomic(df, path, sidecar)


def _clean_stale_tmp(folder: Path, older_than_s: float = 600.0) -> None:
    """Remove temporary files a killed writer left behind (hidden ``.name.*.tmp``), once they are old."""
    now = time.time()
    for p in folder.glob(".*.tmp"):
        try:
            if now - p.stat().st_mtime > older_than_s:
                p.unlink()
        except OSError:
            pass


# ------------------------------------------------------------------------------------------------ workers

def _load_model(source) -> nn.Module:
    kind, value = source
    if kind == "checkpoint":
        return resolve_model(value)[0]
    if kind == "portable":
        return from_portable(value)
    if kind == "module":
        return value
    return value()  # factory


def _data_for(dataset, T: int | None, execution: Execution, model_cfg: dict) -> tuple[object, tuple, bool]:
    """``(data, load key, frames static)`` for a cell with T steps: a dataset name is loaded with the
    number of frames the model is fed (`qnoise.train.evaluation.data_plan`), a factory is called with T."""
    static, steps, bins = data_plan(model_cfg, T, execution.input_mode)
    if isinstance(dataset, str) or dataset is None:
        return resolve_data(dataset, model_cfg, bins, execution.split, execution.limit)[0], ("named", bins), static
    if callable(dataset) and not hasattr(dataset, "__getitem__") and not isinstance(dataset, (tuple, list)):
        return dataset(steps), ("factory", steps), static
    one_frame = isinstance(dataset, (tuple, list)) and torch.is_tensor(dataset[0]) and dataset[0].shape[1] == 1
    return dataset, ("fixed",), static or one_frame


def _dataset_name(dataset) -> str | None:
    if isinstance(dataset, str):
        return dataset
    if callable(dataset) and not hasattr(dataset, "__getitem__") and not isinstance(dataset, (tuple, list)):
        return getattr(dataset, "__name__", None)
    return None


def run_cells(task: dict, on_cell: Callable[[str], None] | None = None) -> list[str]:
    """Run a list of cells (one worker's share) and write each cell's table as soon as it is done.

    Skips cells whose file already exists. Returns the ids it wrote.
    """
    if task.get("threads"):
        torch.set_num_threads(task["threads"])
    model = _load_model(task["model"])
    cfg = getattr(model, "qnoise_checkpoint", {}) or {}
    opts = task["options"]
    compare, count, execution = task["values"]
    out = Path(task["out"]) if task["out"] else None
    data_cache: dict = {}
    reference_caches: dict = {}
    results = task.get("results")
    written = []
    for cell in task["cells"]:
        path = out / CELLS_DIR / f"{cell['id']}.parquet" if out else None
        if path is not None and path.exists():
            continue
        T = cell["timesteps"]
        data, data_key, frames_static = _data_for(task["dataset"], T, execution, cfg) if T not in data_cache \
            else data_cache[T]
        if T not in data_cache:
            data_cache = {T: (data, data_key, frames_static)}
        shareable = not isinstance(data, torch.utils.data.DataLoader)  # a loader may shuffle
        key = twin_key(cell, opts, data_key, frames_static)
        if key not in reference_caches:
            reference_caches = {key: {}}  # cells come grouped by reference: keep only the current group's
        cache = reference_caches[key] if shareable else None
        setting = Setting(weight_bits=cell["weight_bits"], timesteps=T, rounding=cell["rounding"],
                          state_bits=cell["state_bits"], neuron=cell["neuron"], weight_method=opts["weight_method"])
        df = analyze(model, data, setting=setting, compare=compare, count=count,
                     execution=dataclasses.replace(execution, progress=False),
                     model_name=task["model_name"], dataset_name=task["dataset_name"], reference_cache=cache,
                     reference_cache_bytes=int(opts["reference_cache_mb"]) << 20)
        if path is not None:
            _write_table(df, path, {"cell": {k: v for k, v in cell.items()}, "options": opts,
                                    "model": task["identity"]["model"], "data": task["identity"]["data"],
                                    "probe": df.attrs.get("qnoise", {})})
        if results is not None:
            results[cell["id"]] = df
        written.append(cell["id"])
        if on_cell is not None:
            on_cell(cell["id"])
    return written


def _chunks(cells: list[dict], options: dict, pieces: int) -> list[list[dict]]:
    """Split cells into at least ``pieces`` tasks (when possible), keeping cells with the same twin together."""
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault(twin_key(c, options), []).append(c)
    tasks = list(groups.values())
    while len(tasks) < pieces and any(len(t) > 1 for t in tasks):
        tasks.sort(key=len, reverse=True)
        big = tasks.pop(0)
        half = (len(big) + 1) // 2
        tasks += [big[:half], big[half:]]
    # biggest first: long tasks start early (and the first cell compiles the probe's kernels)
    return sorted(tasks, key=lambda t: -sum((c["timesteps"] or 8) for c in t))


# ------------------------------------------------------------------------------------------------ sweep

def sweep(checkpoint=None, dataset=None, weight_bits=None, timesteps=None, rounding="nearest", state_bits=None,
          neuron=None, out: str | Path | None = None, executor: str = "local", workers: int | None = None, *,
          compare: Compare | None = None, count: Count | None = None, execution: Execution | None = None,
          weight_method: str = "uniform", reference_cache_mb: int = 1024, **options):
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
        out: run directory (module docstring); None keeps everything in memory (no resume).
        executor, workers: ``"local"`` (``workers=1``: this process; default: one process per core, at
            most one per cell; this process when ``out`` is None) or ``"ray"``.
        compare, count, execution: as `qnoise.probe.analyze` (`qnoise.probe.options`), or their fields by name
            (``reference="snn", limit=256``); a reference must be a name or an ANN checkpoint folder.
        reference_cache_mb: per-worker memory for reference activations shared between cells.

    Returns:
        One DataFrame with the rows of every cell of this grid (finished earlier or now).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r} is not one of {EXECUTORS}")
    if checkpoint is None:
        checkpoint = sample_checkpoint()
    cells = make_cells(weight_bits, timesteps, rounding, state_bits, neuron)
    _, compare, count, execution = split_options({"compare": compare, "count": count, "execution": execution},
                                                 **options)
    Setting(weight_method=weight_method)  # checks the method
    if isinstance(compare.reference, nn.Module):
        raise ValueError("a sweep's reference must be a name or an ANN checkpoint folder, not a module (its "
                         "cells may run in other processes)")
    options = {"compare": {**dataclasses.asdict(compare), "reference": str(compare.reference)},
               "count": {"energy": count.energy.as_dict(), "keep_tensors": count.keep_tensors},
               "execution": {k: v for k, v in dataclasses.asdict(execution).items() if k != "progress"},
               "weight_method": weight_method, "reference_cache_mb": int(reference_cache_mb)}
    local = ("device", "compile", "batch_size")
    identity = {"model": _model_identity(checkpoint), "data": _data_identity(dataset, execution.split, execution.limit),
                "options": {**{k: v for k, v in options.items() if k not in ("execution", "reference_cache_mb")},
                            "execution": {k: v for k, v in options["execution"].items() if k not in local}}}
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        _prepare_dir(out_dir, identity, cells)
    done = {c["id"] for c in cells if out_dir is not None and (out_dir / CELLS_DIR / f"{c['id']}.parquet").exists()}
    todo = [c for c in cells if c["id"] not in done]
    if isinstance(checkpoint, (str, Path)):
        source, model_name = ("checkpoint", str(checkpoint)), Path(checkpoint).resolve().name
    elif isinstance(checkpoint, nn.Module):
        source = ("module", checkpoint)
        model_name = getattr(checkpoint, "qnoise_config", {}).get("arch") if hasattr(checkpoint, "qnoise_config") \
            else None
        model_name = model_name or type(checkpoint).__name__
    else:
        source, model_name = ("factory", checkpoint), getattr(checkpoint, "__name__", "model")
    results: dict = {}
    base = {"model": source, "dataset": dataset, "options": options, "out": str(out_dir) if out_dir else None,
            "model_name": model_name, "dataset_name": _dataset_name(dataset), "identity": identity,
            "values": (compare, count, dataclasses.replace(execution, progress=False))}
    cpus = os.cpu_count() or 1
    if workers is None:
        workers = 1 if out_dir is None or len(todo) <= 1 else max(1, min(cpus, len(todo)))
    if out_dir is None and (workers > 1 or executor == "ray"):
        raise ValueError("parallel sweeps write their cells to files: give out=DIR")
    bar = tqdm(total=len(cells), initial=len(done), unit="cell", desc="sweep",
               disable=None if execution.progress is None else not execution.progress)
    try:
        if todo and executor == "local" and workers == 1:
            ordered = [c for chunk in _chunks(todo, options, 1) for c in chunk]
            run_cells({**base, "cells": ordered, "results": results}, on_cell=lambda _: bar.update(1))
        elif todo:
            if source[0] == "module":
                base["model"] = ("portable", to_portable(checkpoint))
            threads = max(1, cpus // workers)
            tasks = [{**base, "cells": chunk, "threads": threads} for chunk in _chunks(todo, options, 2 * workers)]
            if executor == "local":
                _run_processes(tasks, workers, bar)
            else:
                _run_ray(tasks, workers, bar)
    finally:
        bar.close()
    frames = []
    for c in cells:
        if c["id"] in results:
            frames.append(results[c["id"]])
        elif out_dir is not None:
            frames.append(pd.read_parquet(out_dir / CELLS_DIR / f"{c['id']}.parquet"))
    if not frames:
        raise ValueError("the sweep produced no cell")
    return pd.concat(frames, ignore_index=True)


def _prepare_dir(out_dir: Path, identity: dict, cells: list[dict]) -> None:
    (out_dir / CELLS_DIR).mkdir(parents=True, exist_ok=True)
    _clean_stale_tmp(out_dir / CELLS_DIR)
    manifest_path = out_dir / MANIFEST
    known: list[dict] = []
    if manifest_path.exists():
        old = read_json(manifest_path)
        if old.get("format") != FORMAT:
            raise ValueError(f"{out_dir} holds something other than a qnoise sweep ({manifest_path})")
        if old.get("identity") != json.loads(json.dumps(identity)):
            diff = sorted(k for k in set(old.get("identity", {})) | set(identity)
                          if old.get("identity", {}).get(k) != json.loads(json.dumps(identity.get(k))))
            raise ValueError(f"{out_dir} holds a sweep of a different {', '.join(diff)}; use another --out "
                             f"directory (or delete it) to start a new sweep")
        known = old.get("cells", [])
    ids = {c["id"] for c in known}
    merged = known + [{**{k: c[k] for k in AXES}, "id": c["id"], "file": f"{CELLS_DIR}/{c['id']}.parquet"}
                      for c in cells if c["id"] not in ids]
    _atomic_json(manifest_path, {"format": FORMAT, "version": VERSION, "identity": identity, "cells": merged})


def _run_processes(tasks: list[dict], workers: int, bar) -> None:
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        pending = {pool.submit(run_cells, t) for t in tasks}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                bar.update(len(f.result()))


def _run_ray(tasks: list[dict], workers: int, bar) -> None:
    try:
        import ray
    except ImportError as err:
        raise ValueError("executor='ray' needs Ray: pip install 'qnoise[ray]'") from err
    started = not ray.is_initialized()
    if started:  # a local Ray; connect to a cluster by calling ray.init(address=...) before the sweep
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(run_cells)
        pending = [remote.remote(t) for t in tasks]
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            for ref in finished:
                bar.update(len(ray.get(ref)))
    finally:
        if started:
            ray.shutdown()


def load_sweep(out: str | Path):
    """The table of every finished cell of a run directory (or of a single parquet file)."""
    out = Path(out)
    if out.is_file():
        return pd.read_parquet(out)
    files = sorted((out / CELLS_DIR).glob("*.parquet")) if (out / CELLS_DIR).is_dir() else sorted(out.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{out} holds no finished cell (no {CELLS_DIR}/*.parquet or *.parquet)")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


# ``qnoise.sweep`` is both this module and, through qnoise's lazy exports, the function `sweep`: whichever
# the name resolves to, ``qnoise.sweep(...)`` runs a sweep and ``qnoise.sweep.load_results`` reads one.
load_results = load_sweep
sweep.load_results = load_results
sweep.load_sweep = load_sweep


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
