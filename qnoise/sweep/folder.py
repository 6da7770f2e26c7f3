"""A sweep's run folder: its identity, its manifest, its lock, and its cell files.

    manifest.json                  what is swept (model, data, options) and every cell with its file: the one
                                   list of which cells the folder holds
    cells/<cell id>.parquet        one cell's table (`qnoise.probe.COLUMNS`), written atomically
    cells/<cell id>.parquet.json   its JSON sidecar (cell, options, package versions, the probe's definitions)
    .lock                          held (an OS file lock) by the process running a sweep in the folder

A cell is finished exactly when its parquet file exists and reads: files are written to a temporary name and
moved into place (``os.replace``), so a sweep killed at any moment loses at most the cells in flight and never
leaves a half-written table; a file damaged afterwards (empty, corrupt) is recomputed, with a warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import pyarrow.parquet as pq
import torch
from torch import nn

from ..files import FolderInUse, atomic_write_json, read_json
from .cells import AXES

MANIFEST = "manifest.json"
CELLS_DIR = "cells"
LOCK = ".lock"
FORMAT = "qnoise-sweep"
VERSION = 1


# ------------------------------------------------------------------------------------------------ identity

def _tensor_sha(tensors: Iterable[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def model_identity(checkpoint) -> dict:
    """What identifies the model of a sweep: a checkpoint's folder and tensor hash, a module's tensors, or a
    factory's name."""
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


def files_fingerprint(path: Path) -> str:
    """A hash of the files of the user's own data (a file, or every file under a folder): their paths relative
    to ``path``, sizes and modification times, as the frame cache keys recordings; not their bytes (a folder
    of recordings can be gigabytes)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        stat = f.stat()
        h.update(json.dumps([f.relative_to(path).as_posix() if f != path else f.name, stat.st_size,
                             stat.st_mtime_ns]).encode())
    return h.hexdigest()[:16]


def data_identity(dataset, split: str, limit: int | None) -> dict:
    """What identifies the data of a sweep: a dataset name and split, the user's own files (by name and
    `files_fingerprint`: a path as typed named other data from another folder, and the same data by another
    path was refused), tensors' hash, a factory's name."""
    from ..data.user import is_user_data

    if isinstance(dataset, (str, Path)) and is_user_data(dataset):
        path = Path(str(dataset)).expanduser()
        return {"user_data": path.resolve().name, "files": files_fingerprint(path), "split": split, "limit": limit}
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


# ------------------------------------------------------------------------------------------------ lock

@contextlib.contextmanager
def locked(folder: Path):
    """Hold the run folder's OS file lock (``fcntl.flock``, released by the OS if this process dies) for the
    block; the lock file names the holder's PID. Raises `FolderInUse` naming the holder when it is taken."""
    import fcntl  # POSIX; qnoise's sweeps run on Linux and macOS

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise FolderInUse(f"{folder} is in use by another sweep ({holder}); wait for it to finish or use another "
                              f"--out folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------ manifest

def cell_file(folder: Path, cell_id: str) -> Path:
    return folder / CELLS_DIR / f"{cell_id}.parquet"


def _clean_stale_tmp(folder: Path, older_than_s: float = 600.0) -> None:
    """Remove temporary files a killed writer left behind (hidden ``.name.*.tmp``), once they are old."""
    now = time.time()
    for p in folder.glob(".*.tmp"):
        try:
            if now - p.stat().st_mtime > older_than_s:
                p.unlink()
        except OSError:
            pass


def prepare(folder: Path, identity: dict, cells: list[dict]) -> None:
    """Create or extend the run folder (under its lock): refuse a folder that holds something else or a sweep
    with another identity; add this grid's cells to the manifest."""
    if not (folder / MANIFEST).exists():
        other = sorted(p.name for p in folder.iterdir() if p.name not in (LOCK, CELLS_DIR))
        if other:
            raise ValueError(f"{folder} holds other files ({', '.join(other[:5])}{', ...' if len(other) > 5 else ''}) "
                             f"and no sweep: give --out a new or empty folder")
    (folder / CELLS_DIR).mkdir(parents=True, exist_ok=True)
    _clean_stale_tmp(folder / CELLS_DIR)
    manifest_path = folder / MANIFEST
    known: list[dict] = []
    if manifest_path.exists():
        old = read_json(manifest_path)
        if old.get("format") != FORMAT:
            raise ValueError(f"{folder} holds something other than a qnoise sweep ({manifest_path})")
        if old.get("identity") != json.loads(json.dumps(identity)):
            diff = sorted(k for k in set(old.get("identity", {})) | set(identity)
                          if old.get("identity", {}).get(k) != json.loads(json.dumps(identity.get(k))))
            raise ValueError(f"{folder} holds a sweep of a different {', '.join(diff)}; use another --out "
                             f"directory (or delete it) to start a new sweep")
        known = old.get("cells", [])
    ids = {c["id"] for c in known}
    merged = known + [{**{k: c[k] for k in AXES}, "id": c["id"], "file": f"{CELLS_DIR}/{c['id']}.parquet"}
                      for c in cells if c["id"] not in ids]
    atomic_write_json(manifest_path, {"format": FORMAT, "version": VERSION, "identity": identity, "cells": merged})


def finished(folder: Path, cell_id: str) -> bool:
    """Whether the cell's file exists and is a readable parquet table; a damaged one (empty, corrupt) is
    removed, with a warning, so the cell is computed again."""
    path = cell_file(folder, cell_id)
    if not path.exists():
        return False
    try:
        pq.read_metadata(path)
        return True
    except Exception as err:  # noqa: BLE001 - pyarrow raises several error types for a damaged file
        warnings.warn(f"sweep cell {cell_id}: {path} is not a readable table ({type(err).__name__}: "
                      f"{str(err)[:120]}); computing it again", RuntimeWarning, stacklevel=2)
        path.unlink(missing_ok=True)
        return False


def manifest_cells(folder: Path) -> list[dict]:
    """The cells a run folder's manifest lists (the one list of which cells exist)."""
    doc = read_json(folder / MANIFEST)
    if doc.get("format") != FORMAT:
        raise ValueError(f"{folder / MANIFEST} is not a qnoise sweep manifest")
    return list(doc.get("cells", []))
