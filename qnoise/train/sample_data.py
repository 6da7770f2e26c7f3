"""The shipped sample: small trained digits models and an evaluation batch, regenerated deterministically.

    <out>/index.json                    what is here: one entry per model and the batch, with metrics
    <out>/digits-ann-<b>bit/            quantized ANN (cnn, LearnableClip at b = 2, 3, 4 bits, progressive)
    <out>/digits-snn-<b>bit/            its conversion: IF, theta = alpha, T = 2^b - 1, BN folded
    <out>/digits-snn-<b>bit-signed/     the same with signed IF
    <out>/digits-snn-direct-binary/     direct-trained SNN, T = 4, learned thresholds, binary weights
                                        (sigmoid-sum, first and last layer float)
    <out>/digits-test-256.safetensors   256 test images ``inputs [256, 1, 8, 8]`` in [0, 1] and ``labels [256]``;
                                        static input: feed ``inputs`` at every timestep
    <out>/grids/<snn>.parquet           each SNN's small grid (`model_grid`: weight bits 2, 4, 8, float and
                                        the trained ones x T in 1, 2, 4, 8, 16 and its own) analysed on the
                                        256 samples, so the dashboard's first page needs no analysis;
                                        ``write_sample_grids`` (``qnoise sample-data --grids-only``) writes
                                        them for the models already there, without training

Each model directory is a checkpoint (``model.safetensors`` + ``config.json``). Training runs in a scratch
folder with wall times left out, so rerunning on the same software gives the same bytes.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from ..files import atomic_write_json, read_json
from ..io import (
    CONFIG_FILE,
    MODEL_FILE,
    load_checkpoint,
    load_tensors,
    read_checkpoint_config,
    save_tensors,
)
from ..table_files import write_parquet_atomic
from .config import TrainConfig
from .convert_run import convert_checkpoint
from .run import train
from .splits import load_split

BITS = (2, 3, 4)
EPOCHS = 30
BATCH = "digits-test-256.safetensors"
GRIDS = "grids"
GRID_FORMAT = "qnoise-model-grids"
GRID_WEIGHT_BITS = (2, 4, 8, 32)  # 32: float; a model trained with quantized weights adds None (as trained)
GRID_TIMESTEPS = (1, 2, 4, 8, 16)  # plus the model's own T


def _configs() -> dict[str, TrainConfig]:
    runs = {f"digits-ann-{b}bit": TrainConfig(mode="ann", act_bits=b, progressive=True, timesteps=1,
                                             epochs=EPOCHS, progress=False) for b in BITS}
    runs["digits-snn-direct-binary"] = TrainConfig(mode="direct", timesteps=4, weight_bits=1, weight_method="sigmoid",
                                                   keep_first_last=True, epochs=EPOCHS, progress=False)
    return runs


def _entry(out: Path, name: str, description: str) -> dict:
    doc = read_checkpoint_config(out / name)
    model = doc["model"]
    return {"name": name, "path": name, "description": description, "kind": model["kind"], "arch": model["arch"],
            "act_bits": model["act_bits"], "timesteps": doc["timesteps"], "neuron": model["neuron"],
            "quantization": model["quantization"], "dataset": (doc.get("dataset") or {}).get("name"),
            "input_mode": (doc.get("dataset") or {}).get("input_mode"), "metrics": doc["metrics"]}


def _copy_checkpoint(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in (MODEL_FILE, CONFIG_FILE):
        shutil.copyfile(src / f, dst / f)


def make_sample_data(out: str | Path = "sample_data", progress: bool = False) -> dict:
    """Train, convert and write the sample into ``out``; returns the index."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True, warn_only=True)
    entries = []
    with tempfile.TemporaryDirectory(prefix="qnoise-sample-") as tmp:
        work = Path(tmp)
        for name, cfg in _configs().items():
            train(cfg.replace(progress=progress, device="cpu"), work / name, record_time=False)
            _copy_checkpoint(work / name, out / name)
            if cfg.mode == "direct":
                entries.append(_entry(out, name, "direct-trained SNN (BPTT), T = 4, learned thresholds, binary "
                                                 "sigmoid-sum weights (first and last layer float)"))
                continue
            entries.append(_entry(out, name, f"quantized ANN, LearnableClip {cfg.act_bits} bits (progressive)"))
            for signed in (False, True):
                snn = f"digits-snn-{cfg.act_bits}bit" + ("-signed" if signed else "")
                convert_checkpoint(work / name, work / snn, signed=signed, device="cpu", progress=progress,
                                   source=name)
                _copy_checkpoint(work / snn, out / snn)
                kind = "signed IF" if signed else "IF"
                entries.append(_entry(out, snn, f"{name} converted: {kind}, T = {2**cfg.act_bits - 1}, BN folded"))
    x, y, _ = load_split("digits", "test", 1)
    gen = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(y), generator=gen)[:256].sort().values
    save_tensors(out / BATCH, {"inputs": x[pick, 0].contiguous(), "labels": y[pick]},
                 metadata={"dataset": "digits", "split": "test", "encoding": "static",
                           "note": "inputs [N, 1, 8, 8] in [0, 1]: repeat over T for an SNN"})
    index = {"format": "qnoise-sample-data", "version": 1, "models": entries,
             "batches": [{"name": "digits-test-256", "path": BATCH, "dataset": "digits", "split": "test",
                          "samples": int(len(pick)), "input_shape": [1, 8, 8], "encoding": "static"}]}
    atomic_write_json(out / "index.json", index)
    write_sample_grids(out, progress=progress)
    return index


# ------------------------------------------------------------------------------------------------ grids

def grid_cells(checkpoint_config: dict) -> list[tuple[int | None, int]]:
    """The small grid of a model, ``[(weight_bits, timesteps), ...]``: `GRID_WEIGHT_BITS` (and None, the
    weights as trained, when the model was trained with quantized weights) x `GRID_TIMESTEPS` and the
    model's own T."""
    quant = (checkpoint_config.get("model") or {}).get("quantization") or {}
    bits: list[int | None] = list(GRID_WEIGHT_BITS) + ([None] if quant.get("weights") else [])
    own = checkpoint_config.get("timesteps")
    steps = sorted(set(GRID_TIMESTEPS) | ({int(own)} if own else set()))
    return [(b, t) for b in bits for t in steps]


def model_grid(checkpoint: str | Path, data, dataset_name: str, progress: bool = False):
    """`qnoise.probe.analyze` over `grid_cells` of one SNN checkpoint on ``data`` (reference: the ANN twin,
    propagated rows only, rounding to nearest), as one table in grid order."""
    import pandas as pd

    from ..probe import analyze

    checkpoint = Path(checkpoint)
    model = load_checkpoint(checkpoint)
    frames = []
    for bits, steps in grid_cells(read_checkpoint_config(checkpoint)):
        frames.append(analyze(model, data, timesteps=steps, weight_bits=bits, reference="ann", isolate=False,
                              device="cpu", progress=progress, model_name=checkpoint.name,
                              dataset_name=dataset_name))
    table = pd.concat(frames, ignore_index=True)
    table.attrs = {}  # each cell's probe sidecar differs; the grid's own record goes in its sidecar
    return table


def grid_record(checkpoint: str | Path, batch: str | Path) -> dict:
    """What a grid table was computed from (its sidecar): the checkpoint's tensor hash, the batch, the grid."""
    doc = read_checkpoint_config(checkpoint)
    samples = int(len(load_tensors(batch)["labels"]))
    return {"what": "qnoise model grid", "model": Path(checkpoint).name,
            "sha256": (doc.get("tensors") or {}).get("sha256"), "batch": Path(batch).name, "samples": samples,
            "cells": [[b, t] for b, t in grid_cells(doc)], "reference": "ann", "rounding": "nearest"}


def write_sample_grids(out: str | Path = "sample_data", progress: bool = False) -> list[Path]:
    """Analyse the small grid of every SNN the sample's ``index.json`` lists on its evaluation batch and write
    ``<out>/grids/<model>.parquet`` (+ JSON sidecar: `grid_record`) and ``<out>/grids/index.json``. The
    models are not trained again; the same software writes the same bytes."""
    out = Path(out)
    index = read_json(out / "index.json")
    batch = out / BATCH
    tensors = load_tensors(batch)
    data = (tensors["inputs"].unsqueeze(1), tensors["labels"])  # [N, 1 frame, C, H, W]: repeated over T
    written, listed = [], {}
    for entry in index["models"]:
        if entry.get("kind") != "snn":
            continue
        name = entry["path"]
        table = model_grid(out / name, data, entry.get("dataset") or "digits", progress=progress)
        path = out / GRIDS / f"{name}.parquet"
        written.append(write_parquet_atomic(table, path, grid_record(out / name, batch)))
        listed[name] = f"{name}.parquet"
    atomic_write_json(out / GRIDS / "index.json", {"format": GRID_FORMAT, "version": 1, "batch": BATCH,
                                                   "models": listed})
    return written
