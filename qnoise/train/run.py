"""A whole training run: data, model, QAT, epochs with resume, final evaluation, checkpoint in ``out``.

Per epoch e (0-based): lr = `cosine_lr` (times each parameter group's ``lr_scale``), sigmoid-sum temperature
= `temperature`, activation bits = `act_bits_at` (progressive ANN), RNG seeded with `epoch_seed` (shuffling
and augmentation; with ``augment="events"`` the training frames are re-binned from augmented events), then
BPTT over the training split, validation, and the epoch checkpoint ``out/last/``. The finished model is saved to
``out`` (``model.safetensors`` + ``config.json``) with history and metrics (``val_accuracy``,
``test_accuracy`` and sample counts where those splits exist).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from .. import parametrized
from ..allocator import recycle_large_allocations
from ..device import resolve_device
from ..io import CONFIG_FILE, check_output_folder, load_checkpoint, read_checkpoint_config, save_checkpoint
from ..models import apply_quantization, build_model, set_act_bits
from ..neurons import spiking_neurons
from ..quant import SigmoidSumQuantizer, remove_weight_quantization, set_temperature
from . import schedule
from .budget import check_training
from .config import TrainConfig, recorded
from .given import given_name, given_splits
from .loop import Batches, check_trainable, evaluate, train_epoch
from .resume import load_epoch, save_epoch
from .splits import batches, dataset_record, load_split, optional_split


def build_for(cfg: TrainConfig, input_shape, num_classes: int) -> nn.Module:
    """The model a `TrainConfig` trains, seeded with ``cfg.seed``, its quantization applied (QAT).

    With ``cfg.init`` the float model first takes the parameters and buffers of that checkpoint (same
    architecture; its own weight quantizers, if any, removed: their float weights are taken), and the
    quantizers are then initialised from those weights, as Quantization Networks start from a trained
    full-precision model."""
    torch.manual_seed(cfg.seed)
    quantization = cfg.quantization()
    if cfg.mode == "ann":
        model = build_model(cfg.model, input_shape, num_classes, kind="ann", act_bits=cfg.act_bits,
                            act_alpha=cfg.act_alpha, quantization=None if cfg.init else quantization,
                            **cfg.model_options)
    else:
        neuron = {"type": cfg.neuron, "threshold": cfg.threshold, "learn_threshold": cfg.learn_threshold,
                  "v_init": cfg.v_init, "surrogate": cfg.surrogate}
        model = build_model(cfg.model, input_shape, num_classes, kind="snn", neuron=neuron,
                            quantization=None if cfg.init else quantization, **cfg.model_options)
    if cfg.init:
        load_float_weights(model, cfg.init)
        if quantization:
            apply_quantization(model, quantization)
    return model


def load_float_weights(model: nn.Module, path: str | Path) -> None:
    """Copy the float parameters and buffers of the checkpoint at ``path`` into ``model`` (an unquantized
    model of the same architecture); names the first mismatch."""
    source = load_checkpoint(path)
    remove_weight_quantization(source)
    for _, m in spiking_neurons(source):
        if parametrize.is_parametrized(m, "raw_threshold"):
            parametrized.remove(m, "raw_threshold", leave_parametrized=False)
    state = source.state_dict()
    mine = model.state_dict()
    if set(state) != set(mine) or any(state[k].shape != mine[k].shape for k in mine):
        diff = sorted(set(state) ^ set(mine)) or [k for k in mine if state[k].shape != mine[k].shape]
        raise ValueError(f"--init {path}: its model differs from the one to train (first difference: {diff[0]}); "
                         f"give the same --model, --model-options, --mode and neuron options")
    model.load_state_dict(state)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay; with ``weight_decay=0`` it is Adam) over the model's parameters.

    Weight decay applies to weight matrices and kernels only (not biases, BN, thresholds). The sum-of-sigmoids
    quantizers' ``alpha``, ``beta`` and ``b_i`` form a group at ``quantizer_lr_scale`` times the learning rate,
    without decay (the authors' code trains them at 0.1 times the base rate). Each group's ``lr_scale`` is
    kept for the schedule."""
    quant = {id(p) for m in model.modules() if isinstance(m, SigmoidSumQuantizer) for p in m.parameters()}
    params = list(model.parameters())
    decay = [p for p in params if id(p) not in quant and p.dim() > 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
              {"params": [p for p in params if id(p) not in quant and p.dim() <= 1], "weight_decay": 0.0,
               "lr_scale": 1.0}]
    if quant:
        groups.append({"params": [p for p in params if id(p) in quant], "weight_decay": 0.0,
                       "lr_scale": cfg.quantizer_lr_scale})
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)


def event_augmentation(cfg: TrainConfig, steps: int):
    """``(AugmentedEvents, EventAugment)`` of the training split for ``augment="events"``, else ``(None, None)``."""
    if cfg.augment != "events":
        return None, None
    from ..data import load_dataset
    from ..data.augment import AugmentedEvents, EventAugment

    ds = load_dataset(cfg.dataset, cfg.train_split, root=cfg.data_root, timesteps=steps, **cfg.data_options)
    return AugmentedEvents(ds), EventAugment.from_dict(cfg.augment_options)


def check_schedule(out: Path, history: list[dict], cfg: TrainConfig) -> None:
    """A resumed run's completed epochs must have run on the schedule ``cfg`` gives them (the cosine learning
    rate and the progressive activation bits both depend on the number of epochs): else continuing would make
    a run no straight run of ``cfg.epochs`` is. Raises ``ValueError`` naming the epoch and both values."""
    for row in history:
        e = int(row["epoch"]) - 1
        lr = schedule.cosine_lr(e, cfg.epochs, cfg.lr)
        bits = schedule.act_bits_at(e, cfg.epochs, cfg.act_bits, cfg.progressive) if cfg.mode == "ann" else None
        problems = []
        if abs(float(row["lr"]) - lr) > 1e-12 * lr:
            problems.append(f"learning rate {float(row['lr']):.4g} there, {lr:.4g} now")
        if bits is not None and row.get("act_bits") != bits:
            problems.append(f"activation bits {row.get('act_bits')} there, {bits} now")
        if problems:
            raise ValueError(f"{out} holds {len(history)} epochs of a run whose schedule differs from epochs="
                             f"{cfg.epochs}'s at epoch {e + 1} ({'; '.join(problems)}): continuing it would not be "
                             f"a {cfg.epochs}-epoch run; give a new --out (--init {out} starts from its model)")


def epoch_line(row: dict, epochs: int) -> str:
    """One line per finished epoch for runs without a progress bar."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['loss']:.4f}", f"train {row['train_accuracy']:.4f}"]
    if "val_accuracy" in row:
        parts.append(f"val {row['val_accuracy']:.4f}")
    if "temperature" in row:
        parts.append(f"T_q {row['temperature']:g}")
    if "seconds" in row:
        parts.append(f"{row['seconds']:.1f} s")
    return "  ".join(parts)


def _final_metrics(model, val, test, device) -> dict:
    metrics = {}
    for name, split in (("val", val), ("test", test)):
        if split is not None:
            r = evaluate(model, batches(split), device)
            metrics[f"{name}_accuracy"], metrics[f"{name}_samples"] = r["accuracy"], r["samples"]
    return metrics


def train(config: TrainConfig | dict, out: str | Path, record_time: bool = True, data=None) -> nn.Module:
    """Train as ``config`` says and save to ``out``; rerunning continues after the last completed epoch.

    Returns the trained model (eval mode) with its checkpoint document at ``model.qnoise_checkpoint``.
    ``record_time=False`` leaves wall times out of the history (byte-identical reruns). ``data``: the splits in
    memory (a Dataset, tensors or a dict of splits, `qnoise.train.given`) instead of ``config.dataset`` by name.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    out = check_output_folder(out)  # before any work: saving into it must not fail at the end
    if (out / CONFIG_FILE).is_file():
        doc = read_checkpoint_config(out)
        done = recorded(doc, out / CONFIG_FILE)
        if not cfg.differences(done, ignore=("device", "progress", "data_root")):
            return load_checkpoint(out, cfg.device)
    device = resolve_device(cfg.device)
    recycle_large_allocations()
    steps = cfg.timesteps
    if data is None:
        train_split = load_split(cfg.dataset, cfg.train_split, steps, cfg.data_root, cfg.data_options)
        val = optional_split(cfg.dataset, cfg.val_split, steps, cfg.data_root, cfg.data_options)
        test = optional_split(cfg.dataset, cfg.test_split, steps, cfg.data_root, cfg.data_options)
    else:
        train_split, val, test = given_splits(data, given_name(data, cfg.dataset), steps)
    info = train_split[2]
    splits = {s: d[2]["samples"] for s, d in ((cfg.train_split, train_split), (cfg.val_split, val),
                                              (cfg.test_split, test)) if d is not None}
    dataset = dataset_record(cfg.dataset if data is None else given_name(data, cfg.dataset), steps, cfg.data_options,
                             splits, "sequence")

    model = build_for(cfg, info["input_shape"], info["num_classes"]).to(device)
    optimizer = make_optimizer(model, cfg)
    history = load_epoch(out, model, optimizer, cfg) or []
    if len(history) > cfg.epochs:
        raise ValueError(f"{out} already holds {len(history)} epochs, more than epochs={cfg.epochs}")
    check_schedule(out, history, cfg)
    sigmoid = any(isinstance(m, SigmoidSumQuantizer) for m in model.modules())
    loader = Batches(train_split[0], train_split[1], cfg.batch_size, shuffle=True)
    events, augment = event_augmentation(cfg, steps)
    check_trainable(model, loader)
    check_training(model, 1 if cfg.mode == "ann" else steps, cfg.batch_size)
    bar = tqdm(total=(cfg.epochs - len(history)) * len(loader), disable=None if cfg.progress else True, unit="batch",
               desc=f"{cfg.dataset}/{cfg.model}/{cfg.mode}")
    for epoch in range(len(history), cfg.epochs):
        start = time.perf_counter()
        lr = schedule.cosine_lr(epoch, cfg.epochs, cfg.lr)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        temp = schedule.temperature(epoch, cfg.temperature_k, cfg.temperature_cap)
        set_temperature(model, temp)
        bits = schedule.act_bits_at(epoch, cfg.epochs, cfg.act_bits, cfg.progressive)
        set_act_bits(model, bits)
        seed = schedule.epoch_seed(cfg.seed, epoch)
        torch.manual_seed(seed)
        loader.seed = seed
        if events is not None:
            loader.x = events.frames(augment, seed)
        bar.set_description(f"{cfg.dataset}/{cfg.model}/{cfg.mode} epoch {epoch + 1}/{cfg.epochs}")
        row = {"epoch": epoch + 1, "lr": lr, **train_epoch(model, loader, optimizer, device, cfg.augment, seed, bar)}
        if sigmoid:
            row["temperature"] = temp
        if cfg.mode == "ann":
            row["act_bits"] = bits
        if val is not None:
            row["val_accuracy"] = evaluate(model, batches(val), device)["accuracy"]
        if record_time:
            row["seconds"] = round(time.perf_counter() - start, 3)
        history.append(row)
        if bar.disable:  # no bar (asked for, or not a terminal): a line per epoch instead
            print(epoch_line(row, cfg.epochs), flush=True)
        save_epoch(out, model, optimizer, cfg, history, dataset)
    bar.close()
    if cfg.mode == "ann":
        set_act_bits(model, cfg.act_bits)  # the final width, even when fewer epochs than progressive stages
    model.eval()
    metrics = _final_metrics(model, val, test, device)
    if record_time:
        metrics["train_seconds"] = round(sum(r.get("seconds", 0.0) for r in history), 3)
    save_checkpoint(model, out, dataset=dataset, timesteps=steps, training=cfg.to_dict(), history=history,
                    metrics=metrics)
    model.qnoise_checkpoint = read_checkpoint_config(out)
    return model
