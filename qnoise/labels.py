"""Labels as class indices: what every data path (training splits, analysed batches) accepts as a label."""

from __future__ import annotations

import numpy as np
import torch


def class_indices(values, what: str) -> torch.Tensor:
    """``values`` (a tensor, a numeric array, or a sequence of integers, bools or one-element integer tensors)
    as a tensor; class names and other values are refused naming ``what`` and the first value that is not an
    integer. A tensor or numeric array is taken as it is (its type is checked where it is used)."""
    if torch.is_tensor(values) or (isinstance(values, np.ndarray) and values.dtype.kind in "biuf"):
        return torch.as_tensor(values)
    try:
        return torch.tensor([_index(v) for v in values], dtype=torch.long)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what}: labels must be class indices 0..K-1 ({err})") from err


def check_classes(labels: torch.Tensor, classes: int, what: str = "labels") -> None:
    """Refuse labels outside ``0..classes-1`` (a model with ``classes`` outputs can never predict them: its
    accuracy would be silently low), naming the first such label."""
    flat = labels.reshape(-1)
    bad = flat[(flat < 0) | (flat >= classes)]
    if bad.numel():
        raise ValueError(f"{what} must be class indices 0..{classes - 1} (the model has {classes} outputs); got "
                         f"{bad[0].item()}")


def _index(value) -> int:
    if not isinstance(value, (int, np.integer, np.bool_, torch.Tensor)) or \
            (torch.is_tensor(value) and (value.numel() != 1 or value.dtype.is_floating_point)):
        raise TypeError(f"got {value!r:.40} ({type(value).__name__})")
    return int(value)
