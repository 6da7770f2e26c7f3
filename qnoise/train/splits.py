"""Dataset splits as in-memory tensors, and the dataset record a checkpoint stores.

Training holds a split in memory as ``X [N, T, ...]`` float32 (`qnoise.data.dataset_tensors`): fine for
digits and the N-MNIST subsets used here (800 x 8 x 2 x 34 x 34 floats = 59 MB).
"""

from __future__ import annotations

import warnings

import torch

from .budget import check_split
from .loop import Batches


def load_split(name: str, split: str, timesteps: int, root=None, options: dict | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """``(X [N, T, ...], y [N], info)`` of one split; ``info`` has ``input_shape``, ``num_classes``, ``samples``."""
    from ..data import check_data_options, dataset_tensors, load_dataset

    ds = load_dataset(name, split, root=root, timesteps=timesteps, **check_data_options(options, "data options"))
    check_split(name, split, len(ds), timesteps, ds.input_shape)  # before the frames are made
    x, y = dataset_tensors(ds)
    return x, y, {"input_shape": list(ds.input_shape), "num_classes": int(ds.num_classes), "samples": len(y)}


def optional_split(name: str, split: str | None, timesteps: int, root=None, options: dict | None = None):
    """`load_split`, or None (with a warning) when ``split`` is None or absent from this copy of the data."""
    if split is None:
        return None
    try:
        return load_split(name, split, timesteps, root, options)
    except FileNotFoundError as err:
        warnings.warn(f"{name} split {split!r} is not available, skipping it: {err}", stacklevel=2)
        return None


def batches(split, batch_size: int = 256) -> Batches:
    """Unshuffled `Batches` of a loaded split ``(X, y, info)``."""
    return Batches(split[0], split[1], batch_size)


def dataset_record(name: str, timesteps: int, options: dict | None, splits: dict, input_mode: str) -> dict:
    """What a checkpoint stores about its data: name, T, loader options, split sizes and the input mode
    (``"sequence"``: the T frames as they are, which an ANN averages into one step; ``"static"``: their mean
    repeated over the model's T steps, for SNNs converted from ANNs). The user's own data (a path) is recorded as
    ``user:<name>`` (`qnoise.data.user`): where data is read is the caller's choice, never a checkpoint's."""
    from ..data.user import is_user_data, record_name

    if is_user_data(name):
        name = record_name(name)
    return {"name": name, "timesteps": timesteps, "options": dict(options or {}), "splits": splits,
            "input_mode": input_mode}
