"""Results tables on disk: parquet with a JSON sidecar (the same JSON also in the parquet schema's metadata, so it
travels with the table), both written atomically, and an output checked before the work that would fill it.
"""

from __future__ import annotations

import io
from pathlib import Path

from .files import (
    atomic_write_bytes,
    atomic_write_json,
    check_parent,
    dumps_json,
    json_safe,
    package_versions,
    read_json,
)


def is_results_table(path: str | Path) -> bool:
    """Whether ``path`` is a parquet table written by `write_parquet_atomic` (its schema carries ``qnoise``)."""
    import pyarrow.parquet as pq

    try:
        return b"qnoise" in (pq.read_schema(str(path)).metadata or {})
    except Exception:  # noqa: BLE001 - not parquet, unreadable: not a qnoise table
        return False


def check_table_output(path: str | Path, force: bool = False, flag: str = "--out") -> Path:
    """Refuse, before any work, a results-table output that is a folder, or an existing file (or sidecar)
    that qnoise did not write, unless ``force``."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name such as {path / 'results.parquet'}")
    side = sidecar_path(path)
    if side.is_dir():
        raise ValueError(f"{flag} {path}: its sidecar {side} is a folder")
    if not force:
        if path.exists() and not is_results_table(path):
            raise ValueError(f"{flag} {path} exists and is not a qnoise results table; pass --force to overwrite "
                             f"it, or choose another name")
        if side.exists() and not path.exists():
            raise ValueError(f"{flag} {path}: {side} exists (and would be overwritten); pass --force, or choose "
                             f"another name")
    check_parent(path, flag)
    return path


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of a results table: ``results.parquet`` -> ``results.parquet.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_parquet_atomic(df, path: str | Path, sidecar: dict | None = None) -> Path:
    """Write a DataFrame as parquet plus a JSON sidecar (versions added), both atomically.

    The sidecar is also stored in the parquet schema metadata under ``b"qnoise"``, so it travels with the
    table; `read_parquet` returns both.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    meta = json_safe({**(sidecar or {}), "versions": {**package_versions(), **(sidecar or {}).get("versions", {})}})
    text = dumps_json(meta, sort_keys=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"qnoise": text.encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_json(sidecar_path(path), meta)
    return path


def read_parquet(path: str | Path):
    """``(DataFrame, sidecar dict)`` of a table written by `write_parquet_atomic`: the sidecar from the table's
    own schema metadata, written with it in one file (the JSON file beside it is a copy for people and tools, and
    could be the previous table's after a crash between the two writes); the JSON file only for a table
    without it."""
    import json

    import pandas as pd
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    df = pd.read_parquet(path)
    stored = (pq.read_schema(str(path)).metadata or {}).get(b"qnoise")
    if stored is not None:
        try:
            return df, json.loads(stored)
        except ValueError as err:
            raise ValueError(f"{path}: its schema's qnoise metadata is not valid JSON ({err})") from err
    side = sidecar_path(path)
    return df, (read_json(side) if side.is_file() else {})
