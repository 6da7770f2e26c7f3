"""Accuracy of a checkpointed model on a dataset split, fed the way its checkpoint says.

The checkpoint's ``dataset`` record gives the dataset, its loader options, the number of time bins and the
input mode: ``"sequence"`` (the T frames; an ANN averages them into one step) or ``"static"`` (their mean
repeated over the model's T steps: SNNs converted from ANNs). ``timesteps`` overrides T: the number of bins
for ``"sequence"``, the number of repeated steps for ``"static"``. `qnoise.probe` feeds models the same way.
"""

from __future__ import annotations

import torch
from torch import nn

from ..allocator import recycle_large_allocations
from ..limits import check_batch_size, check_timesteps
from .budget import fit_batch
from .loop import evaluate
from .splits import batches, load_split


def data_settings(model: nn.Module) -> dict:
    """``{"name", "timesteps", "options", "input_mode"}`` from ``model.qnoise_checkpoint`` (defaults if absent)."""
    doc = getattr(model, "qnoise_checkpoint", {}) or {}
    record = doc.get("dataset") or {}
    return {"name": record.get("name"), "timesteps": record.get("timesteps") or doc.get("timesteps"),
            "model_timesteps": doc.get("timesteps"), "options": record.get("options") or {},
            "input_mode": record.get("input_mode", "sequence")}


INPUT_MODES = ("sequence", "static")


def data_plan(checkpoint_config: dict, timesteps: int | None, input_mode: str | None) -> tuple[bool, int | None,
                                                                                                  int | None]:
    """``(static, steps, bins)``: how a checkpointed model is fed, here and by `qnoise.probe`.

    The checkpoint's dataset record gives the input mode: ``"sequence"`` (the data's T frames, T = steps =
    bins) or ``"static"`` (a model converted from an ANN: the mean of ``bins`` frames, repeated over the
    model's ``steps``). ``timesteps`` overrides the steps; ``input_mode`` overrides the record. None where
    nothing is recorded (the data's own frames are then used as they are).
    """
    if timesteps is not None:  # 0 is refused, not read as "the checkpoint's T"
        check_timesteps(timesteps)
    record = checkpoint_config.get("dataset") or {}
    mode = input_mode or record.get("input_mode") or "sequence"
    if mode not in INPUT_MODES:
        raise ValueError(f"input_mode={mode!r} is not one of {INPUT_MODES}")
    model_steps = checkpoint_config.get("timesteps")
    if mode == "static":
        return True, timesteps or model_steps, record.get("timesteps") or timesteps or model_steps
    steps = timesteps or record.get("timesteps") or model_steps
    return False, steps, steps


def evaluate_model(model: nn.Module, dataset: str | None = None, split: str = "test", timesteps: int | None = None,
                   root=None, device: str | torch.device = "cpu", batch_size: int = 256, data=None) -> dict:
    """``{"accuracy", "loss", "samples", "dataset", "split", "timesteps"}`` of ``model`` on one split.

    ``data`` may pass an already loaded split ``(X, y, info)`` (then ``dataset``/``split`` only label it).
    The batch is made smaller when a forward over T steps would not fit the memory budget (same numbers).
    """
    check_batch_size(batch_size)
    recycle_large_allocations()  # freed step tensors reused (qnoise.allocator)
    s = data_settings(model)
    name = dataset or s["name"]
    if name is None:
        raise ValueError("the checkpoint records no dataset; pass one (--dataset)")
    static, steps, bins = data_plan(getattr(model, "qnoise_checkpoint", {}) or {}, timesteps, None)
    steps = steps or 1
    if data is None:
        data = load_split(name, split, bins or 1, root, s["options"] if name == s["name"] else {})
    run_steps = 1 if model.qnoise_config.get("kind") == "ann" else steps  # an ANN sees the time average
    batch_size = fit_batch(model, run_steps, batch_size)
    r = evaluate(model, batches(data, batch_size), device, static=static, timesteps=steps)
    return {**r, "dataset": name, "split": split, "timesteps": steps}
