"""Loading and caching. Models are loaded once per checkpoint and shared read-only by every browser session
(``st.cache_resource``; an analysis works on its own copy, under the model's lock); results tables and
analyses are cached by their inputs (``st.cache_data``); what a person chose lives in ``st.session_state``,
so two sessions keep their own controls.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import sources
from dashboard.memo import Memo

ANALYSIS_SAMPLES = 256
KEEP_SAMPLES = 4


@dataclass(frozen=True)
class Config:
    """One analysis configuration (the Explore page's controls). ``None`` bits mean float."""

    weight_bits: int | None = None
    state_bits: int | None = None
    timesteps: int = 8
    rounding: str = "nearest"
    neuron: str | None = None        # None: as the model is; "if" or "signed"
    threshold_scale: float = 1.0
    reference: str = "ann"           # what the SNN is compared with: "ann", "ann-quantized" or "snn"
    samples: int = ANALYSIS_SAMPLES

    def label(self) -> str:
        w = {None: "as trained", 32: "float"}.get(self.weight_bits, f"{self.weight_bits}-bit")
        s = "" if self.state_bits is None else f", state {'float' if self.state_bits == 32 else self.state_bits}"
        n = {"signed": ", signed IF", "if": ", IF"}.get(self.neuron or "", "")
        th = "" if self.threshold_scale == 1.0 else f", θ×{self.threshold_scale:g}"
        return f"W {w}, T {self.timesteps}{s}{n}{th}"


# ---------------------------------------------------------------- catalog and tables

@st.cache_data(show_spinner=False, max_entries=16)
def catalog(path: str, _stamp: float) -> sources.Catalog:
    return sources.scan(path)


def current_catalog(path: str) -> sources.Catalog:
    return catalog(path, sources.stamp(path))


@st.cache_data(show_spinner="Reading results…", max_entries=16)
def results(path: str, _stamp: float) -> pd.DataFrame:
    return sources.read_results(path)


def load_results(path: str | Path) -> pd.DataFrame:
    return results(str(path), sources.stamp(path))


# ---------------------------------------------------------------- models

@st.cache_resource(show_spinner="Loading model…", max_entries=16)
def _model(path: str, _stamp: float):
    from qnoise.io import load_checkpoint

    model = load_checkpoint(path)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, threading.Lock()


def load_model(path: str | Path):
    """``(model, lock)``: the shared, read-only model of a checkpoint and the lock its users take."""
    return _model(str(path), sources.stamp(Path(path) / "model.safetensors"))


@st.cache_data(show_spinner=False, max_entries=32)
def model_card(path: str, _stamp: float) -> dict:
    """The facts the Overview page shows about a checkpoint."""
    from qnoise.io import read_checkpoint_config
    from qnoise.neurons import spiking_neurons

    doc = read_checkpoint_config(path)
    model, _ = load_model(path)
    cfg = doc.get("model", {})
    quant = cfg.get("quantization") or {}
    neurons = spiking_neurons(model)
    thresholds = {name: (float(n.threshold.detach().mean()), int(n.threshold.numel())) for name, n in neurons}
    neuron = cfg.get("neuron") or {}
    return {
        "path": path,
        "arch": cfg.get("arch"), "kind": cfg.get("kind"), "input_shape": cfg.get("input_shape"),
        "num_classes": cfg.get("num_classes"),
        "params": int(sum(p.numel() for p in model.parameters())),
        "weight_bits": (quant.get("weights") or {}).get("bits"),
        "weight_method": (quant.get("weights") or {}).get("method"),
        "state_bits": (quant.get("membrane") or {}).get("bits"),
        "threshold_bits": (quant.get("thresholds") or {}).get("bits"),
        "act_bits": cfg.get("act_bits"),
        "neuron": neuron.get("type"), "signed": neuron.get("signed"), "v_init": neuron.get("v_init"),
        "timesteps": doc.get("timesteps"), "dataset": doc.get("dataset"), "metrics": doc.get("metrics") or {},
        "thresholds": thresholds, "modules": str(model),
    }


def card(path: str | Path) -> dict:
    return model_card(str(path), sources.stamp(path))


# ---------------------------------------------------------------- evaluation data

def dataset_name(checkpoint: str | Path) -> str | None:
    from qnoise.io import read_checkpoint_config

    ds = read_checkpoint_config(checkpoint).get("dataset") or {}
    return ds.get("name") if isinstance(ds, dict) else (ds or None)


@st.cache_data(show_spinner="Loading evaluation data…", max_entries=16)
def eval_data(checkpoint: str, timesteps: int, samples: int, batch_file: str | None, _stamp: float):
    """``(X [N, T, ...], y [N])`` as numpy (sample-major, as `qnoise.data.dataset_tensors` gives): the
    sample's evaluation batch when there is one, else the first ``samples`` test samples of the
    checkpoint's dataset (`qnoise.load_dataset`)."""
    from qnoise.io import read_checkpoint_config

    if batch_file:
        from qnoise.io import load_tensors

        tensors = load_tensors(batch_file)
        xk = next((k for k in ("x", "X", "inputs", "input", "data") if k in tensors), None)
        yk = next((k for k in ("y", "labels", "label", "targets", "target") if k in tensors), None)
        if xk is None or yk is None:
            raise ValueError(f"{batch_file} holds {sorted(tensors)}; expected an input tensor (x) and labels (y)")
        x, y = tensors[xk].float(), tensors[yk].long()
        shape = list(read_checkpoint_config(checkpoint).get("model", {}).get("input_shape") or [])
        if shape and list(x.shape[1:]) == shape:  # static images [N, C, H, W]: one frame, repeated over T
            x = x.unsqueeze(1)
        return x[:samples].numpy(), y[:samples].numpy()
    from qnoise.data import dataset_tensors, load_dataset

    doc = read_checkpoint_config(checkpoint)
    ds_spec = doc.get("dataset") or {}
    name = ds_spec.get("name") if isinstance(ds_spec, dict) else ds_spec
    if not name:
        raise ValueError(f"{checkpoint}/config.json names no dataset; the dashboard cannot pick evaluation data")
    options = {k: ds_spec[k] for k in ("root", "encoding", "downsample", "clip", "duration_us")
               if isinstance(ds_spec, dict) and ds_spec.get(k) is not None}
    static = name == "digits" and options.get("encoding", "static") == "static"
    ds = load_dataset(name, "test", timesteps=1 if static else timesteps, limit=samples, **options)
    x, y = dataset_tensors(ds)
    return x[:samples].numpy(), y[:samples].numpy()


def batch_file_for(cat: sources.Catalog, checkpoint: Path) -> str | None:
    """The evaluation batch the sample ships for this checkpoint's dataset, if any."""
    if not cat.eval_batches:
        return None
    ds = (card(checkpoint).get("dataset") or {})
    name = ds.get("name") if isinstance(ds, dict) else ds
    for label, path in cat.eval_batches.items():
        if name and name in label:
            return str(path)
    return str(next(iter(cat.eval_batches.values())))


# ---------------------------------------------------------------- analysis


def _analyze_fn():
    import qnoise

    try:
        return qnoise.analyze
    except (ImportError, AttributeError) as err:
        raise RuntimeError("this qnoise has no analysis yet (qnoise.analyze): the probe is not installed") from err


def _variant(model, cfg: Config):
    """A private copy of ``model`` with the neuron kind and threshold scale of ``cfg``."""
    from qnoise.neurons import spiking_neurons

    if cfg.threshold_scale == 1.0:
        return model
    m = copy.deepcopy(model)
    for _, n in spiking_neurons(m):
        n.set_threshold(n.threshold.detach() * cfg.threshold_scale)
    return m


def _call_analyze(model, data, cfg: Config, keep: int, isolate: bool, names: dict):
    fn = _analyze_fn()
    kwargs = dict(timesteps=cfg.timesteps, weight_bits=cfg.weight_bits, state_bits=cfg.state_bits,
                  rounding=cfg.rounding, reference=cfg.reference, isolate=isolate, keep_tensors=keep,
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
    import torch

    import qnoise
    from qnoise.neurons import spiking_neurons
    from qnoise.quant import weight_layers

    stamp_ = sources.stamp(Path(checkpoint) / "model.safetensors")
    x, y = eval_data(checkpoint, cfg.timesteps, cfg.samples, batch_file, stamp_)
    model, lock = load_model(checkpoint)
    data = reporting_data(x, y)
    kwargs = dict(timesteps=cfg.timesteps, weight_bits=bits, rounding=cfg.rounding, device="cpu",
                  model_name=Path(checkpoint).name, dataset_name=dataset_name(checkpoint) or "data")
    with lock, torch.no_grad():
        m = _variant(model, cfg)
        batches = -(-len(y) // 64)
        # forwards qnoise.sensitivity runs: (2 + 2 per weight layer) + (2 + 2 per neuron layer), per batch
        total = batches * (4 + 2 * len(weight_layers(m)) + 2 * len(spiking_neurons(m)))
        count = [0]

        def tick(*_):
            count[0] += 1
            if progress is not None:
                progress(min(1.0, count[0] / total), f"measuring sensitivity: {count[0]} of about {total} passes")

        handle = m.register_forward_pre_hook(tick)  # copies made inside (the hybrids) keep it: they count too
        try:
            out = qnoise.sensitivity(m, data, **kwargs)
        finally:
            handle.remove()
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
    (`qnoise.teaching.weight_distribution`), on a private copy of the model."""
    from qnoise.teaching import weight_distribution as dist

    model, lock = load_model(checkpoint)
    with lock:
        return dist(model, layer, weight_bits=cfg.weight_bits, rounding=cfg.rounding)


# ---------------------------------------------------------------- grids shipped beside checkpoints

GRIDS = sources.GRIDS


@st.cache_data(show_spinner=False, max_entries=32)
def _shipped_grid(path: str, _stamp: float) -> tuple[pd.DataFrame, dict]:
    from qnoise.io import read_parquet

    df, side = read_parquet(path)
    return sources.check_results(df, path), side


def shipped_grid(checkpoint: str | Path, batch_file: str | None) -> tuple[pd.DataFrame, dict] | None:
    """``(table, record)`` of the grid shipped beside a checkpoint (``<folder>/grids/<name>.parquet``), when
    it was computed from these very tensors (SHA-256) on this evaluation batch; else None."""
    from qnoise.io import read_checkpoint_config

    checkpoint = Path(checkpoint)
    folder = checkpoint.parent / GRIDS
    path = folder / f"{checkpoint.name}.parquet"
    if not (path.is_file() and sources.is_grid_folder(folder) and sources.is_allowed(path)):
        return None
    try:
        df, record = _shipped_grid(str(path), sources.stamp(path))
        sha = (read_checkpoint_config(checkpoint).get("tensors") or {}).get("sha256")
    except Exception:  # noqa: BLE001 - an unreadable grid is computed again
        return None
    if not sha or record.get("sha256") != sha:
        return None
    if batch_file is not None and record.get("batch") != Path(batch_file).name:
        return None
    return df, record


# ---------------------------------------------------------------- a sweep's own model

def sweep_checkpoint(results_path: str | Path | None) -> tuple[Path | None, str | None]:
    """``(checkpoint, why not)``: the checkpoint a sweep run folder's manifest records
    (``identity.model.checkpoint``), when it exists and this dashboard may open it."""
    if results_path is None:
        return None, None
    manifest = Path(results_path) / "manifest.json"
    if not manifest.is_file():
        return None, None
    try:
        identity = json.loads(manifest.read_text()).get("identity") or {}
        recorded = (identity.get("model") or {}).get("checkpoint")
    except (OSError, ValueError, AttributeError):
        return None, None
    if not recorded:
        return None, None
    path = Path(recorded)
    if not path.is_absolute():
        path = Path(results_path) / path
    if not sources.is_allowed(path):
        return None, (f"the sweep records its checkpoint {recorded}, which lies outside the folders this dashboard "
                      f"may open: start it with `qnoise dashboard --data {Path(recorded).parent}` to use it")
    if not sources.is_checkpoint(path):
        return None, f"the sweep records its checkpoint {recorded}, which is no longer there"
    return path, None


# ---------------------------------------------------------------- small grid, persisted

CACHE_ENV = "QNOISE_DASHBOARD_CACHE"


def cache_dir() -> Path:
    """Where analysed grids are kept between runs: ``$QNOISE_DASHBOARD_CACHE``, else
    ``~/.cache/qnoise/dashboard``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "qnoise" / "dashboard"


def grid_cache_file(checkpoint: str | Path, batch_file: str | None, cells: list, samples: int) -> Path:
    """The parquet file holding a grid analysed for this checkpoint (its tensors' SHA-256), data and grid."""
    import hashlib
    import json

    import qnoise
    from qnoise.io import read_checkpoint_config

    sha = (read_checkpoint_config(checkpoint).get("tensors") or {}).get("sha256") or sources.stamp(checkpoint)
    data = sources.stamp(batch_file) if batch_file else "dataset"
    key = json.dumps([sha, str(data), cells, samples, qnoise.__version__], sort_keys=True, default=str)
    return cache_dir() / f"grid-{Path(checkpoint).name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.parquet"


def read_grid_cache(path: Path) -> pd.DataFrame | None:
    try:
        return sources.check_results(pd.read_parquet(path), str(path)) if path.is_file() else None
    except Exception:  # noqa: BLE001 - a bad cache file is recomputed
        return None


def write_grid_cache(path: Path, df: pd.DataFrame) -> None:
    try:
        from qnoise.io import write_parquet_atomic

        write_parquet_atomic(df, path, {"what": "qnoise dashboard grid cache"})
    except OSError:  # a read-only home: the in-memory cache still holds it
        pass


# ---------------------------------------------------------------- exports

@st.cache_data(show_spinner=False, max_entries=64)
def table_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "csv":
        return df.to_csv(index=False).encode()
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def png_export_available() -> tuple[bool, str]:
    """Whether figures can be saved as PNG on the server (kaleido + a Chrome/Chromium), and why not."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False, ("PNG files from the server need the optional kaleido package (pip install kaleido) and "
                       "Chromium; the camera icon in each figure's toolbar saves a PNG from the browser")
    from dashboard.serve import find_chromium

    if not os.environ.get("BROWSER_PATH"):
        chromium = find_chromium()
        if chromium is None:
            return False, "kaleido found no Chrome/Chromium; the camera icon in each figure's toolbar saves a PNG"
        os.environ["BROWSER_PATH"] = chromium  # kaleido (choreographer) uses this browser
    return True, ""


def figure_png(fig) -> bytes:
    """The figure as a PNG (kaleido driving Chromium); raise RuntimeError when that is not possible."""
    ok, why = png_export_available()
    if not ok:
        raise RuntimeError(why)
    return fig.to_image(format="png", scale=2)
