"""Checkpoints (safetensors + JSON, never pickle), results tables (parquet + JSON sidecar), atomic writes.

A checkpoint is a directory::

    model.safetensors   the model's state dict (quantization parametrizations included)
    config.json         {"format": "qnoise-checkpoint", "version": 1,
                         "model": <model.qnoise_config: architecture, neuron, quantization>,
                         "dataset": {...}, "timesteps": T, "training": {...}, "history": [...],
                         "metrics": {...}, "versions": {...},
                         "tensors": {"file": "model.safetensors", "sha256": ..., "shapes": {key: shape}}}

Every file is written to a temporary name and moved into place with ``os.replace``; ``config.json`` is
written last and records the SHA-256 of the tensors, so a checkpoint cut off mid-save is detected on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

FORMAT = "qnoise-checkpoint"
VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


# ---------------------------------------------------------------- atomic writes

def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented, key-sorted JSON (deterministic bytes), atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | Path) -> dict:
    """Read a JSON object; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(obj).__name__}")
    return obj


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> str:
    """Save tensors as safetensors, atomically; returns the file's SHA-256.

    ``metadata`` (any JSON-able dict) is stored as one key-sorted JSON string under the header key
    ``"qnoise"`` (safetensors keeps several keys in no fixed order, which would make the bytes vary);
    `read_tensor_metadata` returns it.
    """
    meta = None if metadata is None else {"qnoise": json.dumps(metadata, sort_keys=True)}
    data = st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=meta)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def read_tensor_metadata(path: str | Path) -> dict:
    """The ``metadata`` dict given to `save_tensors` (empty when there is none)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta["qnoise"]) if "qnoise" in meta else {}


def load_tensors(path: str | Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a safetensors file (CPU); with ``sha256``, check the file is the one that was recorded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{path} does not match the SHA-256 recorded in {path.parent / CONFIG_FILE}: the "
                         f"checkpoint was modified or cut off while saving; save it again")
    try:
        return st_load(data)
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err


def package_versions() -> dict[str, str]:
    """Versions of python, torch, qnoise and the file-format libraries, for provenance."""
    import numpy
    import safetensors

    from . import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "qnoise": __version__,
            "numpy": numpy.__version__, "safetensors": safetensors.__version__}


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(model: nn.Module, path: str | Path, *, dataset: dict | None = None,
                    timesteps: int | None = None, training: dict | None = None, history: list | None = None,
                    metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Save ``model`` (a `qnoise.models.Network`) to the checkpoint directory ``path``; returns ``path``.

    ``dataset``/``training``/``metrics``/``extra`` are JSON-able dicts stored as given; ``timesteps`` is
    the T the model is meant to run with.
    """
    config = getattr(model, "qnoise_config", None)
    if not isinstance(config, dict):
        raise ValueError(f"{type(model).__name__} has no qnoise_config: only models from "
                         f"qnoise.models.build_model can be saved as checkpoints")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    sha = save_tensors(path / MODEL_FILE, state)
    doc = {"format": FORMAT, "version": VERSION, "model": config, "dataset": dataset, "timesteps": timesteps,
           "training": training, "history": list(history or []), "metrics": dict(metrics or {}),
           "versions": package_versions(), **(extra or {}),
           "tensors": {"file": MODEL_FILE, "sha256": sha,
                       "shapes": {k: list(v.shape) for k, v in state.items()}}}
    atomic_write_json(path / CONFIG_FILE, doc)
    return path


def read_checkpoint_config(path: str | Path) -> dict:
    """The validated ``config.json`` of a checkpoint directory."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} is not a directory (expected {MODEL_FILE} + {CONFIG_FILE})")
    cfg_path = path / CONFIG_FILE
    doc = read_json(cfg_path)
    if doc.get("format") != FORMAT:
        raise ValueError(f"{cfg_path}: 'format' is {doc.get('format')!r}, expected {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise ValueError(f"{cfg_path}: checkpoint version {doc.get('version')!r} is not supported "
                         f"(this qnoise reads version {VERSION})")
    for key in ("model", "tensors"):
        if not isinstance(doc.get(key), dict):
            raise ValueError(f"{cfg_path}: missing or invalid '{key}' section")
    return doc


def _check_tensors(file: Path, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Compare saved tensors with the state dict the config builds; raise naming every difference."""
    problems = []
    for key in sorted(set(expected) - set(tensors)):
        problems.append(f"key '{key}' is missing from {file.name} (config.json builds it, shape "
                        f"{tuple(expected[key].shape)})")
    for key in sorted(set(tensors) - set(expected)):
        problems.append(f"key '{key}' in {file.name} (shape {tuple(tensors[key].shape)}) is not part of the "
                        f"model config.json builds")
    for key in sorted(set(tensors) & set(expected)):
        if tensors[key].shape != expected[key].shape:
            problems.append(f"key '{key}' has shape {tuple(tensors[key].shape)} in {file.name} but config.json "
                            f"builds {tuple(expected[key].shape)}")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise ValueError(f"checkpoint {file.parent} does not match its config:\n  " + "\n  ".join(shown))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model of a checkpoint directory and load its tensors; returns it in eval mode.

    The full ``config.json`` is attached as ``model.qnoise_checkpoint``. Raises ``ValueError`` naming the
    file and key of any mismatch between the config and the tensors.
    """
    from .device import resolve_device
    from .models import model_from_config

    path = Path(path)
    doc = read_checkpoint_config(path)
    try:
        model = model_from_config(doc["model"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path / CONFIG_FILE}: 'model' does not describe a qnoise model: {err}") from err
    tensors = load_tensors(path / doc["tensors"].get("file", MODEL_FILE), doc["tensors"].get("sha256"))
    expected = model.state_dict()
    _check_tensors(path / MODEL_FILE, tensors, expected)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})
    model.qnoise_checkpoint = doc
    return model.to(resolve_device(device)).eval()


# ---------------------------------------------------------------- results tables

def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of a results table: ``results.parquet`` -> ``results.parquet.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_parquet_atomic(df, path: str | Path, sidecar: dict | None = None) -> Path:
    """Write a DataFrame as parquet plus a JSON sidecar (versions added), both atomically.

    The sidecar is also stored in the parquet schema metadata under ``b"qnoise"``, so it travels with the
    table; `read_parquet` returns both.
    """
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    meta = {**(sidecar or {}), "versions": {**package_versions(), **(sidecar or {}).get("versions", {})}}
    text = json.dumps(meta, sort_keys=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"qnoise": text.encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_json(sidecar_path(path), meta)
    return path


def read_parquet(path: str | Path):
    """``(DataFrame, sidecar dict)`` of a table written by `write_parquet_atomic`."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    side = sidecar_path(path)
    return pd.read_parquet(path), (read_json(side) if side.is_file() else {})
