"""On-disk cache of event frames: one ``.npy`` per sample, keyed by everything the frames depend on.

The key hashes the dataset, the file's path relative to the dataset folder (and the sample's index inside it,
for multi-sample files such as SHD's HDF5), the file's size and modification time, the number of timesteps and
the framing parameters. Changing any of them misses the cache. A file rewritten with new contents but the
same size and modification time (``cp -p``, ``rsync -a``, ``touch -r``) is not noticed: its old frames come
back until the cache folder (``$QNOISE_CACHE``) is deleted or the call passes ``cache=False``. Entries are
written to a temporary file and moved into place with ``os.replace`` (atomic), and read with
``np.load(allow_pickle=False)``: no pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

CACHE_VERSION = 2  # 2: CIFAR10-DVS AER-DAT 2 polarity (ON = 1); a reader's fix changes frames


def default_cache_dir() -> Path:
    """``$QNOISE_CACHE`` if set, else ``~/.cache/qnoise/frames``."""
    env = os.environ.get("QNOISE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "qnoise" / "frames"


def compact(counts: np.ndarray) -> np.ndarray:
    """Non-negative integer counts in the smallest unsigned dtype that holds them (uint8, uint16 or uint32)."""
    top = int(counts.max()) if counts.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return counts.astype(dtype)
    raise ValueError(f"count {top} does not fit in uint32")


class FrameCache:
    """Frames of one dataset under ``root / dataset``; ``get`` returns None on a miss, ``put`` stores."""

    def __init__(self, root, dataset: str):
        self.root = Path(root).expanduser() / dataset
        self.dataset = dataset
        self._warned = False

    def key(self, file: Path, relpath: str, index: int | None, params: dict) -> str:
        """Hex digest of the entry for ``file`` (its size and mtime are read here) and framing ``params``."""
        stat = file.stat()
        fields = {"v": CACHE_VERSION, "dataset": self.dataset, "file": relpath, "index": index,
                  "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, **params}
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
        """The cached counts with this ``shape``, or None (missing, unreadable or of another shape)."""
        path = self.path(key)
        try:
            counts = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        return counts if counts.shape == shape else None

    def put(self, key: str, counts: np.ndarray) -> None:
        """Store ``counts`` atomically; an unwritable cache warns once and is then skipped."""
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.save(f, compact(counts), allow_pickle=False)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as err:
            if not self._warned:
                warnings.warn(f"frame cache {self.root} is not writable ({err}); frames are not cached",
                              stacklevel=3)
                self._warned = True
