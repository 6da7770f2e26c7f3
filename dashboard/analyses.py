"""Analyses and other slow results of the chosen model, computed once per process and shared by every browser
session (`dashboard.memo.Memo`), each reporting its progress as its batches finish: ``qnoise.analyze`` of one
configuration, ``qnoise.sensitivity``, accuracy per class, and a layer's weights against their grid."""

from __future__ import annotations

import inspect
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from dashboard import sources
from dashboard.memo import Memo
from dashboard.state import Config, card, dataset_name, eval_data, load_model

def _analyze_fn():
    import qnoise

    try:
        return qnoise.analyze
    except (ImportError, AttributeError) as err:
        raise RuntimeError("this qnoise has no analysis yet (qnoise.analyze): the probe is not installed") from err


def _variant(model, cfg: Config):
    """A private copy of ``model`` with the neuron kind and threshold scale of ``cfg``."""
    from qnoise.neurons import scale_thresholds
    from qnoise.probe.copying import private_copy

    if cfg.threshold_scale == 1.0:
        return model
    m = private_copy(model)  # not deepcopy: its parametrizations must not share classes with the cached model
    scale_thresholds(m, cfg.threshold_scale)
    return m


def _reference(model, cfg: Config) -> str:
    """The configuration's reference, or the float SNN for a model whose neurons have no ANN twin (leaky,
    current-based, imported: `qnoise.probe.twin_unavailable`), so its pages still show error terms."""
    from qnoise.probe import twin_unavailable

    if cfg.reference.startswith("ann") and twin_unavailable(model) is not None:
        return "snn"
    return cfg.reference


def _call_analyze(model, data, cfg: Config, keep: int, isolate: bool, names: dict):
    fn = _analyze_fn()
    kwargs = dict(timesteps=cfg.timesteps, weight_bits=cfg.weight_bits, state_bits=cfg.state_bits,
                  rounding=cfg.rounding, reference=_reference(model, cfg), isolate=isolate, keep_tensors=keep,
                  neuron=cfg.neuron, device="cpu", progress=False, **names)
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(model, data, **kwargs)


def _tensors_of(result) -> dict:
    """Kept tensors of an analysis as ``{layer: {name: ndarray}}`` (e.g. spikes, membrane, ann, rate)."""
    found = None
    for attr in ("tensors", "kept"):
        found = found or getattr(result, "attrs", {}).get(attr) or getattr(result, attr, None)
    if not found:
        return {}
    out = {}
    for layer, items in dict(found).items():
        if isinstance(items, dict):
            out[str(layer)] = {str(k): np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
                               for k, v in items.items()}
    return out


ANALYSES = Memo(128)
SLOW = Memo(32)  # sensitivity, per-class accuracy
BATCH_SIZE = 64  # `qnoise.probe.Execution`'s default: the same batches, so the same sums, as the CLI


class _Batches:
    """Batch indices for a DataLoader that report, as each batch is drawn, how many samples the analysis has
    finished (the previous batches): a real progress bar without hooks into the probe."""

    def __init__(self, n: int, size: int, on_done) -> None:
        self.n, self.size, self.on_done = n, size, on_done

    def __len__(self) -> int:
        return -(-self.n // self.size)

    def __iter__(self):
        for start in range(0, self.n, self.size):
            self.on_done(start)
            yield list(range(start, min(self.n, start + self.size)))
        self.on_done(self.n)


def reporting_data(x: np.ndarray, y: np.ndarray, on_done=None):
    """``(X, y)`` as the probe takes them, or, with ``on_done(samples finished)``, a DataLoader over the same
    batches of `BATCH_SIZE` that reports its progress."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    X, Y = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
    if on_done is None:
        return X, Y
    return DataLoader(TensorDataset(X, Y), batch_sampler=_Batches(len(Y), BATCH_SIZE, on_done))


def _analysis_key(checkpoint, batch_file, cfg: Config, keep: int, isolate: bool) -> tuple:
    return ("analysis", str(checkpoint), batch_file, tuple(sorted(asdict(cfg).items())), int(keep), bool(isolate),
            sources.stamp(Path(checkpoint) / "model.safetensors"))


def has_analysis(checkpoint, cfg: Config, batch_file: str | None = None, keep: int = 0, isolate: bool = False) -> bool:
    """Whether this analysis is already computed (then it is instant: no progress bar is needed)."""
    return _analysis_key(checkpoint, batch_file, cfg, keep, isolate) in ANALYSES


def _compute_analysis(checkpoint: str, batch_file: str | None, cfg: Config, keep: int, isolate: bool,
                      progress) -> tuple[pd.DataFrame, dict]:
    import torch

    stamp_ = sources.stamp(Path(checkpoint) / "model.safetensors")
    x, y = eval_data(checkpoint, cfg.timesteps, cfg.samples, batch_file, stamp_)
    model, lock = load_model(checkpoint)
    n = len(y)
    report = None if progress is None else (lambda done: progress(done / max(n, 1), f"analysed {done} of {n} samples"))
    data = reporting_data(x, y, report)
    names = {"model_name": Path(checkpoint).name, "dataset_name": dataset_name(checkpoint) or "data"}
    with lock, torch.no_grad():
        result = _call_analyze(_variant(model, cfg), data, cfg, keep, isolate, names)
    df = result if isinstance(result, pd.DataFrame) else getattr(result, "frame", None)
    if not isinstance(df, pd.DataFrame):
        raise RuntimeError(f"qnoise.analyze returned {type(result).__name__}, not a DataFrame")
    tensors = _tensors_of(result)
    note = (df.attrs.get("qnoise") or {}).get("note")
    df = df.copy()
    df.attrs = {"note": note} if note else {}  # why the table has no error rows (a model without an ANN twin)
    df.attrs["samples"] = int(n)
    return df, tensors


def analysis(checkpoint: str | Path, cfg: Config, batch_file: str | None = None, keep: int = 0,
             isolate: bool = False, progress=None) -> tuple[pd.DataFrame, dict]:
    """``(table, kept tensors)`` of ``qnoise.analyze`` for one configuration, computed once per process and
    shared by every session. ``progress(fraction, text)`` is called as the batches finish (only when it is
    computed). ``table.attrs["samples"]``: how many samples it was computed on."""
    key = _analysis_key(checkpoint, batch_file, cfg, keep, isolate)
    df, tensors = ANALYSES.get(key, lambda: _compute_analysis(str(checkpoint), batch_file, cfg, int(keep),
                                                              bool(isolate), progress))
    out = df.copy(deep=False)
    out.attrs = dict(df.attrs)
    return out, tensors


def sensitivity_bits(cfg: Config, chosen: int | None = None) -> int:
    """The weight bits the sensitivity test turns on per layer: ``chosen``, else the configuration's own
    (when it names a width), else 4."""
    if chosen is not None:
        return int(chosen)
    return int(cfg.weight_bits) if cfg.weight_bits not in (None, 32) else 4


def _compute_sensitivity(checkpoint: str, batch_file: str | None, cfg: Config, bits: int, progress) -> pd.DataFrame:
    """`qnoise.sensitivity` in its two parts: the weights (each pass of the model counted by a forward hook, so
    the bar moves pass by pass) and the rates over T steps (run on hook-free copies: the bar moves once)."""
    import torch

    import qnoise
    from qnoise.probe import model_structure

    stamp_ = sources.stamp(Path(checkpoint) / "model.safetensors")
    x, y = eval_data(checkpoint, cfg.timesteps, cfg.samples, batch_file, stamp_)
    model, lock = load_model(checkpoint)
    data = reporting_data(x, y)
    kwargs = dict(timesteps=cfg.timesteps, weight_bits=bits, rounding=cfg.rounding, device="cpu",
                  model_name=Path(checkpoint).name, dataset_name=dataset_name(checkpoint) or "data")
    report = progress or (lambda frac, text: None)
    with lock, torch.no_grad():
        m = _variant(model, cfg)
        structure = model_structure(m, tuple(x.shape[2:]))
        batches = -(-len(y) // BATCH_SIZE)
        weight_passes = batches * (2 + 2 * sum(1 for layer in structure.layers if layer.synapses))
        time_passes = batches * (2 + 2 * len(structure.neuron_layers))
        total = weight_passes + time_passes
        count = [0]

        def tick(*_):
            count[0] += 1
            report(min(1.0, count[0] / total), f"weights at {bits} bits, pass {count[0]} of {weight_passes}")

        handle = m.register_forward_pre_hook(tick)
        try:
            weights = qnoise.sensitivity(m, data, quantities=("weights",), **kwargs)
        finally:
            handle.remove()
        report(weight_passes / total, f"rates quantized in time over T = {cfg.timesteps} steps")
        steps = qnoise.sensitivity(m, data, quantities=("timesteps",), **kwargs)
        report(1.0, "done")
    out = pd.concat([weights, steps], ignore_index=True)
    out.attrs = {"samples": int(len(y)), "weight_bits": bits}
    return out


def sensitivity(checkpoint: str | Path, cfg: Config, batch_file: str | None = None, bits: int | None = None,
                progress=None) -> pd.DataFrame:
    """`qnoise.sensitivity` of one configuration at ``bits`` weight bits (`sensitivity_bits`), computed once."""
    b = sensitivity_bits(cfg, bits)
    key = ("sensitivity", str(checkpoint), batch_file, tuple(sorted(asdict(cfg).items())), b,
           sources.stamp(Path(checkpoint) / "model.safetensors"))
    return SLOW.get(key, lambda: _compute_sensitivity(str(checkpoint), batch_file, cfg, b, progress))


def _classes_key(checkpoint, cfg: Config, batch_file) -> tuple:
    return ("classes", str(checkpoint), batch_file, tuple(sorted(asdict(cfg).items())),
            sources.stamp(Path(checkpoint) / "model.safetensors"))


def has_class_accuracy(checkpoint, cfg: Config, batch_file: str | None = None) -> bool:
    return _classes_key(checkpoint, cfg, batch_file) in SLOW


def class_accuracy(checkpoint: str | Path, cfg: Config, batch_file: str | None = None,
                   progress=None) -> pd.DataFrame:
    """Per-class accuracy with sample counts and Wilson intervals (`qnoise.accuracy.class_accuracy`) of one
    configuration on the evaluation data; ``progress(fraction, text)`` follows its batches."""

    def compute():
        import torch

        from qnoise.accuracy import class_accuracy as table
        from qnoise.accuracy import predictions

        stamp_ = sources.stamp(Path(checkpoint) / "model.safetensors")
        x, y = eval_data(str(checkpoint), cfg.timesteps, cfg.samples, batch_file, stamp_)
        n = len(y)
        report = None if progress is None else (lambda done: progress(done / max(n, 1), f"{done} of {n} samples"))
        model, lock = load_model(checkpoint)
        with lock, torch.no_grad():
            pred, labels = predictions(_variant(model, cfg), reporting_data(x, y, report), cfg.timesteps,
                                       weight_bits=cfg.weight_bits, state_bits=cfg.state_bits, neuron=cfg.neuron,
                                       rounding=cfg.rounding)
        return table(pred, labels, classes=card(checkpoint).get("num_classes"))

    return SLOW.get(_classes_key(checkpoint, cfg, batch_file), compute)


def weight_distribution(checkpoint: str | Path, cfg: Config, layer: str) -> dict:
    """A weight layer's float and quantized weights, grid and clipping range under ``cfg``
    (`qnoise.teaching.weight_distribution`, on a private copy of the model), computed once."""
    from qnoise.teaching import weight_distribution as dist

    key = ("weights", str(checkpoint), cfg.weight_bits, cfg.rounding, layer,
           sources.stamp(Path(checkpoint) / "model.safetensors"))

    def compute():
        model, lock = load_model(checkpoint)
        with lock:
            return dist(model, layer, weight_bits=cfg.weight_bits, rounding=cfg.rounding)

    return SLOW.get(key, compute)
