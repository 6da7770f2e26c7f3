"""Checkpoint to checkpoint: convert a quantized ANN, optionally fine-tune layer-wise, evaluate, save.

The SNN checkpoint records ``timesteps = 2^b - 1``, the ANN's dataset with ``input_mode = "static"`` (its
mean input repeated over T steps), metrics of both networks (``ann_<split>_accuracy``,
``<split>_accuracy``), the fine-tuning report as history and ``conversion`` (source, options).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..device import resolve_device
from ..io import check_output_folder, load_checkpoint, read_checkpoint_config, save_checkpoint, value_problems
from .convert import convert_to_snn, timesteps_for
from .evaluation import data_settings, evaluate_model
from .finetune import layerwise_finetune
from .loop import Batches
from .splits import batches, optional_split


def convert_checkpoint(ann_path: str | Path, out: str | Path, signed: bool = False, finetune_epochs: int = 0,
                       finetune_lr: float = 1e-3, force: bool = False, data_root=None, device: str = "auto",
                       seed: int = 0, progress: bool = True, batch_size: int = 64, source: str | None = None,
                       ) -> nn.Module:
    """Convert the ANN checkpoint at ``ann_path`` into an SNN checkpoint at ``out``; returns the SNN.

    ``source`` is what the checkpoint records as its origin (default: ``ann_path``).
    """
    check_output_folder(out, source=ann_path)  # before any work: saving into it must not fail at the end
    dev = resolve_device(device)
    ann = load_checkpoint(ann_path, dev)
    ann_doc = ann.qnoise_checkpoint
    snn = convert_to_snn(ann, signed=signed).to(dev)
    steps = timesteps_for(ann)
    s = data_settings(ann)
    training = ann_doc.get("training") or {}
    splits = {"train": training.get("train_split", "train"), "val": training.get("val_split", "val"),
              "test": training.get("test_split", "test")}
    needed = [k for k in splits if k != "train" or finetune_epochs > 0]
    loaded = {k: optional_split(s["name"], splits[k], s["timesteps"], data_root, s["options"]) if k in needed
              else None for k in splits}
    record = {**(ann_doc.get("dataset") or {}), "input_mode": "static"}
    snn.qnoise_checkpoint = {"dataset": record, "timesteps": steps}
    history = []
    if finetune_epochs > 0:
        train_split = loaded["train"]
        if train_split is None:
            raise ValueError(f"fine-tuning needs the training split of {s['name']}, which was not found")
        torch.manual_seed(seed)
        history = layerwise_finetune(
            snn, ann, Batches(train_split[0], train_split[1], batch_size, shuffle=True, seed=seed), steps,
            epochs=finetune_epochs, lr=finetune_lr, force=force, device=dev,
            eval_batches=batches(train_split), progress=progress)
    metrics = {}
    for key in ("val", "test"):
        data = loaded[key]
        if data is not None:
            metrics[f"ann_{key}_accuracy"] = evaluate_model(ann, data=data, device=dev)["accuracy"]
            r = evaluate_model(snn, data=data, device=dev)
            metrics[f"{key}_accuracy"], metrics[f"{key}_samples"] = r["accuracy"], r["samples"]
    conversion = {"source": source or str(ann_path), "signed": signed, "finetune_epochs": finetune_epochs,
                  "finetune_lr": finetune_lr, "force": force, "seed": seed, "act_bits": ann.qnoise_config["act_bits"],
                  "source_training": training}
    problems = value_problems(snn, snn.state_dict())
    if problems:  # an SNN that loading would refuse is not saved
        raise ValueError(f"the SNN converted from {ann_path} is not valid: " + "; ".join(problems[:5]))
    save_checkpoint(snn, out, dataset=record, timesteps=steps, history=history, metrics=metrics,
                    extra={"conversion": conversion})
    snn.qnoise_checkpoint = read_checkpoint_config(out)
    return snn.eval()
