"""`TrainConfig`: every choice of a training run as one JSON-able record (stored in the checkpoint).

Two modes:

- ``"direct"``: an SNN trained end to end with BPTT and surrogate gradients (``neuron``, ``threshold``,
  ``learn_threshold``, ``v_init``, ``surrogate``), on ``timesteps`` input steps.
- ``"ann"``: an ANN with ``LearnableClip`` activations at ``act_bits`` (ReLU when None), run with T = 1 on the
  time-averaged input; ``progressive`` trains float -> 4 -> 3 -> 2 bits down to ``act_bits``.

Quantization in training (QAT): weights (``weight_bits``, ``weight_method``, ``weight_rounding``,
``keep_first_last``), thresholds (``threshold_bits``) and membrane (``state_bits``), each with its rounding.
``weight_bits=1`` is binary whatever the method (``uniform`` becomes ``binary``; ``sigmoid`` is the binary
sum-of-sigmoids quantizer). The sigmoid-sum quantizer's temperature is the paper's
``T = min(temperature_k * (epoch + 1), temperature_cap)``, set at the start of each epoch, and its
``alpha``, ``beta`` and ``b_i`` learn at ``quantizer_lr_scale`` times the learning rate, without weight
decay (the authors' code: 0.1).

``init`` starts from the float weights of a trained checkpoint of the same architecture (the quantizers
are initialised from them, as Quantization Networks start from a trained full-precision model).

Data: ``augment="shift"`` translates the frames by up to 2 pixels; ``augment="events"`` re-bins each event
recording every epoch after tonic's event augmentations (`qnoise.data.augment.EventAugment`, strengths in
``augment_options``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..data import check_data_options
from ..data.augment import EventAugment
from ..limits import check_batch_size, check_int, check_timesteps
from ..quant.weights import METHODS as WEIGHT_METHODS

MODES = ("direct", "ann")
AUGMENTS = (None, "shift", "events")
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
    weight_levels: str = "uniform"                      # sigmoid-sum levels above 2 bits: uniform, pow2, data
    temperature_k: float = 10.0                         # sigmoid-sum T = k * (epoch + 1) ...
    temperature_cap: float = 2000.0                     # ... capped here
    quantizer_lr_scale: float = 0.1                     # lr of the sigmoid-sum alpha, beta, b_i / lr
    # data
    timesteps: int = 4
    data_root: str | None = None
    data_options: dict = field(default_factory=dict)    # passed to load_dataset (encoding, downsample, ...)
    train_split: str = "train"
    val_split: str | None = "val"
    test_split: str | None = "test"
    augment: str | None = None                          # None, "shift" (frames, +-2 px) or "events" (tonic)
    augment_options: dict = field(default_factory=dict)  # EventAugment strengths for augment="events"
    # optimisation
    init: str | None = None                             # checkpoint whose float weights start the run (QAT)
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
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment={self.augment!r}: expected one of {AUGMENTS}")
        if self.augment_options and self.augment != "events":
            raise ValueError("augment_options apply to augment='events'")
        EventAugment.from_dict(self.augment_options)
        if self.weight_bits == 1 and self.weight_method == "ternary":
            raise ValueError("weight_bits=1 is binary; weight_method='ternary' stores 2 bits")
        for name, low, strict in (("lr", 0.0, True), ("weight_decay", 0.0, False), ("temperature_k", 0.0, True),
                                  ("temperature_cap", 0.0, True), ("quantizer_lr_scale", 0.0, False),
                                  ("threshold", 0.0, True), ("act_alpha", 0.0, True)):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                    or value < low or (strict and value == low)):
                raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low:g}, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.weight_method not in WEIGHT_METHODS:
            raise ValueError(f"weight_method={self.weight_method!r} is not one of {WEIGHT_METHODS}")
        for name in ("keep_first_last", "learn_threshold", "progressive", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        if not isinstance(d, dict):
            raise ValueError(f"a training record is an object of training options, got {d!r:.80}")
        d = _upgrade(d)
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
            method = "binary" if self.weight_bits == 1 and self.weight_method == "uniform" else self.weight_method
            spec["weights"] = {"bits": self.weight_bits or 1, "method": method, "rounding": self.weight_rounding,
                               "keep_first_last": self.keep_first_last}
            if method == "sigmoid" and self.weight_levels != "uniform":
                spec["weights"]["levels"] = self.weight_levels
        if self.threshold_bits is not None:
            spec["thresholds"] = {"bits": self.threshold_bits, "rounding": self.threshold_rounding}
        if self.state_bits is not None:
            spec["membrane"] = {"bits": self.state_bits, "rounding": self.state_rounding}
        return spec

    def differences(self, other: TrainConfig, ignore=RESUMABLE_KEYS) -> dict:
        """``{key: (self, other)}`` for every option that differs, ``ignore`` aside."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]}


def recorded(doc: dict, path) -> TrainConfig:
    """The training options a checkpoint's ``config.json`` (at ``path``) records, with errors naming the file."""
    try:
        return TrainConfig.from_dict(doc.get("training") or {})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: its 'training' record: {err}") from err


def _upgrade(d: dict) -> dict:
    """A training record written before the paper's temperature schedule: ``start + slope * epoch`` with
    ``start == slope`` is ``k * (epoch + 1)`` (old defaults 1 and 1: k = 1)."""
    d = dict(d)
    if "temperature_slope" in d or "temperature_start" in d:
        slope, start = d.pop("temperature_slope", 1.0), d.pop("temperature_start", 1.0)
        if slope != start:
            raise ValueError(f"this record's temperature schedule {start} + {slope} * epoch is not k * (epoch + 1); "
                             f"retrain with temperature_k")
        d.setdefault("temperature_k", slope)
        d.setdefault("temperature_cap", 1000.0)
        d.setdefault("quantizer_lr_scale", 1.0)
    return d
