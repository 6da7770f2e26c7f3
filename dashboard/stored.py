"""What is stored on disk beside the models: grids shipped with checkpoints (`qnoise sample-data` writes the
sample's), grids analysed here and kept between runs, and the checkpoint a sweep run folder records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import sources

GRIDS = sources.GRIDS


@st.cache_data(show_spinner=False, max_entries=32)
def _shipped_grid(path: str, _stamp: float) -> tuple[pd.DataFrame, dict]:
    from qnoise.table_files import read_parquet

    df, side = read_parquet(path)
    return sources.check_results(df, path), side


def shipped_grid(checkpoint: str | Path, batch_file: str | None) -> tuple[pd.DataFrame, dict] | None:
    """``(table, record)`` of the grid shipped beside a checkpoint (``<folder>/grids/<name>.parquet``), when
    it was computed from these very tensors (SHA-256) on this evaluation batch; else None."""
    from qnoise.io import read_checkpoint_config

    checkpoint = Path(checkpoint)
    folder = checkpoint.parent / GRIDS
    path = folder / f"{checkpoint.name}.parquet"
    if not (path.is_file() and sources.is_grid_folder(folder) and sources.is_allowed(path)):
        return None
    try:
        df, record = _shipped_grid(str(path), sources.stamp(path))
        sha = (read_checkpoint_config(checkpoint).get("tensors") or {}).get("sha256")
    except Exception:  # noqa: BLE001 - an unreadable grid is computed again
        return None
    if not sha or record.get("sha256") != sha:
        return None
    if batch_file is not None and record.get("batch") != Path(batch_file).name:
        return None
    return df, record


# ---------------------------------------------------------------- a sweep's own model

def sweep_checkpoint(results_path: str | Path | None) -> tuple[Path | None, str | None]:
    """``(checkpoint, why not)``: the checkpoint a sweep run folder's manifest records
    (``identity.model.checkpoint``), when it exists and this dashboard may open it."""
    if results_path is None:
        return None, None
    manifest = Path(results_path) / "manifest.json"
    if not manifest.is_file():
        return None, None
    try:
        identity = json.loads(manifest.read_text()).get("identity") or {}
        recorded = (identity.get("model") or {}).get("checkpoint")
    except (OSError, ValueError, AttributeError):
        return None, None
    if not recorded:
        return None, None
    path = Path(recorded)
    if not path.is_absolute():
        path = Path(results_path) / path
    if not sources.is_allowed(path):
        return None, (f"the sweep records its checkpoint {recorded}, which lies outside the folders this dashboard "
                      f"may open: start it with `qnoise dashboard --data {Path(recorded).parent}` to use it")
    if not sources.is_checkpoint(path):
        return None, f"the sweep records its checkpoint {recorded}, which is no longer there"
    return path, None


# ---------------------------------------------------------------- small grid, persisted

CACHE_ENV = "QNOISE_DASHBOARD_CACHE"


def cache_dir() -> Path:
    """Where analysed grids are kept between runs: ``$QNOISE_DASHBOARD_CACHE``, else
    ``~/.cache/qnoise/dashboard``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "qnoise" / "dashboard"


def grid_cache_file(checkpoint: str | Path, batch_file: str | None, cells: list, samples: int) -> Path:
    """The parquet file holding a grid analysed for this checkpoint (its tensors' SHA-256), data and grid."""
    import hashlib
    import json

    import qnoise
    from qnoise.io import read_checkpoint_config

    sha = (read_checkpoint_config(checkpoint).get("tensors") or {}).get("sha256") or sources.stamp(checkpoint)
    data = sources.stamp(batch_file) if batch_file else "dataset"
    key = json.dumps([sha, str(data), cells, samples, qnoise.__version__], sort_keys=True, default=str)
    return cache_dir() / f"grid-{Path(checkpoint).name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.parquet"


def read_grid_cache(path: Path) -> pd.DataFrame | None:
    try:
        return sources.check_results(pd.read_parquet(path), str(path)) if path.is_file() else None
    except Exception:  # noqa: BLE001 - a bad cache file is recomputed
        return None


def write_grid_cache(path: Path, df: pd.DataFrame) -> None:
    try:
        from qnoise.table_files import write_parquet_atomic

        write_parquet_atomic(df, path, {"what": "qnoise dashboard grid cache"})
    except OSError:  # a read-only home: the in-memory cache still holds it
        pass
