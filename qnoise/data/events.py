"""Event arrays -> frames, through tonic's transforms, and the checks that make a bad file fail loudly.

Events are tonic structured arrays with fields ``x`` (and ``y`` for cameras), ``t`` (microseconds) and ``p``
(polarity). Sensor sizes follow tonic: ``(W, H, P)``; frames follow tonic too: ``[T, P, H, W]`` (cameras) or
``[T, P, W]`` (``y``-less sensors such as SHD's 700 cochlea channels).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


class BadEventFile(ValueError):
    """An event file (or one sample of it) that cannot be turned into frames; ``path`` and ``reason`` say why."""

    def __init__(self, path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"bad event file {self.path}: {reason}")


def scaled_sensor(sensor_size: tuple[int, int, int], downsample: int) -> tuple[int, int, int]:
    """Sensor ``(W, H, P)`` after an integer spatial ``downsample`` (``H`` stays 1 on y-less sensors)."""
    w, h, p = sensor_size
    return (math.ceil(w / downsample), math.ceil(h / downsample) if h > 1 else 1, p)


def check_events(events: np.ndarray, sensor_size: tuple[int, int, int], path) -> None:
    """Raise ``BadEventFile`` naming ``path`` unless ``events`` is non-empty, time-ordered and inside the sensor.

    Time order (non-decreasing ``t``) is required because tonic's slicers locate bin edges by binary search.
    """
    if len(events) == 0:
        raise BadEventFile(path, "contains no events")
    t = events["t"]
    back = np.flatnonzero(t[1:] < t[:-1])
    if back.size:
        i = int(back[0]) + 1
        raise BadEventFile(path, f"timestamps decrease at event {i} (t={t[i]} us after t={t[i - 1]} us); "
                                 f"{back.size} such step(s)")
    w, h, p = sensor_size
    limits = [("x", w, "width"), ("p", p, "polarity count")]
    if "y" in events.dtype.names:
        limits.insert(1, ("y", h, "height"))
    for field, size, what in limits:
        values = events[field].astype(np.int64)
        out = np.flatnonzero((values < 0) | (values >= size))
        if field == "p" and p == 1:
            out = np.flatnonzero(values != values[0])  # tonic maps a single polarity to channel 0
        if out.size:
            i = int(out[0])
            raise BadEventFile(path, f"{field}={values[i]} at event {i} is outside the sensor's {what} {size} "
                                     f"(sensor W x H x P = {w} x {h} x {p}); {out.size} such event(s)")


def bin_width_us(events: np.ndarray, timesteps: int, duration_us: float | None = None):
    """Width of one of ``timesteps`` equal time bins starting at the first event, in microseconds.

    ``duration_us=None``: ``floor((t_last - t_first) / T) + 1``, the smallest whole width whose T bins hold every
    event. Otherwise ``ceil(duration_us / T)``: fixed bins; events at or after ``t_first + T * width`` are dropped.
    """
    if duration_us is not None:
        return math.ceil(duration_us / timesteps)
    t = events["t"]
    span = t[-1].item() - t[0].item()
    return int(span // timesteps) + 1


def events_to_frames(events: np.ndarray, sensor_size: tuple[int, int, int], timesteps: int,
                     duration_us: float | None = None, downsample: int = 1) -> np.ndarray:
    """Event counts per time bin, polarity and pixel: int16 ``[T, P, H, W]`` (``[T, P, W]`` without ``y``).

    Uses ``tonic.transforms.Downsample(spatial_factor=1/downsample)`` (when ``downsample > 1``) and then
    ``tonic.transforms.ToFrame(sensor_size, time_window=width, start_time=t_first, end_time=t_first + T*width)``
    with ``width = bin_width_us(...)``: T equal bins from the first event. Plain ``ToFrame(n_time_bins=T)`` is
    not used because it floors the bin width and leaves out the last event(s) of every recording; these bins
    keep every event, so ``frames.sum() == len(events)`` when ``duration_us`` is None.
    """
    from tonic.transforms import Downsample, ToFrame

    if downsample > 1:
        events = Downsample(spatial_factor=1.0 / downsample)(events)
    sensor = scaled_sensor(sensor_size, downsample)
    width = bin_width_us(events, timesteps, duration_us)
    start = events["t"][0].item()
    to_frame = ToFrame(sensor_size=sensor, time_window=width, start_time=start, end_time=start + timesteps * width)
    frames = to_frame(events.copy())  # ToFrame writes p = 0 in place on single-polarity sensors
    if frames.shape[0] != timesteps:  # guards the bin arithmetic above against a change in tonic
        raise RuntimeError(f"tonic ToFrame gave {frames.shape[0]} frames, expected {timesteps}")
    return frames
