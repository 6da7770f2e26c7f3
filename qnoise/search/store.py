"""A search's evaluations, cached in memory and, with a run folder, on disk (resumable like a sweep).

    manifest.json                  what is searched (model, data, space, options)
    evaluations/<sha1 of key>.json one evaluated configuration (`qnoise.search.evaluate`), written atomically
    .lock                          held by the process running the search (`qnoise.sweep.folder.locked`)

A configuration is never evaluated twice: a run of the same search finds every evaluation made before (a
killed search loses at most the ones in flight); a folder that holds another search is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..files import atomic_write_json, read_json
from .space import Candidate

FORMAT = "qnoise-search"
VERSION = 1
MANIFEST = "manifest.json"
EVALS = "evaluations"


class Store:
    """Evaluations by candidate key; ``folder`` None keeps them in memory only."""

    def __init__(self, folder: Path | None, identity: dict) -> None:
        self.folder, self.identity = folder, json.loads(json.dumps(identity))
        self.records: dict[str, dict] = {}
        self.loaded = 0
        if folder is not None:
            self._open()

    def _open(self) -> None:
        path = self.folder / MANIFEST
        if path.exists():
            old = read_json(path)
            if old.get("format") != FORMAT:
                raise ValueError(f"{self.folder} holds something other than a qnoise search ({path})")
            if old.get("identity") != self.identity:
                diff = sorted(k for k in set(old.get("identity", {})) | set(self.identity)
                              if old.get("identity", {}).get(k) != self.identity.get(k))
                raise ValueError(f"{self.folder} holds a search of a different {', '.join(diff)}; use another --out "
                                 f"folder (or delete it) to start a new search")
        else:
            atomic_write_json(path, {"format": FORMAT, "version": VERSION, "identity": self.identity})
        (self.folder / EVALS).mkdir(parents=True, exist_ok=True)
        for f in sorted((self.folder / EVALS).glob("*.json")):
            try:
                doc = read_json(f)
                self.records[doc["key"]] = doc
            except (ValueError, KeyError):  # a damaged file: that configuration is evaluated again
                f.unlink(missing_ok=True)
        self.loaded = len(self.records)

    def __contains__(self, c: Candidate) -> bool:
        return c.key in self.records

    def get(self, c: Candidate) -> dict | None:
        return self.records.get(c.key)

    def add(self, record: dict) -> None:
        self.records[record["key"]] = record
        if self.folder is not None:
            name = hashlib.sha1(record["key"].encode()).hexdigest()[:20]
            atomic_write_json(self.folder / EVALS / f"{name}.json", record)
