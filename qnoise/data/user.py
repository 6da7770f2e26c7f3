"""Data a user brings: an ``.npz`` of frames and labels, or a folder of event recordings with labels.

``load_dataset(PATH, ...)`` (and ``--data PATH`` on the command line) reads:

- an ``.npz`` file holding ``frames`` ``[N, T, ...]`` (a sequence per sample, used as it is: T must be the T
  asked for) or ``images`` ``[N, ...]`` (one static frame per sample, repeated to the T asked for), and
  ``labels`` (or ``y``, ``targets``) ``[N]`` (integers 0..K-1, K at most `MAX_CLASSES`; every split counts the
  classes of the whole file); the frames' size is checked against the memory budget from the file's header,
  before they are read;
- a folder of event recordings, one sample per file (suffixes in any case): N-MNIST ``.bin`` (34 x 34 x 2),
  ``.npy`` (a structured array with fields x, y, t, p, or an ``[E, 4]`` array of x, y, t, p), ``.npz`` (arrays
  x, y, t, p), AEDAT4 ``.aedat4`` (tonic's reader; needs the ``aedat`` package) or AER-DAT 2 ``.aedat``
  (DVS128); ``.npy`` / ``.npz`` values must be whole numbers (floats such as 3.0 are taken, 3.7 is refused; t in
  microseconds). Labels come from ``labels.csv`` in the folder (``file,label`` per line, paths relative to the
  folder, each once, labels in ASCII digits below `MAX_CLASSES`, a first line that is not a recording taken as
  a header) or, without one, from class subfolders (``folder/<class>/<file>``, classes sorted by name, each
  holding a recording). The sensor size ``(W, H, P)`` is N-MNIST's for ``.bin``, else ``sensor.json``
  (``{"sensor_size": [W, H, P]}``) in the folder, else read from the events (max x, y, p + 1 over all
  recordings). Frames are binned as for the named event datasets (`qnoise.data.frames.EventFrames`) and cached
  the same way (``$QNOISE_CACHE``).

A built-in dataset's name (``qnoise.data.DATASETS``: ``digits``, ``nmnist``, ...) given as a string always means
that dataset, even where the working directory holds a file or folder of that name: to read such a folder as your
data, give it as a path (``./digits``, an absolute path, or a ``pathlib.Path``).

The split is seeded and class-stratified (``val_fraction``, ``test_fraction``) as for datasets without a test
split. A checkpoint trained on such data records the name ``user:<file or folder name>``, never the path:
where data is read is the caller's choice, so ``evaluate``/``analyze`` need ``--data PATH`` again
(`UserDataNeeded`).
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..files import read_json
from ..limits import check_bytes
from .cache import FrameCache, default_cache_dir
from .events import BadEventFile
from .formats import EventSource, Recording, read_aedat2_dvs128, read_aedat4, read_nmnist
from .frames import EventFrames
from .split import split_indices, stratified_subset

PREFIX = "user:"
SUFFIXES = (".bin", ".npy", ".npz", ".aedat4", ".aedat")
_XYTP = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
MAX_CLASSES = 100_000  # labels are 0..MAX_CLASSES-1: class names are made for each, so a stray 2**40 is refused
_LABEL = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() takes '²', which int() refuses


class UserDataNeeded(FileNotFoundError):
    """A checkpoint names the user's own data (``user:...``), which only the caller can point at."""


def is_user_data(name) -> bool:
    """Whether ``name`` names the user's own data: an existing file or folder. A built-in dataset's name given as
    a string is never the user's data, whatever the working directory holds (module docstring)."""
    from . import DATASETS  # at call time: the package imports this module

    if not isinstance(name, (str, Path)) or (isinstance(name, str) and (name in DATASETS or name.startswith(PREFIX))):
        return False
    return Path(name).expanduser().exists()


def record_name(path) -> str:
    """What a checkpoint records for data read from ``path``: ``user:<name>``, never the path itself."""
    return PREFIX + Path(str(path)).name


def refuse_recorded(name: str) -> None:
    """Raise `UserDataNeeded` for a ``user:`` name (module docstring)."""
    raise UserDataNeeded(f"this model was trained on your own data {name[len(PREFIX):]!r}: pass its path with --data "
                         f"PATH (or --dataset PATH; Python: load_dataset(PATH, ...)); a checkpoint never says where "
                         f"data is read")


class FrameArrays(Dataset):
    """Frames from an ``.npz``: items ``(x [T, ...] float32, label)`` (module docstring); a static image is
    repeated to the ``timesteps`` asked for (a view, no copy), as digits' static frames are."""

    def __init__(self, x: np.ndarray, y: np.ndarray, name: str, split: str, static: bool, timesteps: int,
                 num_classes: int):
        self.x, self.y = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.as_tensor(y).long()
        self.name, self.split, self.static = name, split, static
        self.timesteps = int(timesteps) if static else int(self.x.shape[1])
        self.input_shape = tuple(self.x.shape[1:] if static else self.x.shape[2:])
        self.num_classes = num_classes  # from every label of the file, so all splits agree
        self.classes = tuple(str(c) for c in range(self.num_classes))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        x = self.x[i].unsqueeze(0).expand(self.timesteps, *self.x.shape[1:]) if self.static else self.x[i]
        return x, int(self.y[i])

    @property
    def targets(self) -> list[int]:
        return self.y.tolist()

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x.unsqueeze(1).expand(-1, self.timesteps, *self.x.shape[1:]) if self.static else self.x
        return x, self.y


FRAME_KEYS = {"frames": False, "images": True}  # key -> static (one frame per sample, repeated to T)
LABEL_KEYS = ("labels", "y", "targets")


def _member_header(archive: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """``(shape, dtype)`` of the array ``key`` of an ``.npz`` from its ``.npy`` header, without reading its data;
    None where the header is not one numpy's public readers take (format 3.0) and the array must be loaded."""
    with archive.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            return None
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    return shape, dtype


_UNREADABLE = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)  # not a zip, a pickle, a cut-off member


def _unreadable(path: Path, err: Exception, what: str = "") -> ValueError:
    return ValueError(f"{path}: not a readable .npz{what} ({type(err).__name__}: {str(err)[:120]})")


def _npz_keys(path: Path, keys: set[str]) -> tuple[str, str, bool]:
    """``(frames key, labels key, static)`` of an ``.npz`` of frames (module docstring)."""
    if "x" in keys and not keys & set(FRAME_KEYS):
        raise ValueError(f"{path} holds an array 'x': name it 'frames' [N, T, ...] (a sequence per sample) or "
                         f"'images' [N, ...] (one static frame per sample), so that its layout is known")
    fkey = next((k for k in FRAME_KEYS if k in keys), None)
    lkey = next((k for k in LABEL_KEYS if k in keys), None)
    if fkey is None or lkey is None:
        raise ValueError(f"{path} must hold 'frames' [N, T, ...] or 'images' [N, ...] and 'labels' [N]; it holds "
                         f"{sorted(keys)}")
    return fkey, lkey, FRAME_KEYS[fkey]


def _check_fits(path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype, split: str, kept: int) -> None:
    """Refuse an array whose reading would exceed the memory budget: the file's array as stored plus the
    ``kept`` samples of the split as float32."""
    per_sample = math.prod(shape[1:])
    stored = shape[0] * per_sample * dtype.itemsize if shape else 0
    check_bytes(stored + 4 * kept * per_sample,
                f"{path}: reading {key} {list(shape)} {dtype} and its {split} split ({kept} samples) as float32",
                "limit the samples (--limit), or store fewer per file")


def _npz_frames(path: Path, split: str, seed: int, val_fraction: float, test_fraction: float, limit,
                timesteps: int):
    """One split of an ``.npz`` of frames (module docstring). The frames' shape and type are read from the
    array's header and checked against the memory budget (`_check_fits`) before the array itself is read."""
    try:
        z = np.load(path, allow_pickle=False)
    except _UNREADABLE as err:
        raise _unreadable(path, err) from err
    if not isinstance(z, np.lib.npyio.NpzFile):  # a plain .npy saved under an .npz name
        raise ValueError(f"{path}: not a readable .npz (one array, not an archive of named arrays)")
    with z:
        fkey, lkey, static = _npz_keys(path, set(z.files))
        try:
            y = z[lkey]
            header = _member_header(z.zip, fkey)  # the archive numpy opened
        except _UNREADABLE as err:
            raise _unreadable(path, err, f" ({lkey})") from err
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
            raise ValueError(f"{path}: {lkey} must be integers 0..K-1 of shape [N], got dtype {y.dtype} and shape "
                             f"{y.shape}")
        if len(y) and y.max() >= MAX_CLASSES:
            raise ValueError(f"{path}: {lkey} holds the label {int(y.max())}; labels must be class indices "
                             f"0..{MAX_CLASSES - 1}")
        idx = split_indices(y, split, has_test=False, val_fraction=val_fraction, test_fraction=test_fraction,
                            seed=seed)
        idx = idx[stratified_subset(y[idx], limit, seed)]
        if header is not None:
            _check_fits(path, fkey, *header, split, len(idx))
        try:
            x = z[fkey]
        except _UNREADABLE as err:
            raise _unreadable(path, err, f" ({fkey})") from err
    if x.ndim < (2 if static else 3) or len(x) != len(y):
        raise ValueError(f"{path}: {fkey} of shape {x.shape} and {lkey} of shape {y.shape} do not match (expected "
                         f"{'[N, ...]' if static else '[N, T, ...]'} and [N])")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == np.bool_):
        raise ValueError(f"{path}: {fkey} must hold real numbers, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{path}: {fkey} holds non-finite values")
    if not static and x.shape[1] != timesteps:  # frames cannot be re-binned
        raise ValueError(f"{path}: {fkey} holds T = {x.shape[1]} frames per sample, but T = {timesteps} is asked "
                         f"for (frames are used as they are: give --timesteps {x.shape[1]}, or store events)")
    return FrameArrays(x[idx], y[idx], record_name(path), split, static, timesteps,
                       int(y.max()) + 1 if len(y) else 0)


def read_npy_events(rec: Recording) -> np.ndarray:
    """Events of a ``.npy`` / ``.npz`` file as tonic's (x, y, t, p) structured array. Float fields must hold
    whole numbers: casting 3.7 or a time in seconds to an integer would move events silently."""
    if rec.path.suffix.lower() == ".npz":
        with np.load(rec.path, allow_pickle=False) as z:
            missing = [k for k in "xytp" if k not in z.files]
            if missing:
                raise BadEventFile(rec.path, f"an events .npz needs arrays x, y, t, p; missing {missing}")
            cols = [z[k] for k in "xytp"]
    else:
        a = np.load(rec.path, allow_pickle=False)
        if a.dtype.names:
            missing = [k for k in "xytp" if k not in a.dtype.names]
            if missing:
                raise BadEventFile(rec.path, f"structured events need fields x, y, t, p; missing {missing}")
            cols = [a[k] for k in "xytp"]
        elif a.ndim == 2 and a.shape[1] == 4:
            cols = [a[:, i] for i in range(4)]
        else:
            raise BadEventFile(rec.path, f"expected structured (x, y, t, p) events or an [E, 4] array, got shape "
                                         f"{a.shape}")
    out = np.empty(len(cols[0]), dtype=_XYTP)
    for k, c in zip("xytp", cols, strict=True):
        whole = (c == np.round(c)) & (np.abs(c) < 2.0**63) if np.issubdtype(c.dtype, np.floating) else None
        if whole is not None and not whole.all():
            raise BadEventFile(rec.path, f"field {k} holds {float(c[~whole][0])}, not a whole number; events need "
                                         f"integer x, y, p and t (in microseconds, not seconds)")
        out[k] = c
    return out


_READERS = {".bin": read_nmnist, ".npy": read_npy_events, ".npz": read_npy_events, ".aedat4": read_aedat4,
            ".aedat": read_aedat2_dvs128}


def _inside(folder: Path, rel: str, labels_file: Path) -> Path:
    path = (folder / rel).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise FileNotFoundError(f"{labels_file}: {rel!r} is not a file inside {folder}")
    return path


def list_recordings(folder: Path) -> tuple[list[Recording], tuple[str, ...]]:
    """Recordings and class names of a user folder (``labels.csv``, else class subfolders).

    The first row of ``labels.csv`` is a header only when it is not a recording (its label is not an integer and
    its first field names no file in the folder); any other row is checked. Every class subfolder must hold a
    recording: an empty one (or a stray ``__MACOSX``) would add a class silently."""
    labels_file = folder / "labels.csv"
    if labels_file.is_file():
        rows, seen, first = [], set(), True
        with labels_file.open(newline="") as f:
            for i, row in enumerate(csv.reader(f)):
                if not row:
                    continue  # blank line
                header = first and not _LABEL.fullmatch(row[-1].strip().lstrip("-"))
                first = False
                if header and not (folder / row[0].strip()).is_file():
                    continue  # a header: not a recording
                if len(row) != 2 or not _LABEL.fullmatch(row[1].strip()):
                    raise ValueError(f"{labels_file} line {i + 1}: expected 'file,label' with an integer label "
                                     f"(digits 0-9), got {row!r:.80}")
                digits = row[1].strip().lstrip("0") or "0"  # int() refuses strings of over 4300 digits
                if len(digits) > len(str(MAX_CLASSES)) or int(digits) >= MAX_CLASSES:
                    raise ValueError(f"{labels_file} line {i + 1}: label {digits:.20} is too large; labels must be "
                                     f"class indices 0..{MAX_CLASSES - 1}")
                path = _inside(folder, row[0].strip(), labels_file)
                if path.suffix.lower() not in SUFFIXES:
                    raise ValueError(f"{labels_file} line {i + 1}: {row[0].strip()} is not a recording "
                                     f"({', '.join(SUFFIXES)})")
                if path in seen:  # a file in two splits, or with two labels
                    raise ValueError(f"{labels_file} line {i + 1}: {row[0].strip()} is listed twice")
                seen.add(path)
                rows.append((path, int(digits)))
        if not rows:
            raise ValueError(f"{labels_file} lists no recordings")
        classes = tuple(str(c) for c in range(max(r[1] for r in rows) + 1))
        return [Recording(p, y) for p, y in rows], classes
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise FileNotFoundError(f"{folder} has neither labels.csv nor class subfolders (folder/<class>/<file>)")
    per_class = [[Recording(f, label) for f in sorted(sub.iterdir()) if f.is_file() and f.suffix.lower() in SUFFIXES]
                 for label, sub in enumerate(subfolders)]
    recs = [r for found in per_class for r in found]
    if not recs:
        raise FileNotFoundError(f"{folder}: no recordings ({', '.join(SUFFIXES)}) in its class subfolders")
    empty = [sub.name for sub, found in zip(subfolders, per_class, strict=True) if not found]
    if empty:
        raise ValueError(f"{folder}: class subfolder {empty[0]!r} holds no recordings ({', '.join(SUFFIXES)}); "
                         f"every subfolder is a class: add its recordings or move it out")
    if len(recs) and len(subfolders) == 1:
        raise ValueError(f"{folder} has one class subfolder ({subfolders[0].name}); point --data at the folder "
                         f"that holds one subfolder per class")
    return recs, tuple(p.name for p in subfolders)


def _sensor_size(folder: Path, recs: list[Recording]) -> tuple[int, int, int]:
    suffixes = {r.path.suffix.lower() for r in recs}
    if len(suffixes) > 1:
        raise ValueError(f"{folder} mixes recording formats {sorted(suffixes)}; use one")
    meta = folder / "sensor.json"
    if meta.is_file():
        size = read_json(meta).get("sensor_size")  # errors name the file (not JSON, not an object)
        if not (isinstance(size, list) and len(size) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise ValueError(f"{meta}: sensor_size must be [W, H, P] of positive integers (as in "
                             f'{{"sensor_size": [34, 34, 2]}}), got {size!r:.80}')
        return tuple(size)
    if suffixes == {".bin"}:
        return (34, 34, 2)
    top = np.zeros(3, dtype=np.int64)
    for rec in recs:
        try:
            ev = _READERS[rec.path.suffix.lower()](rec)
        except BadEventFile:
            raise
        except Exception as err:  # noqa: BLE001 - numpy's and the readers' own errors: name the file
            raise BadEventFile(rec.path, f"could not be read while finding the sensor size ({err})") from err
        if len(ev):
            top = np.maximum(top, [int(ev["x"].max()), int(ev["y"].max()), int(ev["p"].max())])
    return tuple(int(v) + 1 for v in top)


def load_user_data(path, split: str, timesteps: int, *, seed: int = 0, val_fraction: float = 0.2,
                   test_fraction: float = 0.2, limit: int | None = None, cache: bool = True, cache_dir=None,
                   downsample: int = 1, duration_us: float | None = None, clip: float | None = None,
                   skip_bad: bool = False, **unused):
    """One split of the user's data at ``path`` (module docstring), as ``load_dataset`` returns it."""
    if unused.get("encoding") not in (None, "frames"):
        raise ValueError(f"encoding={unused['encoding']!r} applies to digits only")
    path = Path(str(path)).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise ValueError(f"{path}: a data file must be an .npz of frames and labels (or give a folder of event "
                             f"recordings)")
        return _npz_frames(path, split, seed, val_fraction, test_fraction, limit, timesteps)
    recs, classes = list_recordings(path)
    sensor = _sensor_size(path, recs)
    labels = [r.label for r in recs]
    idx = split_indices(labels, split, has_test=False, val_fraction=val_fraction, test_fraction=test_fraction,
                        seed=seed)
    keep = idx[stratified_subset(np.asarray(labels)[idx], limit, seed)]
    kind = recs[0].path.suffix.lower()
    source = EventSource(name=record_name(path), title=f"your data {path.name}", folder=path.name,
                         sensor_size=sensor, parts={"all": "."}, layout=f"<class>/*{kind} or labels.csv",
                         list_part=lambda part: list_recordings(part), read=_READERS[kind], classes=classes)
    tag = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]  # two folders of one name never share frames
    frame_cache = FrameCache(cache_dir if cache_dir is not None else default_cache_dir(),
                             f"user-{path.name}-{tag}") if cache else None
    return EventFrames(source, [recs[i] for i in keep], classes=classes, location=path, split=split,
                       timesteps=timesteps, cache=frame_cache, downsample=downsample, duration_us=duration_us,
                       clip=clip, skip_bad=skip_bad)
