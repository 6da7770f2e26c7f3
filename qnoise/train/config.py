"""`TrainConfig`: every choice of a training run as one JSON-able record (stored in the checkpoint).

Two modes:

- ``"direct"``: an SNN trained end to end with BPTT and surrogate gradients (``neuron``, ``threshold``,
  ``learn_threshold``, ``v_init``, ``surrogate``), on ``timesteps`` input steps.
- ``"ann"``: an ANN with ``LearnableClip`` activations at ``act_bits`` (ReLU when None), run with T = 1 on the
  time-averaged input; ``progressive`` trains float -> 4 -> 3 -> 2 bits down to ``act_bits``.

Quantization in training (QAT): weights (``weight_bits``, ``weight_method``, ``weight_rounding``,
``keep_first_last``), thresholds (``threshold_bits``) and membrane (``state_bits``), each with its rounding.
The sigmoid-sum weight quantizer's temperature follows ``linear_temperature(epoch, temperature_slope,
temperature_start, temperature_cap)``, set at the start of each epoch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..data import check_data_options
from ..limits import check_batch_size, check_int, check_timesteps

MODES = ("direct", "ann")
# keys that may change between a run and its resumption without invalidating it
RESUMABLE_KEYS = ("device", "epochs", "progress", "data_root")


@dataclass
class TrainConfig:
    dataset: str = "digits"
    model: str = "cnn"
    mode: str = "direct"
    model_options: dict = field(default_factory=dict)   # e.g. {"channels": [32, 64], "hidden": 256}
    # SNN neuron (direct mode)
    neuron: str = "if"
    threshold: float = 1.0
    learn_threshold: bool = True
    v_init: str = "zero"
    surrogate: str = "atan"
    # ANN activation (ann mode)
    act_bits: int | None = None
    act_alpha: float = 1.0
    progressive: bool = False
    # quantization in training
    weight_bits: int | None = None
    weight_method: str = "uniform"
    weight_rounding: str = "nearest"
    keep_first_last: bool = False
    threshold_bits: int | None = None
    threshold_rounding: str = "nearest"
    state_bits: int | None = None
    state_rounding: str = "nearest"
    temperature_slope: float = 1.0
    temperature_start: float = 1.0
    temperature_cap: float = 1000.0
    # data
    timesteps: int = 4
    data_root: str | None = None
    data_options: dict = field(default_factory=dict)    # passed to load_dataset (encoding, downsample, ...)
    train_split: str = "train"
    val_split: str | None = "val"
    test_split: str | None = "test"
    augment: str | None = None                          # None or "shift" (random translation, +-2 px)
    # optimisation
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r} is not one of {MODES}")
        if self.mode == "direct" and (self.act_bits is not None or self.progressive):
            raise ValueError("act_bits/progressive belong to mode='ann'; a direct SNN quantizes by its timesteps")
        if self.mode == "ann" and (self.threshold_bits is not None or self.state_bits is not None):
            raise ValueError("threshold_bits/state_bits need spiking neurons (mode='direct')")
        if self.progressive and self.act_bits is None:
            raise ValueError("progressive=True needs act_bits (the final bit width)")
        check_timesteps(self.timesteps)
        check_batch_size(self.batch_size)
        check_int(self.epochs, "epochs", 1, hint=" (it would save an untrained model)" if self.epochs == 0 else "")
        for name in ("weight_bits", "threshold_bits", "state_bits", "act_bits"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, 1, 32)
        if not isinstance(self.model_options, dict):
            raise ValueError(f"model_options must be a dict of architecture options, got {self.model_options!r:.100}")
        check_data_options(self.data_options, "data_options")
        if self.weight_method == "sigmoid" and self.weight_bits is None:
            raise ValueError("weight_method='sigmoid' needs weight_bits (1 = binary, 2 = ternary, k bits)")
        if self.augment not in (None, "shift"):
            raise ValueError(f"augment={self.augment!r}: expected None or 'shift'")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training option(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def quantization(self) -> dict:
        """The quantization spec applied before training (`qnoise.models.apply_quantization`)."""
        spec: dict = {}
        if self.weight_bits is not None or self.weight_method in ("binary", "ternary"):
            spec["weights"] = {"bits": self.weight_bits or 1, "method": self.weight_method,
                               "rounding": self.weight_rounding, "keep_first_last": self.keep_first_last}
        if self.threshold_bits is not None:
            spec["thresholds"] = {"bits": self.threshold_bits, "rounding": self.threshold_rounding}
        if self.state_bits is not None:
            spec["membrane"] = {"bits": self.state_bits, "rounding": self.state_rounding}
        return spec

    def differences(self, other: TrainConfig, ignore=RESUMABLE_KEYS) -> dict:
        """``{key: (self, other)}`` for every option that differs, ``ignore`` aside."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]}
