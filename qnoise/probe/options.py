"""The probe's options as four small frozen values, shared by `analyze`, `sweep`, the CLI and the dashboard.

- `Setting`: the configuration analysed (a sweep's cell): weight bits and method, rounding, membrane bits,
  neuron kind, timesteps. None keeps the model's own.
- `Compare`: what the SNN is compared with: the reference, what the ANN twin sees, isolated mode.
- `Count`: what is counted besides the errors: the energy model, full tensors of a few samples.
- `Execution`: how the run goes: batches, limit, split, input mode, device, compiled kernels, seed, progress.

`split_options` routes keyword arguments to these by field name, so ``analyze(model, data, weight_bits=4,
reference="snn", limit=64)`` reads as it says, and an unknown name is refused with the list of known ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..metrics import EnergyModel
from ..quant import METHODS, ROUNDINGS, TIES

NEURON_CHOICES = ("if", "signed")
ANN_REFERENCES = ("ann", "ann-quantized", "source")
REFERENCES = (*ANN_REFERENCES, "snn", "none")
TWIN_INPUTS = ("mean", "cumulative")
INPUT_MODES = ("sequence", "static")
_RENAMED = {"float": "ann", "quantized": "ann-quantized"}


def _check_int(name: str, value, low: int, high: int | None = None, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an int in {span}{' or None' if allow_none else ''}, got {value!r}")


@dataclass(frozen=True)
class Setting:
    """The configuration analysed; None keeps the model's own.

    ``weight_bits``: 32 float (quantizers removed), 1 binary, else ``weight_method`` (``"uniform"`` with
    ``rounding``, ``"ternary"``, ``"sigmoid"``) at that width. ``state_bits``: 32 float membrane, else a
    b-bit membrane. ``neuron``: ``"if"`` unsigned or ``"signed"`` (Fast-SNN). ``timesteps``: T.
    ``weight_step``: uniform weights on this fixed step (a hardware's grid) instead of max|w|; without it, weights
    already on a b-bit grid keep it exactly. ``ties``: how nearest rounding breaks exact halves
    (``"half-even"``, ``"half-away"``, ``"half-up"``).
    """

    weight_bits: int | None = None
    timesteps: int | None = None
    rounding: str = "nearest"
    state_bits: int | None = None
    neuron: str | None = None
    weight_method: str = "uniform"
    weight_step: float | None = None
    ties: str = "half-even"

    def __post_init__(self) -> None:
        _check_int("weight_bits", self.weight_bits, 1, 32)
        _check_int("timesteps", self.timesteps, 1, 100_000)
        _check_int("state_bits", self.state_bits, 2, 32)
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding={self.rounding!r} is not one of {ROUNDINGS}")
        if self.neuron not in (None, *NEURON_CHOICES):
            raise ValueError(f"neuron={self.neuron!r} is not one of {NEURON_CHOICES} (or None: as the model is)")
        if self.weight_method not in METHODS:
            raise ValueError(f"weight_method={self.weight_method!r} is not one of {METHODS}")
        if self.weight_step is not None:  # a hardware's grid (issue 11): levels k * step, k in b-bit range
            step = self.weight_step
            if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step < float("inf"):
                raise ValueError(f"weight_step must be a positive number, got {step!r}")
            if self.weight_bits is None or self.weight_bits == 1 or self.weight_method != "uniform":
                raise ValueError("weight_step needs weight_bits (2..31: the grid's range; 32 stays float) and "
                                 f"weight_method 'uniform', got weight_bits={self.weight_bits}, "
                                 f"weight_method={self.weight_method!r}")
        if self.ties not in TIES:
            raise ValueError(f"ties={self.ties!r} is not one of {TIES}")


def reference_name(reference) -> str:
    """The ``reference`` column for a `Compare.reference`: one of `REFERENCES`, or ``"ann-given"``."""
    if isinstance(reference, (nn.Module, Path)) or (isinstance(reference, str) and reference not in REFERENCES):
        return "ann-given"
    return reference


@dataclass(frozen=True)
class Compare:
    """What the SNN is compared with (DESIGN.md, "Noise: what the probe measures").

    ``reference``: ``"ann"`` (the ANN twin with float weights, default), ``"ann-quantized"`` (the twin with the
    SNN's quantized weights), ``"source"`` (the quantized ANN a converted checkpoint records), an ANN module
    or an ANN checkpoint folder (``"ann-given"``), ``"snn"`` (the same SNN at full precision), or ``"none"``
    (no comparison: spikes, costs and accuracy only, the cheapest run, as a mixed-precision search uses it).
    ``twin_input``: ``"mean"`` (the twin sees the mean input frame) or ``"cumulative"`` (at step t the mean
    of frames 1..t). ``isolate``: add isolated-mode rows (each layer fed the reference's input).
    """

    reference: str | nn.Module | Path = "ann"
    twin_input: str = "mean"
    isolate: bool = True

    def __post_init__(self) -> None:
        ref = self.reference
        if isinstance(ref, str) and ref in _RENAMED:
            raise ValueError(f"reference={ref!r} is now {_RENAMED[ref]!r} (references: {REFERENCES}, an ANN module "
                             f"or an ANN checkpoint folder)")
        if not isinstance(ref, (str, Path, nn.Module)):
            raise TypeError(f"reference must be one of {REFERENCES}, an ANN module or a folder, got "
                            f"{type(ref).__name__}")
        if isinstance(ref, (str, Path)) and str(ref) not in REFERENCES and not Path(ref).expanduser().is_dir():
            raise ValueError(f"reference={str(ref)!r} is neither one of {', '.join(REFERENCES)} nor an ANN "
                             f"checkpoint folder")
        if self.twin_input not in TWIN_INPUTS:
            raise ValueError(f"twin_input={self.twin_input!r} is not one of {TWIN_INPUTS}")

    @property
    def name(self) -> str:
        return reference_name(self.reference)


@dataclass(frozen=True)
class Count:
    """What is counted besides the errors: ``energy`` (per-operation costs, `qnoise.metrics.EnergyModel`),
    and ``keep_tensors`` (full spike, membrane, input and reference tensors of this many samples)."""

    energy: EnergyModel = field(default_factory=EnergyModel)
    keep_tensors: int = 0

    def __post_init__(self) -> None:
        _check_int("keep_tensors", self.keep_tensors, 0, allow_none=False)
        if not isinstance(self.energy, EnergyModel):
            raise TypeError(f"energy must be a qnoise.metrics.EnergyModel, got {type(self.energy).__name__}")


@dataclass(frozen=True)
class Execution:
    """How a run goes: ``batch_size``, ``limit`` (samples), ``split`` (of a named dataset), ``input_mode``
    (``"sequence"``: the frames as they are; ``"static"``: their mean at every step; None: as the checkpoint
    records), ``device`` (``"auto"``: CUDA if present), ``compile`` (fused kernels: True, False, ``"auto"``),
    ``seed`` (stochastic rounding), ``progress`` (a tqdm bar; None: only on a terminal), ``data_root`` (where a
    named dataset is read: `qnoise.data.load_dataset`'s ``root``; None: ``$QNOISE_DATA``)."""

    batch_size: int = 64
    limit: int | None = None
    split: str = "test"
    input_mode: str | None = None
    device: str = "auto"
    compile: bool | str = "auto"
    seed: int = 0
    progress: bool | None = None
    data_root: str | None = None

    def __post_init__(self) -> None:
        _check_int("batch_size", self.batch_size, 1, allow_none=False)
        _check_int("limit", self.limit, 1)
        if self.input_mode not in (None, *INPUT_MODES):
            raise ValueError(f"input_mode={self.input_mode!r} is not one of {INPUT_MODES} (or None)")
        if self.compile not in (True, False, "auto"):
            raise ValueError(f"compile={self.compile!r}: expected True, False or 'auto'")


OPTION_TYPES = (Setting, Compare, Count, Execution)


def split_options(given: dict | None = None, **kwargs) -> tuple[Setting, Compare, Count, Execution]:
    """``(Setting, Compare, Count, Execution)`` from ``given`` (those values, by type or by their lower-case
    class name: ``setting=``, ``compare=``, ``count=``, ``execution=``) updated by field-name keywords."""
    values = {cls: cls() for cls in OPTION_TYPES}
    for cls in OPTION_TYPES:
        v = (given or {}).get(cls.__name__.lower())
        if v is not None:
            if not isinstance(v, cls):
                raise TypeError(f"{cls.__name__.lower()}= must be a {cls.__name__}, got {type(v).__name__}")
            values[cls] = v
    fields = {f.name: cls for cls in OPTION_TYPES for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; known: {sorted(fields)}")
    for cls in OPTION_TYPES:
        mine = {k: v for k, v in kwargs.items() if fields[k] is cls}
        if mine:
            values[cls] = dataclasses.replace(values[cls], **mine)
    return tuple(values[cls] for cls in OPTION_TYPES)  # type: ignore[return-value]
