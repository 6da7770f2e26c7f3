"""The epoch checkpoint of a training run, ``<out>/last/``: the model checkpoint after the last completed
epoch (with the training config and history) plus ``optimizer.safetensors`` (optimizer tensors; its other
state in the file's metadata as JSON). A rerun with the same options continues after that epoch."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from ..files import file_inside
from ..io import (
    CONFIG_FILE,
    MODEL_FILE,
    load_checked,
    load_tensors,
    read_checkpoint_config,
    read_tensor_metadata,
    save_checkpoint,
    save_tensors,
)
from .config import TrainConfig, recorded

LAST = "last"
OPTIMIZER_FILE = "optimizer.safetensors"


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors ``state.<param>.<name>`` and a JSON-able rest."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{name}"] = value
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], rest: dict) -> None:
    state: dict = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for key, value in rest["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": rest["param_groups"]})


NEW, OLD = ".last.new", ".last.old"  # an epoch being written; the previous one while the new takes its place


def save_epoch(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig,
               history: list, dataset: dict) -> None:
    """Write ``<out>/last/`` as one unit: the epoch is written whole into ``.last.new/`` (optimizer, then the
    model checkpoint, whose config.json records both files' SHA-256), then takes the place of ``last/`` by two
    renames; a crash at any point leaves a complete ``last/`` (or ``.last.old/``, which `load_epoch` puts
    back), never files of two epochs under one config.json."""
    out = Path(out)
    last, new, old = out / LAST, out / NEW, out / OLD
    shutil.rmtree(new, ignore_errors=True)
    tensors, rest = optimizer_tensors(optimizer)
    sha = save_tensors(new / OPTIMIZER_FILE, tensors, metadata=rest)
    save_checkpoint(model, new, dataset=dataset, timesteps=config.timesteps, training=config.to_dict(),
                    history=history, extra={"optimizer": {"file": OPTIMIZER_FILE, "sha256": sha}})
    if last.exists():
        shutil.rmtree(old, ignore_errors=True)
        last.rename(old)
    new.rename(last)
    shutil.rmtree(old, ignore_errors=True)


def _recover(out: Path) -> None:
    """A crash between `save_epoch`'s two renames left ``.last.old/`` and no ``last/``: put it back."""
    last, old = out / LAST, out / OLD
    if not last.exists() and (old / CONFIG_FILE).is_file():
        old.rename(last)


def load_epoch(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig) -> list | None:
    """Restore model and optimizer from ``<out>/last/`` and return the history; None when there is none.

    Raises ``ValueError`` when the saved run used other options (naming them), as continuing it would mix
    two runs.
    """
    _recover(Path(out))
    last = Path(out) / LAST
    if not (last / CONFIG_FILE).is_file():
        return None
    doc = read_checkpoint_config(last)
    saved = recorded(doc, last / CONFIG_FILE)
    diff = config.differences(saved)
    if diff:
        shown = ", ".join(f"{k}: {b!r} there, {a!r} now" for k, (a, b) in sorted(diff.items()))
        raise ValueError(f"{out} holds a run with other options ({shown}); use another --out, or delete {last} "
                         f"to start over")
    record = doc.get("optimizer")
    if not isinstance(record, dict):
        raise ValueError(f"{last / CONFIG_FILE} has no 'optimizer' record; delete {last} to start over")
    model_file = file_inside(last, doc["tensors"].get("file", MODEL_FILE), f"{last / CONFIG_FILE}: tensors.file")
    load_checked(model, model_file, doc["tensors"].get("sha256"), remedy=f"delete {last} to start over")
    opt_path = file_inside(last, record.get("file"), f"{last / CONFIG_FILE}: optimizer.file")
    restore_optimizer(optimizer, load_tensors(opt_path, record.get("sha256")), read_tensor_metadata(opt_path))
    return list(doc.get("history") or [])
