"""``EventFrames``: a torch Dataset of ``(frames, label)`` over the recordings of one split of an event dataset."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .cache import FrameCache
from .events import BadEventFile, check_events, events_to_frames, scaled_sensor
from .formats import EventSource, Recording


class EventFrames(Dataset):
    """Samples ``(x, label)``: ``x`` float32 ``[T, P, H, W]`` (``[T, N]`` for SHD's N channels), ``label`` int.

    ``x[t, p, h, w]`` counts the events of polarity ``p`` at pixel ``(h, w)`` in time bin ``t`` of T equal bins
    from the recording's first event to its last (``duration_us`` fixes the bin width instead), so
    ``x.sum()`` is the recording's event count. No normalisation, except ``clip``: counts above it are set to it
    (``clip=1`` gives binary spike frames). Frames are read from ``cache`` when present.

    Attributes: ``input_shape`` (shape of ``x`` without T), ``num_classes``, ``classes``, ``targets`` (labels in
    order), ``recordings``, ``timesteps``, ``skipped`` (``(path, reason)`` of files dropped by ``skip_bad``).
    """

    def __init__(self, source: EventSource, recordings: list[Recording], *, classes: tuple[str, ...],
                 location: Path, split: str, timesteps: int, cache: FrameCache | None = None,
                 downsample: int = 1, duration_us: float | None = None, clip: float | None = None,
                 skip_bad: bool = False):
        self.source = source
        self.name = source.name
        self.location = Path(location)
        self.split = split
        self.timesteps = timesteps
        self.classes = tuple(classes)
        self.num_classes = len(self.classes)
        self.cache = cache
        self.downsample = downsample
        self.duration_us = duration_us
        self.clip = clip
        self.sensor_size = scaled_sensor(source.sensor_size, downsample)
        w, h, p = self.sensor_size
        self.input_shape = (p, h, w) if source.has_y else (p * w,)
        self.recordings = list(recordings)
        self.skipped: list[tuple[Path, str]] = []
        if skip_bad:
            self._drop_bad_files()

    def __len__(self) -> int:
        return len(self.recordings)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.counts(i).astype(np.float32)).reshape(self.timesteps, *self.input_shape)
        if self.clip is not None:
            x = x.clamp_(max=self.clip)
        return x, self.recordings[i].label

    def __repr__(self) -> str:
        return (f"EventFrames({self.source.title}, split={self.split!r}, samples={len(self)}, "
                f"timesteps={self.timesteps}, input_shape={self.input_shape}, location={str(self.location)!r})")

    @property
    def targets(self) -> list[int]:
        return [r.label for r in self.recordings]

    def counts(self, i: int) -> np.ndarray:
        """Integer event counts of sample ``i``, ``[T, P, H, W]`` or ``[T, P, W]``; raises ``BadEventFile``."""
        rec = self.recordings[i]
        w, _, p = self.sensor_size
        shape = (self.timesteps, *self.input_shape) if self.source.has_y else (self.timesteps, p, w)
        key = self.cache.key(rec.path, self._relpath(rec), rec.index, self._params()) if self.cache else None
        if key is not None and (hit := self.cache.get(key, shape)) is not None:
            return hit
        events = self._read(rec)
        counts = events_to_frames(events, self.source.sensor_size, self.timesteps, self.duration_us,
                                  self.downsample)
        if key is not None:
            self.cache.put(key, counts)
        return counts

    def _read(self, rec: Recording) -> np.ndarray:
        """Events of ``rec`` from the source's reader, checked; any failure is a ``BadEventFile`` naming it."""
        try:
            events = self.source.read(rec)
            check_events(events, self.source.sensor_size, rec.path)
        except ImportError:
            raise
        except BadEventFile as err:
            if rec.index is None:
                raise
            raise BadEventFile(rec.path, f"sample {rec.index}: {err.reason}") from err
        except Exception as err:  # a reader choking on a malformed file: name the file and the reader's words
            sample = "" if rec.index is None else f"sample {rec.index}: "
            raise BadEventFile(rec.path, f"{sample}could not be read as {self.source.title} "
                                         f"({type(err).__name__}: {err})") from err
        return events

    def _relpath(self, rec: Recording) -> str:
        try:
            return rec.path.relative_to(self.location).as_posix()
        except ValueError:
            return rec.path.as_posix()

    def _params(self) -> dict:
        return {"timesteps": self.timesteps, "sensor_size": list(self.source.sensor_size),
                "downsample": self.downsample, "duration_us": self.duration_us,
                "binning": "tonic.ToFrame(time_window) from the first event"}

    def _drop_bad_files(self) -> None:
        """Read every sample once (filling the cache); drop and record those that raise ``BadEventFile``."""
        good = []
        for i, rec in enumerate(self.recordings):
            try:
                self.counts(i)
                good.append(rec)
            except BadEventFile as err:
                self.skipped.append((err.path, err.reason))
        if self.skipped:
            path, reason = self.skipped[0]
            warnings.warn(f"{self.source.title} {self.split}: skipped {len(self.skipped)} of {len(self.recordings)} "
                          f"bad event files (first: {path}: {reason}); the list is in .skipped", stacklevel=4)
        self.recordings = good
