"""Loading and caching. Models are loaded once per checkpoint and shared read-only by every browser session
(``st.cache_resource``; an analysis works under the model's lock, on a copy when it changes it); catalogs,
tables, cards and evaluation data are cached by their inputs (``st.cache_data``); what a person chose lives in
``st.session_state``, so two sessions keep their own controls. Analyses: `dashboard.analyses`; what is stored
on disk (shipped grids, kept grids, a sweep's checkpoint): `dashboard.stored`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import sources

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
        r = "" if self.rounding == "nearest" or self.weight_bits in (None, 32) else f", {self.rounding}"
        ref = "" if self.reference == "ann" else f", vs {self.reference}"
        return f"W {w}{r}, T {self.timesteps}{s}{n}{th}{ref}"


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
