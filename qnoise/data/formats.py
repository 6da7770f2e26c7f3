"""The event datasets as released: where their files lie, how tonic reads them, their sensors and classes.

Each ``EventSource`` describes one dataset laid out as tonic extracts it under ``root / <tonic class name>``
(``root`` is what tonic calls ``save_to``). qnoise lists the files itself, so a partial copy reads fine (tonic
1.7 first checks for the archive and a full file count, and downloads when either is missing), and reads each
file with tonic's own reader (``tonic.io``) or, where tonic reads inside its dataset class, with the same steps.
Sensor sizes ``(W, H, P)`` and class lists are tonic's (tests check them against tonic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .events import BadEventFile


@dataclass(frozen=True)
class Recording:
    """One sample: its file, its label, and its index inside the file for multi-sample files (SHD)."""

    path: Path
    label: int
    index: int | None = None


@dataclass(frozen=True)
class EventSource:
    """A dataset's release layout and readers. ``parts`` maps a split (or ``"all"``) to a path under the folder."""

    name: str
    title: str
    folder: str  # tonic's dataset class name, also its folder under root
    sensor_size: tuple[int, int, int]  # (W, H, P), tonic's order
    parts: dict[str, str]
    layout: str  # file pattern under a part, for messages
    list_part: Callable[[Path], tuple[list[Recording], tuple[str, ...]]]
    read: Callable[[Recording], np.ndarray]
    tonic_train_arg: bool = True  # tonic's class takes train=True/False
    has_y: bool = True
    classes: tuple[str, ...] = field(default=())

    @property
    def has_test(self) -> bool:
        return "test" in self.parts


# ---------------------------------------------------------------------------------------------- file checks

def check_record_size(path: Path, record_bytes: int, header_bytes: int = 0) -> None:
    """Raise ``BadEventFile`` if the file is empty or its body is not a whole number of event records."""
    size = path.stat().st_size
    if size == 0:
        raise BadEventFile(path, "empty file (0 bytes)")
    body = size - header_bytes
    if body % record_bytes:
        raise BadEventFile(path, f"{body} bytes of events is not a multiple of the {record_bytes}-byte event "
                                 f"record ({body % record_bytes} bytes left over): truncated or corrupt")


# ------------------------------------------------------------------------------------------ N-MNIST family

def list_by_class_folder(part: Path, suffix: str, classes: tuple[str, ...] | None = None,
                         label_of: Callable[[str], int] | None = None):
    """Files ``part/<class>/*<suffix>``, sorted; labels from ``label_of(folder)`` or the folder's rank."""
    folders = sorted(p for p in part.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = tuple(p.name for p in folders)
    recordings = []
    for folder in folders:
        label = label_of(folder.name) if label_of else classes.index(folder.name)
        recordings += [Recording(f, label) for f in sorted(folder.glob(f"*{suffix}")) if f.is_file()]
    return recordings, classes


def list_nmnist(part: Path):
    digits = tuple(str(d) for d in range(10))
    folders = [p for p in part.iterdir() if p.is_dir() and p.name not in digits and not p.name.startswith(".")]
    if folders:
        raise FileNotFoundError(f"{part} holds {folders[0].name!r}, not a digit folder 0-9 of N-MNIST")
    return list_by_class_folder(part, ".bin", digits, int)


def read_nmnist(rec: Recording) -> np.ndarray:
    """``tonic.io.read_mnist_file``: 5-byte events (x, y: 8 bits; polarity: 1 bit; t: 23 bits, us; big-endian)."""
    from tonic.io import read_mnist_file

    check_record_size(rec.path, 5)
    return read_mnist_file(str(rec.path), dtype=_XYTP)


def list_ncaltech101(part: Path):
    return list_by_class_folder(part, ".bin")


def read_ncaltech101(rec: Recording) -> np.ndarray:
    """As tonic's NCALTECH101: N-MNIST's file format, then x and y shifted to start at 0."""
    events = read_nmnist(rec)
    if len(events):
        events["x"] -= events["x"].min()
        events["y"] -= events["y"].min()
    return events


_XYTP = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])  # tonic's NMNIST / NCALTECH101 dtype

# ----------------------------------------------------------------------------------------------- DVSGesture

_GESTURE_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])


def list_dvsgesture(part: Path):
    """tonic's preprocessed release: ``user<NN>_<lighting>/<label>.npy``, one gesture per file."""
    recordings = []
    for folder in sorted(p for p in part.iterdir() if p.is_dir() and p.name.startswith("user")):
        for f in sorted(folder.glob("*.npy"), key=lambda f: (len(f.stem), f.stem)):
            if f.stem.isdigit():
                recordings.append(Recording(f, int(f.stem)))
    return recordings, DVSGESTURE.classes


def read_dvsgesture(rec: Recording) -> np.ndarray:
    """As tonic's DVSGesture: an ``[N, 4]`` array of (x, y, p, t in ms) -> events with t in us."""
    from numpy.lib import recfunctions

    check_record_size(rec.path, 1)
    try:
        events = np.load(rec.path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise BadEventFile(rec.path, f"not a readable .npy array ({err})") from err
    if events.ndim != 2 or events.shape[1] != 4:
        raise BadEventFile(rec.path, f"array of shape {events.shape}, expected [N, 4] columns (x, y, p, t in ms)")
    events = events.copy()
    events[:, 3] *= 1000  # ms -> us
    return recfunctions.unstructured_to_structured(events, _GESTURE_DTYPE)


# ----------------------------------------------------------------------------------------------- CIFAR10-DVS

_CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR_DTYPE = np.dtype([("t", np.uint64), ("x", np.uint16), ("y", np.uint16), ("p", bool)])


def list_cifar10dvs(part: Path):
    """``<class>/*.aedat4`` (tonic's release) or ``<class>/*.aedat`` (the original AER-DAT 2.0 release)."""
    recordings = []
    for suffix in ("*.aedat4", "*.aedat"):
        recordings += [Recording(f, _CIFAR_CLASSES.index(f.parent.name)) for f in part.rglob(suffix)
                       if f.parent.name in _CIFAR_CLASSES and f.is_file()]
    return sorted(recordings, key=lambda r: r.path), _CIFAR_CLASSES


def read_cifar10dvs(rec: Recording) -> np.ndarray:
    if rec.path.suffix == ".aedat4":
        return read_aedat4(rec)
    return read_aedat2_dvs128(rec)


def read_aedat4(rec: Recording) -> np.ndarray:
    """``tonic.io.read_aedat4`` (needs the ``aedat`` package), fields renamed to (t, x, y, p) as tonic does."""
    try:
        import aedat  # noqa: F401  (tonic.io.read_aedat4 imports it)
    except ImportError as err:
        raise ImportError(f"reading {rec.path} (AEDAT4) needs the 'aedat' package, which tonic uses and does "
                          "not install: pip install aedat") from err
    from tonic.io import read_aedat4

    check_record_size(rec.path, 1)
    events = read_aedat4(str(rec.path))
    events.dtype.names = ["t", "x", "y", "p"]
    return events


def read_aedat2_dvs128(rec: Recording) -> np.ndarray:
    """AER-DAT 2.0 from a DVS128 (the original CIFAR10-DVS release), read with tonic.io's AER-DAT helpers.

    Each event is a big-endian (address, timestamp in us) pair of uint32; the address is decoded as the
    dataset's own ``dat2mat.m`` does: ``p = 1 - bit 0`` (jAER's DVS128: bit 0 set is an OFF event; ``p = 1`` is
    ON, as N-MNIST's channel 1), ``x = 127 - bits 1..7``, ``y = bits 8..14``. SpikingJelly's reader has the same
    polarity and transposes the picture (its x, y are ``127 - bits 8..14``, ``127 - bits 1..7``): a model trained
    on its frames sees them rotated here. (tonic 1.7's ``read_dvs_128`` cannot be used: it unpacks the header
    reader's three results into two names.)
    """
    from tonic.io import get_aer_events_from_file, make_structured_array, read_aedat_header_from_file

    check_record_size(rec.path, 1)
    version, start, _ = read_aedat_header_from_file(str(rec.path))
    if not 2 <= version < 3:
        raise BadEventFile(rec.path, f"AER-DAT version {version}; the DVS128 reader expects 2.x")
    check_record_size(rec.path, 8, header_bytes=start)
    raw = get_aer_events_from_file(str(rec.path), version, start)
    address = raw["address"].astype(np.int64)
    x = 127 - ((address >> 1) & 0x7F)
    y = (address >> 8) & 0x7F
    return make_structured_array(raw["timeStamp"], x, y, 1 - (address & 1), dtype=_CIFAR_DTYPE)


# ------------------------------------------------------------------------------------------------------ SHD

_HSD_DTYPE = np.dtype([("t", int), ("x", int), ("p", int)])


def list_shd(h5_file: Path):
    """All samples of one SHD HDF5 file (``labels``; class names from ``extra/keys`` when present)."""
    import h5py

    try:
        with h5py.File(h5_file, "r") as f:
            labels = f["labels"][()]
            keys = f["extra/keys"][()] if "extra/keys" in f else ()
    except (OSError, KeyError) as err:
        raise BadEventFile(h5_file, f"not an SHD HDF5 file with a 'labels' dataset ({err})") from err
    names = tuple(k.decode() if isinstance(k, bytes) else str(k) for k in keys)
    classes = names if len(names) == len(SHD.classes) else SHD.classes
    return [Recording(h5_file, int(label), i) for i, label in enumerate(labels)], classes


def read_shd(rec: Recording) -> np.ndarray:
    """As tonic's HSD: ``spikes/times[i]`` (s) -> t (us, int), ``spikes/units[i]`` -> x, polarity 1."""
    import h5py
    from tonic.io import make_structured_array

    with h5py.File(rec.path, "r") as f:
        times = f["spikes/times"][rec.index]
        units = f["spikes/units"][rec.index]
    if len(times) != len(units):
        raise BadEventFile(rec.path, f"sample {rec.index}: {len(times)} spike times but {len(units)} units")
    return make_structured_array(times.astype(np.float64) * 1e6, units, 1, dtype=_HSD_DTYPE)


# ------------------------------------------------------------------------------------------------ the table

_DIGITS = tuple(f"{d} - {w}" for d, w in enumerate(
    "zero one two three four five six seven eight nine".split()))

NMNIST = EventSource("nmnist", "N-MNIST", "NMNIST", (34, 34, 2), {"train": "Train", "test": "Test"},
                     "<digit>/<index>.bin", list_nmnist, read_nmnist, classes=_DIGITS)
DVSGESTURE = EventSource(
    "dvsgesture", "DVS128 Gesture", "DVSGesture", (128, 128, 2),
    {"train": "ibmGestureTrain", "test": "ibmGestureTest"}, "user<NN>_<lighting>/<label>.npy",
    list_dvsgesture, read_dvsgesture,
    classes=("Hand clapping", "Right hand wave", "Left hand wave", "Right arm cw", "Right arm ccw",
             "Left arm cw", "Left arm ccw", "Arm roll", "Air drums", "Air guitar", "Other gestures"))
CIFAR10DVS = EventSource("cifar10dvs", "CIFAR10-DVS", "CIFAR10DVS", (128, 128, 2), {"all": ""},
                         "<class>/*.aedat4 (or the original <class>/*.aedat)", list_cifar10dvs, read_cifar10dvs,
                         tonic_train_arg=False, classes=_CIFAR_CLASSES)
NCALTECH101 = EventSource("ncaltech101", "N-Caltech101", "NCALTECH101", (240, 180, 2), {"all": "Caltech101"},
                          "<class>/image_<NNNN>.bin", list_ncaltech101, read_ncaltech101, tonic_train_arg=False)
SHD = EventSource("shd", "SHD", "SHD", (700, 1, 1), {"train": "shd_train.h5", "test": "shd_test.h5"},
                  "HDF5 with spikes/times, spikes/units, labels", list_shd, read_shd, has_y=False,
                  classes=tuple(str(i) for i in range(20)))

SOURCES = {s.name: s for s in (NMNIST, DVSGESTURE, CIFAR10DVS, NCALTECH101, SHD)}


def download(source: EventSource, root: Path, split: str) -> None:
    """Let tonic's own dataset class fetch and extract the release into ``root`` (it skips what it finds)."""
    import tonic.datasets

    cls = getattr(tonic.datasets, source.folder)
    kwargs = {"train": split != "test"} if source.tonic_train_arg else {}
    cls(save_to=str(root), **kwargs)
