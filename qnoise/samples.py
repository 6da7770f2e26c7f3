"""The bundled sample models: where they live and which checkpoint is the default one.

``qnoise sample-data`` writes them (`qnoise.train.sample_data`); the CLI's analysis commands, the sweep and
the dashboard open them when no checkpoint is named. A low-level module (only the standard library), so any
part may import it without pulling in the command line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SAMPLE_ENV = "QNOISE_SAMPLE_DIR"


def sample_dir() -> Path:
    """``$QNOISE_SAMPLE_DIR``, else the repository's ``sample_data/`` (made by ``qnoise sample-data``)."""
    env = os.environ.get(SAMPLE_ENV)
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[1] / "sample_data"


def sample_checkpoints(root: Path | None = None) -> list[Path]:
    """Checkpoint folders under the sample folder, SNNs first: in the order of its ``index.json`` (written
    by ``qnoise sample-data``) when there is one, else every folder with a qnoise ``config.json``."""
    root = sample_dir() if root is None else root
    index = root / "index.json"
    if index.is_file():
        try:
            doc = json.loads(index.read_text())
        except (OSError, ValueError):
            doc = {}
        entries = doc.get("models", doc.get("entries", [])) if isinstance(doc, dict) else doc
        listed = [(e.get("kind", "snn") != "snn", i, root / e["path"]) for i, e in enumerate(entries or [])
                  if isinstance(e, dict) and isinstance(e.get("path"), str) and e["path"]
                  and _inside(root, root / e["path"]) and (root / e["path"] / "config.json").is_file()]
        if listed:
            return [p for _, _, p in sorted(listed)]
    found = []
    for cfg in sorted(root.rglob("config.json")) if root.is_dir() else []:
        try:
            doc = json.loads(cfg.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("format") == "qnoise-checkpoint":
            kind = (doc.get("model") or {}).get("kind", "snn") if isinstance(doc.get("model"), dict) else "snn"
            found.append((kind != "snn", str(cfg.parent), cfg.parent))
    return [p for _, _, p in sorted(found)]


def _inside(root: Path, path: Path) -> bool:
    """Whether ``path`` (symlinks resolved) lies inside ``root``: an index entry cannot point elsewhere."""
    return path.resolve().is_relative_to(root.resolve())


def sample_checkpoint() -> Path:
    """The bundled sample model: the first SNN checkpoint in `sample_dir`."""
    found = sample_checkpoints()
    if not found:
        raise FileNotFoundError(f"no sample model in {sample_dir()}: run `qnoise sample-data` first, or pass "
                                f"--checkpoint DIR")
    return found[0]
