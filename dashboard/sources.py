"""Where the dashboard's data comes from: a folder holding checkpoints (``model.safetensors`` +
``config.json``), results tables (parquet, or a sweep run folder with a manifest) and, for the sample,
an evaluation batch and an index JSON. No Streamlit here: `state` wraps these in caches.

Everything is read through qnoise (`qnoise.io`); nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SAMPLE_ENV = "QNOISE_SAMPLE_DIR"
RESULT_COLUMNS = ("weight_bits", "timesteps", "layer", "t", "metric", "value")
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
UPLOAD_NAMES = ("model.safetensors", "config.json")
_SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules", ".cache"}


def default_dir() -> Path:
    """The folder the dashboard opens on: ``$QNOISE_SAMPLE_DIR``, else the repository's ``sample_data/``."""
    env = os.environ.get(SAMPLE_ENV)
    return Path(env).expanduser() if env else REPO / "sample_data"


@dataclass
class Catalog:
    """What a folder holds. Labels are paths relative to ``root`` ("." for the root itself)."""

    root: Path
    checkpoints: dict[str, Path] = field(default_factory=dict)
    results: dict[str, Path] = field(default_factory=dict)
    eval_batches: dict[str, Path] = field(default_factory=dict)
    index: dict = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.checkpoints or self.results)


def is_checkpoint(path: Path) -> bool:
    cfg = path / "config.json"
    if not (cfg.is_file() and any(path.glob("*.safetensors"))):
        return False
    try:
        return json.loads(cfg.read_text()).get("format") == "qnoise-checkpoint"
    except (OSError, ValueError, AttributeError):
        return False


def _kind(path: Path) -> str:
    try:
        return str((json.loads((path / "config.json").read_text()).get("model") or {}).get("kind", "snn"))
    except (OSError, ValueError, AttributeError):
        return "snn"


def is_sweep_dir(path: Path) -> bool:
    return path.is_dir() and (path / "manifest.json").is_file() and any(path.rglob("*.parquet"))


def stamp(path: str | Path) -> float:
    """A change marker for cache keys: the newest modification time under ``path``."""
    path = Path(path)
    if not path.exists():
        return 0.0
    if path.is_file():
        return path.stat().st_mtime
    times = [p.stat().st_mtime for p in path.rglob("*") if p.is_file()][:10000]
    return max(times, default=path.stat().st_mtime)


def scan(path: str | Path, max_depth: int = 4) -> Catalog:
    """Find checkpoints, results tables and evaluation batches under ``path``.

    Raises ``FileNotFoundError`` when ``path`` does not exist and ``ValueError`` when it holds nothing the
    dashboard can show.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    cat = Catalog(root=root.resolve())
    if root.is_file():
        if root.suffix == ".parquet":
            cat.results[root.name] = root
            cat.root = root.parent.resolve()
            return cat
        raise ValueError(f"{root} is a file; choose a folder (checkpoint, sweep run, sample data) or a .parquet table")
    for name in ("index.json", "sample_index.json", "manifest.json"):
        f = root / name
        if f.is_file() and name != "manifest.json":
            try:
                cat.index = json.loads(f.read_text())
            except ValueError as err:
                raise ValueError(f"{f} is not valid JSON: {err}") from err
            break

    def label(p: Path) -> str:
        rel = p.relative_to(root)
        return "." if str(rel) == "." else str(rel)

    def walk(d: Path, depth: int) -> None:
        if is_checkpoint(d):
            cat.checkpoints[label(d)] = d
            return
        if is_sweep_dir(d):
            cat.results[label(d)] = d
            return
        for p in sorted(d.iterdir()):
            if p.is_file() and p.suffix == ".parquet":
                cat.results[label(p)] = p
            elif p.is_file() and p.suffix == ".safetensors" and not is_checkpoint(d):
                cat.eval_batches[label(p)] = p
            elif p.is_dir() and depth < max_depth and p.name not in _SKIP_DIRS and not p.name.startswith("."):
                walk(p, depth + 1)

    walk(root, 0)
    cat.checkpoints = dict(sorted(cat.checkpoints.items(), key=lambda kv: (_kind(kv[1]) != "snn", kv[0])))
    if cat.empty:
        raise ValueError(f"{root} holds no qnoise checkpoint (model.safetensors + config.json) and no results table "
                         f"(.parquet or a sweep run folder with manifest.json)")
    return cat


def check_results(df: pd.DataFrame, where: str = "the table") -> pd.DataFrame:
    """Raise ``ValueError`` unless ``df`` has the tidy schema's core columns."""
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{where} is not a qnoise results table: missing column(s) {missing}")
    return df


def read_results(path: str | Path) -> pd.DataFrame:
    """A results table: one parquet file, or every finished cell of a sweep run folder, concatenated."""
    path = Path(path)
    if path.is_file():
        try:
            df = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several types for a bad file
            raise ValueError(f"{path} is not a readable parquet table: {err}") from err
        return check_results(df, str(path))
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    try:  # the sweep's own reader, when qnoise has one: it knows which cells are finished
        from qnoise import sweep as _sweep

        reader = getattr(_sweep, "load_results", None) or getattr(_sweep, "read_sweep", None)
    except ImportError:
        reader = None
    if reader is not None:
        return check_results(reader(path), str(path))
    files = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
    if not files:
        raise ValueError(f"{path} holds no .parquet table")
    frames = []
    for f in files:
        try:
            frames.append(pd.read_parquet(f))
        except Exception as err:
            raise ValueError(f"{f} is not a readable parquet table: {err}") from err
    return check_results(pd.concat(frames, ignore_index=True), str(path))


def save_upload(files: dict[str, bytes], max_bytes: int = MAX_UPLOAD_BYTES, parent: str | Path | None = None) -> Path:
    """Write an uploaded checkpoint (``{"model.safetensors": bytes, "config.json": bytes}``) to a new
    temporary folder and validate it with `qnoise.io.load_checkpoint` (safetensors: no code is run).
    Returns the folder; raises ``ValueError`` with a clear message (and removes the folder) otherwise."""
    from qnoise.io import load_checkpoint

    names = sorted(files)
    wrong = [n for n in names if n not in UPLOAD_NAMES]
    if wrong:
        raise ValueError(f"unexpected file(s) {wrong}: upload exactly {list(UPLOAD_NAMES)}")
    lacking = [n for n in UPLOAD_NAMES if n not in files]
    if lacking:
        raise ValueError(f"missing {lacking}: a checkpoint is {list(UPLOAD_NAMES)}")
    total = sum(len(b) for b in files.values())
    if total > max_bytes:
        raise ValueError(f"the upload is {total / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB")
    try:
        json.loads(files["config.json"].decode())
    except (UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"config.json is not valid JSON: {err}") from err
    folder = Path(tempfile.mkdtemp(prefix="qnoise-upload-", dir=parent))
    try:
        for name, data in files.items():
            (folder / name).write_bytes(data)
        load_checkpoint(folder)
    except Exception as err:
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(err, (ValueError, FileNotFoundError, KeyError, TypeError)):
            raise ValueError(f"not a valid qnoise checkpoint: {err}") from err
        raise ValueError(f"could not load the checkpoint: {type(err).__name__}: {err}") from err
    return folder
