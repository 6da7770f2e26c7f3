"""Accuracy with its uncertainty: per class, with the sample count and a Wilson interval on every number.

- `predictions`: the class an SNN predicts for each sample after T steps (argmax of the readout summed over
  the steps, the probe's definition of ``accuracy``), under a temporary configuration (`qnoise.probe.configured`).
- `class_accuracy`: per class, the samples, the correct ones, the accuracy and its Wilson interval
  (`qnoise.metrics.wilson_interval`), plus an ``"all"`` row.
- `accuracy_interval`: the interval of an accuracy measured on ``n`` samples (e.g. a results table's).
- `shared_errors`: which samples several runs (seeds, bit widths) get wrong, and how many of them: samples
  wrong in every run bound what a recipe change can gain on that split (``ceiling``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from .allocator import recycle_large_allocations
from .labels import check_classes
from .metrics import predicted_class, wilson_interval

ALL = "all"


def accuracy_interval(accuracy: float, samples: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson interval of an accuracy measured on ``samples`` samples (``accuracy * samples`` rounded to the
    count of correct samples it stands for)."""
    if not samples or samples <= 0 or accuracy is None or not math.isfinite(float(accuracy)):
        return (math.nan, math.nan)
    correct = int(round(float(accuracy) * samples))
    return wilson_interval(min(max(correct, 0), samples), int(samples), confidence)


def class_accuracy(predicted, labels, classes: int | None = None, confidence: float = 0.95) -> pd.DataFrame:
    """One row per class (``0 .. classes - 1``; default: up to the largest label or prediction) and a last
    row ``class = "all"``: ``samples``, ``correct``, ``accuracy`` (nan for a class without samples) and the
    Wilson interval ``low``, ``high`` at ``confidence``."""
    p = np.asarray(predicted).astype(np.int64).ravel()
    y = np.asarray(labels).astype(np.int64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"predictions and labels differ in length: {p.size} vs {y.size}")
    if y.size and (y.min() < 0 or p.min() < 0):
        raise ValueError("classes are numbered from 0")
    k = int(classes) if classes is not None else int(max(y.max(initial=-1), p.max(initial=-1)) + 1)
    rows = []
    for c in range(k):
        mask = y == c
        n, ok = int(mask.sum()), int((p[mask] == c).sum())
        rows.append((str(c), n, ok))
    rows.append((ALL, int(y.size), int((p == y).sum())))
    out = pd.DataFrame(rows, columns=["class", "samples", "correct"])
    out["accuracy"] = [ok / n if n else math.nan for ok, n in zip(out["correct"], out["samples"], strict=True)]
    bounds = [wilson_interval(ok, n, confidence) for ok, n in zip(out["correct"], out["samples"], strict=True)]
    out["low"] = [b[0] for b in bounds]
    out["high"] = [b[1] for b in bounds]
    return out


def predictions(model: nn.Module, data, timesteps: int | None = None, *, batch_size: int = 64, setting=None,
                device="cpu", **fields) -> tuple[np.ndarray, np.ndarray]:
    """``(predicted, labels)`` of an SNN on labelled data (any form `qnoise.probe.analyze` takes), fed the
    way its checkpoint says, under a temporary configuration (a `qnoise.probe.Setting` or its fields:
    ``weight_bits``, ``state_bits``, ``neuron``, ``rounding``); the class is the argmax of the readout
    summed over the T steps in step order (`qnoise.metrics.predicted_class`), as the probe's ``accuracy``."""
    from .probe import configured, iter_batches
    from .probe.inputs import model_dtype
    from .train.evaluation import data_plan

    recycle_large_allocations()  # freed step tensors reused (qnoise.allocator)
    ckpt = getattr(model, "qnoise_checkpoint", {}) or {}
    static, steps, _ = data_plan(ckpt, timesteps, None)
    preds, labels = [], []
    with torch.no_grad(), configured(model, setting, **fields):
        for x, y in iter_batches(data, batch_size, None, steps, static, model_dtype(model)):
            if y is None:
                raise ValueError("predictions need labelled data")
            out = model(x.to(device))
            check_classes(torch.as_tensor(y), out.shape[-1])
            preds.append(predicted_class(out).cpu())
            labels.append(torch.as_tensor(y).cpu())
    if not preds:
        raise ValueError("no data")
    return torch.cat(preds).numpy(), torch.cat(labels).numpy()


def shared_errors(predicted_by_run: dict, labels) -> pd.DataFrame:
    """The samples at least one run gets wrong: one row per sample index, with its ``label``, ``wrong_in``
    (how many of the runs miss it), ``runs`` (how many runs there are), ``most_predicted`` (the wrong class
    those runs predict most often; the smallest on a tie) and ``missed_by`` (the names of those runs, sorted),
    sorted by ``wrong_in`` (most first), then index. ``predicted_by_run``: ``{run name: predicted classes}``,
    each in the order of ``labels``."""
    y = np.asarray(labels).astype(np.int64).ravel()
    if not predicted_by_run:
        raise ValueError("shared_errors needs the predictions of at least one run")
    wrong: dict[int, list[tuple[str, int]]] = {}
    for name, predicted in predicted_by_run.items():
        p = np.asarray(predicted).astype(np.int64).ravel()
        if p.shape != y.shape:
            raise ValueError(f"run {name!r}: {p.size} predictions for {y.size} labels")
        for i in np.flatnonzero(p != y):
            wrong.setdefault(int(i), []).append((str(name), int(p[i])))
    rows = []
    for i, misses in wrong.items():
        classes, counts = np.unique([c for _, c in misses], return_counts=True)
        rows.append((i, int(y[i]), len(misses), len(predicted_by_run), int(classes[np.argmax(counts)]),
                     ", ".join(sorted(n for n, _ in misses))))
    out = pd.DataFrame(rows, columns=["sample", "label", "wrong_in", "runs", "most_predicted", "missed_by"])
    return out.sort_values(["wrong_in", "sample"], ascending=[False, True], ignore_index=True)


def ceiling(errors: pd.DataFrame, samples: int) -> float:
    """The accuracy on ``samples`` samples if every sample `shared_errors` finds wrong in all runs stays wrong
    and every other sample is right: ``1 - (samples wrong in every run) / samples``."""
    if samples <= 0:
        raise ValueError(f"samples must be > 0, got {samples}")
    always = int((errors["wrong_in"] == errors["runs"]).sum()) if len(errors) else 0
    return 1.0 - always / samples
