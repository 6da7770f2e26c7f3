"""A whole training run: data, model, QAT, epochs with resume, final evaluation, checkpoint in ``out``.

Per epoch e (0-based): lr = `cosine_lr`, sigmoid-sum temperature = `temperature`, activation bits =
`act_bits_at` (progressive ANN), RNG seeded with `epoch_seed` (shuffling and augmentation), then BPTT over
the training split, validation, and the epoch checkpoint ``out/last/``. The finished model is saved to
``out`` (``model.safetensors`` + ``config.json``) with history and metrics (``val_accuracy``,
``test_accuracy`` and sample counts where those splits exist).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..device import resolve_device
from ..io import CONFIG_FILE, check_output_folder, load_checkpoint, read_checkpoint_config, save_checkpoint
from ..models import build_model, set_act_bits
from ..quant import SigmoidSumQuantizer, set_temperature
from . import schedule
from .config import TrainConfig
from .budget import check_training
from .loop import Batches, check_trainable, evaluate, train_epoch
from .resume import load_epoch, save_epoch
from .splits import batches, dataset_record, load_split, optional_split


def build_for(cfg: TrainConfig, input_shape, num_classes: int) -> nn.Module:
    """The model a `TrainConfig` trains, seeded with ``cfg.seed``, its quantization applied (QAT)."""
    torch.manual_seed(cfg.seed)
    if cfg.mode == "ann":
        return build_model(cfg.model, input_shape, num_classes, kind="ann", act_bits=cfg.act_bits,
                           act_alpha=cfg.act_alpha, quantization=cfg.quantization(), **cfg.model_options)
    neuron = {"type": cfg.neuron, "threshold": cfg.threshold, "learn_threshold": cfg.learn_threshold,
              "v_init": cfg.v_init, "surrogate": cfg.surrogate}
    return build_model(cfg.model, input_shape, num_classes, kind="snn", neuron=neuron,
                       quantization=cfg.quantization(), **cfg.model_options)


def _final_metrics(model, val, test, device) -> dict:
    metrics = {}
    for name, split in (("val", val), ("test", test)):
        if split is not None:
            r = evaluate(model, batches(split), device)
            metrics[f"{name}_accuracy"], metrics[f"{name}_samples"] = r["accuracy"], r["samples"]
    return metrics


def train(config: TrainConfig | dict, out: str | Path, record_time: bool = True) -> nn.Module:
    """Train as ``config`` says and save to ``out``; rerunning continues after the last completed epoch.

    Returns the trained model (eval mode) with its checkpoint document at ``model.qnoise_checkpoint``.
    ``record_time=False`` leaves wall times out of the history (byte-identical reruns).
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    out = check_output_folder(out)  # before any work: saving into it must not fail at the end
    if (out / CONFIG_FILE).is_file():
        doc = read_checkpoint_config(out)
        done = TrainConfig.from_dict(doc.get("training") or {})
        if not cfg.differences(done, ignore=("device", "progress", "data_root")):
            return load_checkpoint(out, cfg.device)
    device = resolve_device(cfg.device)
    steps = cfg.timesteps
    train_split = load_split(cfg.dataset, cfg.train_split, steps, cfg.data_root, cfg.data_options)
    val = optional_split(cfg.dataset, cfg.val_split, steps, cfg.data_root, cfg.data_options)
    test = optional_split(cfg.dataset, cfg.test_split, steps, cfg.data_root, cfg.data_options)
    info = train_split[2]
    splits = {s: d[2]["samples"] for s, d in ((cfg.train_split, train_split), (cfg.val_split, val),
                                              (cfg.test_split, test)) if d is not None}
    dataset = dataset_record(cfg.dataset, steps, cfg.data_options, splits, "sequence")

    model = build_for(cfg, info["input_shape"], info["num_classes"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = load_epoch(out, model, optimizer, cfg) or []
    if len(history) > cfg.epochs:
        raise ValueError(f"{out} already holds {len(history)} epochs, more than epochs={cfg.epochs}")
    sigmoid = any(isinstance(m, SigmoidSumQuantizer) for m in model.modules())
    loader = Batches(train_split[0], train_split[1], cfg.batch_size, shuffle=True)
    check_trainable(model, loader)
    check_training(model, 1 if cfg.mode == "ann" else steps, cfg.batch_size)
    bar = tqdm(total=(cfg.epochs - len(history)) * len(loader), disable=not cfg.progress, unit="batch",
               desc=f"{cfg.dataset}/{cfg.model}/{cfg.mode}")
    for epoch in range(len(history), cfg.epochs):
        start = time.perf_counter()
        lr = schedule.cosine_lr(epoch, cfg.epochs, cfg.lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        temp = schedule.temperature(epoch, cfg.temperature_slope, cfg.temperature_start, cfg.temperature_cap)
        set_temperature(model, temp)
        bits = schedule.act_bits_at(epoch, cfg.epochs, cfg.act_bits, cfg.progressive)
        set_act_bits(model, bits)
        seed = schedule.epoch_seed(cfg.seed, epoch)
        torch.manual_seed(seed)
        loader.seed = seed
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
