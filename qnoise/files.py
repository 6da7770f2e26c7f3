"""Files written so that nothing is lost or half-written: atomic writes (a temporary file in the same folder,
then ``os.replace``), strict JSON (a non-finite float is written as ``null``, never ``NaN``), a name checked to
stay inside its folder, an output's parent checked before the work, and the package versions a file records.
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
from pathlib import Path

import torch


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


def json_safe(obj):
    """``obj`` with every non-finite float (NaN, Inf) replaced by None: strict JSON has no NaN, and a reader
    that meets ``NaN`` (JavaScript, jq, most parsers) fails on the whole document."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def dumps_json(obj, **kwargs) -> str:
    """``json.dumps`` of `json_safe` ``(obj)``: always valid JSON (non-finite floats written as ``null``)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def atomic_write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented, key-sorted, strict JSON (deterministic bytes; NaN as null), atomically."""
    return atomic_write_bytes(path, (dumps_json(obj, indent=2, sort_keys=True) + "\n").encode())


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


def file_inside(folder: str | Path, name, what: str) -> Path:
    """``folder / name`` when it is a file inside ``folder`` (symlinks resolved); otherwise ``FileNotFoundError``
    with one message whether the file is missing or outside, so the answer says nothing about other files."""
    folder = Path(folder)
    message = f"{what} {name!r} is not a file inside {folder}"
    if not isinstance(name, str) or not name:
        raise FileNotFoundError(message)
    try:
        target = (folder / name).resolve()
        inside = target.is_relative_to(folder.resolve()) and target.is_file()
    except (OSError, ValueError):  # a NUL byte, a loop of links, ...
        inside = False
    if not inside:
        raise FileNotFoundError(message)
    return target


def check_parent(path: Path, flag: str) -> None:
    """The nearest existing ancestor of ``path`` must be a writable folder (else the save fails at the end)."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: {parent} is a file, so the folder cannot be created")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: {parent} is not writable")


class FolderInUse(RuntimeError):
    """Another process holds a run folder's lock (`qnoise.sweep.folder.locked`)."""


def check_folder_output(path: str | Path, flag: str = "--out") -> Path:
    """Refuse, before any work, an output that must be a folder (a sweep's run folder, a report's, a search's
    tables) when it is an existing file or cannot be created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is an existing file; it must be a folder (a new name, or a folder)")
    if not path.exists():
        check_parent(path, flag)
    return path


def package_versions() -> dict[str, str]:
    """Versions of python, torch, qnoise and the file-format libraries, for provenance."""
    import numpy
    import safetensors

    from . import __version__  # at call time: qnoise/__init__.py imports modules that import this one

    return {"python": platform.python_version(), "torch": torch.__version__, "qnoise": __version__,
            "numpy": numpy.__version__, "safetensors": safetensors.__version__}
