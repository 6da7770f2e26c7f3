"""What `qnoise.analyze` and `qnoise.sensitivity` are given, made usable: models, checkpoints, data.

Data may be a ``DataLoader``, a ``Dataset`` of ``(x [T, ...], label)`` (as `qnoise.data.load_dataset`
returns), an ``(X, y)`` tensor pair with ``X`` sample-major ``[N, T, ...]`` (as
`qnoise.data.dataset_tensors` returns), or a dataset name. A DataLoader's batches are sample-major
``[B, T, ...]`` (default collate) unless its ``collate_fn`` is `qnoise.data.collate_time_first`. Frames of
another type than the model's (uint8 or bool events, float64 from numpy) are converted to the model's
(`model_dtype`): integers and bools exactly (up to 2^24 in float32), float64 rounded to float32.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data import collate_time_first, load_dataset
from ..io import load_checkpoint
from ..labels import class_indices
from ..time_mean import frame_mean


def _fit_time(x: torch.Tensor, timesteps: int | None, static: bool = False) -> torch.Tensor:
    """``[T_d, B, ...]`` -> ``[T, B, ...]``: a single frame (T_d = 1) repeats to T steps; ``static`` first
    replaces the frames by their mean (the input of a model converted from an ANN)."""
    if static:
        x = frame_mean(x)  # exact for repeated frames (`qnoise.time_mean`)
    if timesteps is None or x.shape[0] == timesteps:
        return x
    if x.shape[0] == 1:
        return x.expand(timesteps, *x.shape[1:])
    raise ValueError(f"the data has {x.shape[0]} frames per sample but timesteps={timesteps}; load the data "
                     f"with timesteps={timesteps} (event data cannot be re-binned here) or give static frames")


def iter_batches(data, batch_size: int = 64, limit: int | None = None, timesteps: int | None = None,
                 static: bool = False, dtype: torch.dtype | None = None,
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield ``(x [T, B, ...], y [B] or None)`` from any supported data form (module docstring), ``x`` of type
    ``dtype`` (None: as given); with ``static`` each sample's frames are replaced by their mean, repeated over
    the T steps."""
    seen = 0

    def cut(x, y, time_first):
        nonlocal seen
        b = x.shape[1] if time_first else x.shape[0]
        if limit is not None:
            b = min(b, limit - seen)
            x = x[:, :b] if time_first else x[:b]
            y = None if y is None else y[:b]
        if dtype is not None and x.dtype != dtype:
            x = x.to(dtype)
        # a NaN or infinity makes the sum non-finite (one fast pass); an overflowing sum of finite values is
        # told apart by the element-wise test, which only then runs
        if x.is_floating_point() and not math.isfinite(float(x.sum())) and not bool(torch.isfinite(x).all()):
            raise ValueError(f"the data's samples {seen}..{seen + b - 1} hold non-finite values (NaN or infinity)")
        seen += b
        return _fit_time(x if time_first else x.transpose(0, 1), timesteps, static), y

    if isinstance(data, DataLoader):
        time_first = data.collate_fn is collate_time_first
        for batch in data:
            if limit is not None and seen >= limit:
                return
            x, y = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
            yield cut(x, y, time_first)
        return
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        X, Y = data
        if Y is not None and len(Y) != len(X):
            raise ValueError(f"(X, y): X has {len(X)} samples but y has {len(Y)}; X must be sample-major "
                             f"[N, T, ...]")
        Y = None if Y is None else class_indices(Y, "(X, y): y")
    elif isinstance(data, Dataset) and callable(getattr(data, "tensors", None)):
        X, Y = data.tensors()
    elif isinstance(data, Dataset):
        n = len(data) if limit is None else min(len(data), limit)
        for start in range(0, n, batch_size):
            items = [data[i] for i in range(start, min(n, start + batch_size))]
            x = torch.stack([torch.as_tensor(it[0]) for it in items])
            y = class_indices([it[1] for it in items],
                              f"{type(data).__name__} items {start}..{start + len(items) - 1}")
            yield cut(x, y, False)
        return
    else:
        raise TypeError(f"data must be a DataLoader, a Dataset, an (X, y) tensor pair or a dataset name, got "
                        f"{type(data).__name__}")
    n = len(X) if limit is None else min(len(X), limit)
    for start in range(0, n, batch_size):
        yield cut(X[start:start + batch_size], None if Y is None else Y[start:start + batch_size], False)


def count_samples(data, limit: int | None = None) -> int | None:
    """Number of samples the batches will hold, when known (for progress bars)."""
    try:
        n = len(data[0]) if isinstance(data, (tuple, list)) else len(data.dataset if hasattr(data, "dataset")
                                                                      else data)
    except TypeError:
        return None
    return n if limit is None else min(n, limit)


def resolve_model(model, device: torch.device | None = None) -> tuple[nn.Module, str, dict]:
    """A model object, or a checkpoint directory loaded with `qnoise.io.load_checkpoint`; returns
    ``(model, name, checkpoint config or {})``."""
    if isinstance(model, nn.Module):
        cfg = getattr(model, "qnoise_checkpoint", {}) or {}
        arch = getattr(model, "qnoise_config", {}).get("arch") if hasattr(model, "qnoise_config") else None
        return model, arch or type(model).__name__, cfg
    if isinstance(model, (str, Path)):
        m = load_checkpoint(model, device or "cpu")
        m.qnoise_checkpoint_path = str(Path(model).resolve())
        return m, Path(model).resolve().name, getattr(m, "qnoise_checkpoint", {})
    raise TypeError(f"model must be an nn.Module or a checkpoint directory, got {type(model).__name__}")


def resolve_data(data, checkpoint_config: dict, bins: int | None, split: str, limit: int | None, root=None):
    """A dataset name is loaded with `qnoise.data.load_dataset` (``bins`` frames, else 8) with the loader
    options the checkpoint recorded for that dataset (read from ``root``, None: the default root; a name may also
    be the path of the user's own data, `qnoise.data.user`); anything else is returned as is. ``(data, name)``."""
    record = checkpoint_config.get("dataset") or {}
    if data is None:
        if not record.get("name"):
            raise ValueError("no data given and the checkpoint names no dataset")
        data = record["name"]
    if isinstance(data, str):
        options = dict(record.get("options") or {}) if record.get("name") == data else {}
        return load_dataset(data, split, root=root, timesteps=bins or 8, limit=limit, **options), data
    if isinstance(data, (tuple, list)):
        return data, "tensors"
    name = getattr(data, "name", None) or getattr(getattr(data, "dataset", None), "name", None)
    return data, str(name or type(data).__name__)


def source_reference(model: nn.Module, checkpoint_config: dict, device) -> nn.Module:
    """The ANN a converted checkpoint was made from (``conversion.source``), looked for by its folder name next to
    the checkpoint's own folder only: what a config.json records never sends loading anywhere else (pass
    ``reference=<ANN folder>`` for an ANN kept elsewhere)."""
    source = (checkpoint_config.get("conversion") or {}).get("source")
    if not source:
        raise ValueError("reference='source' needs a checkpoint converted from an ANN (config.json records no "
                         "conversion.source)")
    here = getattr(model, "qnoise_checkpoint_path", None)
    name = Path(str(source)).name
    if here and name not in ("", ".", "..") and (Path(here).parent / name / "config.json").is_file():
        return resolve_model(Path(here).parent / name, device)[0]
    where = f"next to {here}" if here else "(the model was not loaded from a checkpoint folder)"
    raise FileNotFoundError(f"the source ANN {name!r} of this checkpoint was not found {where}; pass "
                            f"reference=<ANN folder>")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The type a model computes in: its first floating-point parameter's (the default dtype without any)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model without any)."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")
