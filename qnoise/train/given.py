"""Training data given in memory instead of by name: a torch ``Dataset``, tensors, or a dict of splits.

``train(config, out, data=...)`` takes, for the training split (val and test optional):

- a ``Dataset`` of ``(x [T, ...], label)`` items (``len`` and indexing; e.g. `qnoise.data.load_dataset` of a path);
- tensors ``(X [N, T, ...], y [N])`` (a static ``X [N, ...]`` is given as ``X.unsqueeze(1)``, one frame, and
  repeated to the run's T);
- ``{"train": ..., "val": ..., "test": ...}`` of either form.

Each split becomes the in-memory ``(X, y, info)`` that `qnoise.train.splits.load_split` returns, checked the same
way (memory budget, label range); the checkpoint records the data as ``user:<name>`` (``config.dataset``), never
where it came from.
"""

from __future__ import annotations

import torch

from ..data.user import MAX_CLASSES
from ..labels import class_indices
from .budget import check_split


def as_split(data, name: str, split: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """One split as ``(X [N, T, ...] float32, y [N] int64, info)``; ``ValueError`` naming what is wrong."""
    if isinstance(data, (tuple, list)) and len(data) in (2, 3) and torch.is_tensor(data[0]):
        x, y = data[0], class_indices(data[1], f"{name}/{split}")
    elif hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        n = len(data)
        if n == 0:
            raise ValueError(f"{name}/{split}: the dataset is empty")
        first = data[0][0]
        check_split(name, split, n, first.shape[0], tuple(first.shape[1:]))
        items = [data[i] for i in range(n)]
        x = torch.stack([torch.as_tensor(a) for a, _ in items])
        y = class_indices([b for _, b in items], f"{name}/{split}")
    else:
        raise TypeError(f"{name}/{split}: expected a Dataset of (x [T, ...], label) or tensors (X [N, T, ...], y [N]), "
                        f"got {type(data).__name__}")
    if x.dim() < 3 or y.dim() != 1 or len(x) != len(y):
        raise ValueError(f"{name}/{split}: X of shape {tuple(x.shape)} and y of shape {tuple(y.shape)} do not fit "
                         f"(expected [N, T, ...] and [N])")
    if y.dtype.is_floating_point or (len(y) and int(y.min()) < 0):
        raise ValueError(f"{name}/{split}: labels must be integers 0..K-1")
    if len(y) and int(y.max()) >= MAX_CLASSES:  # the model's output layer would get a unit per class
        raise ValueError(f"{name}/{split}: labels hold {int(y.max())}; labels must be class indices "
                         f"0..{MAX_CLASSES - 1}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}/{split}: X holds non-finite values")
    check_split(name, split, len(x), x.shape[1], tuple(x.shape[2:]))
    classes = int(getattr(data, "num_classes", 0) or (int(y.max()) + 1 if len(y) else 0))
    info = {"input_shape": list(x.shape[2:]), "num_classes": classes, "samples": len(y)}
    return x.float().contiguous(), y.long(), info


def at_timesteps(split: tuple, name: str, which: str, timesteps: int | None) -> tuple:
    """``split`` with T = ``timesteps`` steps: one static frame is repeated (a view), as digits' static frames
    are; another T is refused (frames cannot be re-binned), naming the split and both values."""
    x, y, info = split
    if timesteps is None or x.shape[1] == timesteps:
        return split
    if x.shape[1] == 1:
        return x.expand(-1, timesteps, *x.shape[2:]), y, info
    raise ValueError(f"{name}/{which}: X holds T = {x.shape[1]} steps per sample, but the run is configured for T = "
                     f"{timesteps} (frames are used as they are)")


def given_splits(data, name: str, timesteps: int | None = None):
    """``(train, val, test)`` splits from ``data`` (module docstring), each at ``timesteps`` steps
    (`at_timesteps`) and of one input shape; val and test may be None."""
    parts = data if isinstance(data, dict) else {"train": data}
    unknown = set(parts) - {"train", "val", "test"}
    if unknown or "train" not in parts:
        raise ValueError(f"data splits must be 'train' (required), 'val', 'test'; got {sorted(parts)}")
    out = [None if parts.get(k) is None else at_timesteps(as_split(parts[k], name, k), name, k, timesteps)
           for k in ("train", "val", "test")]
    shapes = {k: s[2]["input_shape"] for k, s in zip(("train", "val", "test"), out, strict=True) if s is not None}
    if len({tuple(v) for v in shapes.values()}) > 1:
        raise ValueError(f"{name}: the splits' input shapes differ ({shapes})")
    classes = max(s[2]["num_classes"] for s in out if s is not None)
    for s in out:
        if s is not None:
            s[2]["num_classes"] = classes
    return tuple(out)


def given_name(data, configured: str) -> str:
    """The name a checkpoint records for given data: ``user:<name>`` from the data's ``name``, else from the
    configured dataset name when it is not a named dataset, else ``user:data``."""
    from ..data import DATASETS
    from ..data.user import PREFIX, record_name

    name = getattr(data, "name", None) if not isinstance(data, dict) else getattr(data.get("train"), "name", None)
    if isinstance(name, str) and name.startswith(PREFIX):
        return name
    if name:
        return record_name(name)
    return record_name(configured) if configured not in DATASETS else PREFIX + "data"
