"""The shipped sample: small trained digits models and an evaluation batch, regenerated deterministically.

    <out>/index.json                    what is here: one entry per model and the batch, with metrics
    <out>/digits-ann-<b>bit/            quantized ANN (cnn, LearnableClip at b = 2, 3, 4 bits, progressive)
    <out>/digits-snn-<b>bit/            its conversion: IF, theta = alpha, T = 2^b - 1, BN folded
    <out>/digits-snn-<b>bit-signed/     the same with signed IF
    <out>/digits-snn-direct-binary/     direct-trained SNN, T = 4, learned thresholds, binary weights
                                        (sigmoid-sum, first and last layer float)
    <out>/digits-test-256.safetensors   256 test images ``inputs [256, 1, 8, 8]`` in [0, 1] and ``labels [256]``;
                                        static input: feed ``inputs`` at every timestep

Each model directory is a checkpoint (``model.safetensors`` + ``config.json``). Training runs in a scratch
folder with wall times left out, so rerunning on the same software gives the same bytes.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from ..io import CONFIG_FILE, MODEL_FILE, atomic_write_json, read_checkpoint_config, save_tensors
from .config import TrainConfig
from .convert_run import convert_checkpoint
from .run import train
from .splits import load_split

BITS = (2, 3, 4)
EPOCHS = 30
BATCH = "digits-test-256.safetensors"


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
    return index
