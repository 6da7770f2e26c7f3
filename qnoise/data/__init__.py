"""Datasets as T-step inputs: scikit-learn's digits and the event datasets tonic reads.

``load_dataset(name, split, ...)`` returns a torch ``Dataset`` of ``(x, label)``: ``x`` float32 ``[T, C, H, W]``
(images, event cameras) or ``[T, N]`` (SHD's N = 700 channels), ``label`` an int. Every dataset object has
``input_shape`` (``x.shape[1:]``), ``num_classes``, ``classes``, ``targets`` and ``timesteps``.

============  ==========================  =============  ===========================================
name          source                      input_shape    splits
============  ==========================  =============  ===========================================
digits        sklearn ``load_digits``     (1, 8, 8)      all split here: 1150 / 288 / 359
nmnist        N-MNIST (tonic ``NMNIST``)  (2, 34, 34)    Train -> train/val here; Test
dvsgesture    tonic ``DVSGesture``        (2, 128, 128)  ibmGestureTrain -> train/val here; ibmGestureTest
cifar10dvs    tonic ``CIFAR10DVS``        (2, 128, 128)  all split here
ncaltech101   tonic ``NCALTECH101``       (2, 180, 240)  all split here (classes: the folders found)
shd           tonic ``SHD``               (700,)         shd_train.h5 -> train/val here; shd_test.h5
============  ==========================  =============  ===========================================

Splits made here are stratified and seeded (``qnoise.data.split``): ``test`` is ``test_fraction`` of the whole
release (only where the release has no test set), ``val`` is ``val_fraction`` of what remains, ``train`` the rest.
With the defaults (0.2, 0.2, seed 0), nmnist-1k's 1000 training files give 800 train / 200 val.

Event data is read from ``root / <tonic class name>`` laid out as tonic extracts the release, full or partial; see
``qnoise.data.formats``. Nothing is downloaded unless ``download=True``. Frame values are event counts per time
bin, polarity and pixel, T equal bins from each recording's first event to its last, so a sample sums to its event
count: no normalisation (``clip=c`` caps counts at c; ``clip=1`` gives binary frames). Frames are cached under
``cache_dir`` (``qnoise.data.cache``). A bad file raises ``BadEventFile`` naming it; ``skip_bad=True`` drops them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from .cache import FrameCache, default_cache_dir
from .digits import ENCODINGS, DigitsDataset, digits_arrays
from .events import BadEventFile, events_to_frames
from .formats import SOURCES, EventSource
from .formats import download as tonic_download
from .frames import EventFrames
from . import user
from .split import SPLITS, split_indices, stratified_subset

DATASETS = ("digits", *SOURCES)

__all__ = ["DATASETS", "RECORDABLE_OPTIONS", "BadEventFile", "DigitsDataset", "EventFrames", "check_data_options",
           "collate_time_first", "dataset_tensors", "default_cache_dir", "default_data_root", "events_to_frames",
           "load_dataset"]

# The loader options a checkpoint (or --data-options) may carry, with the types each accepts. An allow-list:
# where data is read from (root), whether it is downloaded (download) and where frames are cached (cache_dir)
# are the caller's choice, never the choice of a file the caller merely opened.
RECORDABLE_OPTIONS: dict[str, tuple[type, ...]] = {
    "encoding": (str,), "cache": (bool,), "skip_bad": (bool,), "seed": (int,), "val_fraction": (int, float),
    "test_fraction": (int, float), "limit": (int, type(None)), "downsample": (int,),
    "duration_us": (int, float, type(None)), "clip": (int, float, type(None)),
}
CALLER_ONLY_OPTIONS = ("root", "download", "cache_dir")


def check_data_options(options, where: str = "data options") -> dict:
    """Validate loader options against `RECORDABLE_OPTIONS` (names and value types); return them as a dict.

    Raises ``ValueError`` naming ``where``, the option and what was expected: ``root``, ``download`` and
    ``cache_dir`` are refused (they decide what is read, fetched or written, so only the caller sets them).
    """
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ValueError(f"{where} must be a JSON object of loader options, got {options!r:.100}")
    for key, value in options.items():
        if key in CALLER_ONLY_OPTIONS:
            raise ValueError(f"{where}: {key!r} is not allowed here (it decides where data is read, downloaded or "
                             f"cached: pass it to load_dataset / on the command line yourself); allowed: "
                             f"{', '.join(RECORDABLE_OPTIONS)}")
        if key not in RECORDABLE_OPTIONS:
            raise ValueError(f"{where}: unknown option {key!r}; allowed: {', '.join(RECORDABLE_OPTIONS)}")
        types = RECORDABLE_OPTIONS[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ValueError(f"{where}: {key}={value!r:.60} must be {names}")
        if key in ("clip", "duration_us"):
            try:
                check_positive(**{key: value})
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
    return dict(options)


def default_data_root() -> Path:
    """``$QNOISE_DATA`` if set, else ``~/.cache/qnoise/data`` (tonic's ``save_to``)."""
    env = os.environ.get("QNOISE_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "qnoise" / "data"


def load_dataset(name: str, split: str = "train", root=None, timesteps: int = 8, download: bool = False, *,
                 encoding: str | None = None, cache_dir=None, cache: bool = True, skip_bad: bool = False,
                 seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2, limit: int | None = None,
                 downsample: int = 1, duration_us: float | None = None, clip: float | None = None):
    """One split of a dataset as a torch ``Dataset`` of ``(x [T, ...] float32, label int)``.

    Args:
        name: one of ``DATASETS``, or the path of your own data (an ``.npz`` of frames and labels, or a folder
            of event recordings with labels: `qnoise.data.user`). A name in ``DATASETS`` always means that dataset,
            even where the working directory holds a file or folder of that name (give ``./digits`` for that).
        split: ``"train"``, ``"val"`` or ``"test"``.
        root: folder holding ``<tonic class name>/`` (e.g. ``root/NMNIST/Train/3/00012.bin``); default
            ``default_data_root()``. Unused by digits.
        timesteps: T, the number of time bins (frames) per sample, > 0.
        download: let tonic fetch the release into ``root`` first (skipped by tonic when it finds it complete).
        encoding: digits only: ``"static"`` (default) or ``"poisson"``.
        cache_dir: frame cache folder, default ``default_cache_dir()``; ``cache=False`` turns caching off.
        skip_bad: read every file up front and drop those that fail (``ds.skipped``, with a warning) instead of
            raising ``BadEventFile`` when a bad sample is read.
        seed: seeds the splits (and digits' Poisson spikes).
        val_fraction, test_fraction: split shares, see the module docstring.
        limit: keep a class-balanced, seeded subset of at most this many samples of the split.
        downsample: integer spatial factor (tonic ``Downsample``): 128 x 128 with 4 gives 32 x 32.
        duration_us: fixed bin width ``ceil(duration_us / T)`` us from each recording's first event (later events
            dropped); None: T bins spanning each recording from first to last event.
        clip: cap each frame value (an event count) at this value; None keeps counts.
    """
    if isinstance(name, str) and name.startswith(user.PREFIX):
        user.refuse_recorded(name)
    if user.is_user_data(name):
        _check_args("digits", split, timesteps, val_fraction, test_fraction, limit, downsample)
        check_positive(duration_us=duration_us, clip=clip)
        return user.load_user_data(name, split, timesteps, seed=seed, val_fraction=val_fraction,
                                   test_fraction=test_fraction, limit=limit, cache=cache, cache_dir=cache_dir,
                                   downsample=downsample, duration_us=duration_us, clip=clip, skip_bad=skip_bad,
                                   encoding=encoding)
    _check_args(name, split, timesteps, val_fraction, test_fraction, limit, downsample)
    check_positive(duration_us=duration_us, clip=clip)
    if name == "digits":
        return _load_digits(split, timesteps, encoding or "static", seed, val_fraction, test_fraction, limit)
    if encoding not in (None, "frames"):
        raise ValueError(f"encoding={encoding!r} applies to digits only; {name} gives event-count frames")
    source = SOURCES[name]
    root = Path(root).expanduser() if root is not None else default_data_root()
    if download:
        tonic_download(source, root, split)
    location = locate(source, root)
    recordings, classes = _list_split(source, location, split, seed, val_fraction, test_fraction)
    keep = stratified_subset([r.label for r in recordings], limit, seed)
    frame_cache = FrameCache(cache_dir if cache_dir is not None else default_cache_dir(), name) if cache else None
    return EventFrames(source, [recordings[i] for i in keep], classes=classes, location=location, split=split,
                       timesteps=timesteps, cache=frame_cache, downsample=downsample, duration_us=duration_us,
                       clip=clip, skip_bad=skip_bad)


def dataset_tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole dataset at once: ``X`` float32 ``[N, T, ...]`` (sample-major, as items) and ``y`` int64 ``[N]``.

    Uses ``ds.tensors()`` when the dataset has it (digits: vectorised), else stacks ``ds[i]``.
    """
    if hasattr(ds, "tensors"):
        return ds.tensors()
    items = [ds[i] for i in range(len(ds))]
    if not items:
        empty = torch.zeros(0, getattr(ds, "timesteps", 0), *getattr(ds, "input_shape", ()))
        return empty, torch.zeros(0, dtype=torch.long)
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.long)


def collate_time_first(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """DataLoader ``collate_fn``: items ``(x [T, ...], label)`` -> ``(X [T, B, ...], y [B])``, DESIGN.md's layout."""
    xs, ys = zip(*batch, strict=True)
    return torch.stack(xs, dim=1), torch.tensor(ys, dtype=torch.long)


# ------------------------------------------------------------------------------------------------ internals

def check_positive(**values) -> None:
    """Each of ``values`` (``clip``, ``duration_us``) is None or a finite number > 0; else a ValueError naming it
    (0 would give empty frames or no bins, a negative or NaN cap nonsense frames)."""
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0 or None, got {value!r}")


def _check_args(name, split, timesteps, val_fraction, test_fraction, limit, downsample) -> None:
    if name not in DATASETS:
        if isinstance(name, (str, Path)) and ("/" in str(name) or os.sep in str(name) or str(name).endswith(".npz")):
            raise FileNotFoundError(f"data {name}: no such file or folder (your own data: an .npz of frames and "
                                    f"labels, or a folder of event recordings)")
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}, or give the path of your "
                         f"own data (--data PATH: an .npz of frames and labels, or a folder of event recordings)")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps <= 0:
        raise ValueError(f"timesteps must be a positive integer (the number of time bins), got {timesteps!r}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    if split == "val" and val_fraction == 0:
        raise ValueError("split='val' needs val_fraction > 0")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if isinstance(downsample, bool) or not isinstance(downsample, int) or downsample < 1:
        raise ValueError(f"downsample must be an integer >= 1, got {downsample!r}")


def _load_digits(split, timesteps, encoding, seed, val_fraction, test_fraction, limit) -> DigitsDataset:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r} for digits; choose one of {', '.join(ENCODINGS)}")
    _, labels = digits_arrays()
    idx = split_indices(labels, split, has_test=False, val_fraction=val_fraction, test_fraction=test_fraction,
                        seed=seed)
    idx = idx[stratified_subset(labels[idx], limit, seed)]
    return DigitsDataset(idx, split=split, timesteps=timesteps, encoding=encoding, seed=seed)


def locate(source: EventSource, root: Path) -> Path:
    """The dataset's folder: ``root / <tonic class name>``, or ``root`` itself if it already is that folder."""
    nested = root / source.folder
    if nested.is_dir():
        return nested
    if root.is_dir() and (root.name == source.folder or any((root / p).exists() for p in source.parts.values() if p)):
        return root
    part = source.parts.get("train", source.parts.get("all"))
    raise FileNotFoundError(
        f"{source.title} not found: {nested} does not exist. Expected the release layout "
        f"{_expected(source, nested / part)}. Point --data-root (Python: root=) at a local copy.")


def _expected(source: EventSource, part: Path) -> str:
    return f"{part} ({source.layout})" if part.suffix == ".h5" else f"{part}/{source.layout}"


def _list_split(source: EventSource, location: Path, split: str, seed, val_fraction, test_fraction):
    """The recordings of ``split`` (listing the release part that holds it, then splitting it here)."""
    part = location / (source.parts["test" if split == "test" else "train"] if source.has_test else source.parts["all"])
    if not part.exists():
        held = sorted(p.name for p in location.iterdir()) or "nothing"
        raise FileNotFoundError(
            f"{source.title} {split} split not found: {part} does not exist (this copy holds {held}). Expected "
            f"{_expected(source, part)}; point --data-root (Python: root=) at a copy that holds it.")
    recordings, classes = source.list_part(part)
    if not recordings:
        raise FileNotFoundError(f"{source.title}: no recordings in {part}; expected {_expected(source, part)}")
    if split == "test" and source.has_test:
        return recordings, classes
    idx = split_indices([r.label for r in recordings], split, has_test=source.has_test,
                        val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    return [recordings[i] for i in idx], classes
