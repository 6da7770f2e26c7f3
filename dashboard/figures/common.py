"""What every plot builder shares: the table's vocabulary (columns, metric labels), validation and selection,
the figure style, units, and the line naming what a figure shows (model and configuration)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

COLUMNS = ("model", "dataset", "weight_bits", "state_bits", "timesteps", "rounding", "neuron", "layer", "t",
           "metric", "value")
CONFIG_COLUMNS = ("model", "dataset", "weight_bits", "state_bits", "timesteps", "rounding", "neuron", "reference")
OUTPUT = "<output>"
TEMPLATE = "plotly_white"
FLOAT_BITS = 32  # the table's weight_bits / state_bits for full precision

# the error terms (qnoise.probe.terms), in the order they stack
ERROR_PARTS = ("weight", "own", "prop", "quant", "seq")
ERROR_NAMES = {"weight": "weight", "own": "own precision", "prop": "propagated", "quant": "quantization",
               "seq": "sequential"}
ERROR_COLORS = {"weight": "#B279A2", "own": "#B279A2", "prop": "#54A24B", "quant": "#4C78A8", "seq": "#F58518"}

# DESIGN.md, "Metric names": readable labels for axes and legends
LABELS = {
    "sqnr_db": "SQNR (dB)", "mse": "MSE", "nmse": "NMSE (torch.ao's normalized L2 error, squared)",
    "cosine": "cosine similarity",
    **{f"err_{k}_mse": f"{n} error (MSE)" for k, n in ERROR_NAMES.items()},
    **{f"err_{k}_mean": f"{n} error (mean)" for k, n in ERROR_NAMES.items()},
    **{f"err_{k}_contrib": f"{n} error (its part of the MSE, in MSE units)" for k, n in ERROR_NAMES.items()},
    "err_total_mse": "total error (MSE)", "err_total_mean": "total error (mean)",
    "firing_rate": "firing rate", "membrane_sqnr_db": "membrane SQNR (dB)", "weight_sqnr_db": "weight SQNR (dB)",
    "weight_bits": "weight bits", "params": "parameters", "synops": "synaptic operations", "macs": "MACs",
    "accuracy": "SNN accuracy", "ann_accuracy": "ANN accuracy", "agreement": "SNN/reference agreement",
    "float_snn_accuracy": "float SNN accuracy", "source_accuracy": "source ANN accuracy",
    "energy_pj": "energy (pJ)", "ann_energy_pj": "ANN energy (pJ)", "memory_bits": "memory (bits)",
    "memory_kib": "memory (KiB)", "energy_nj": "energy per sample (nJ)",
}
LAYER_TIME_METRICS = ("sqnr_db", "mse", "nmse", "cosine", "err_total_mse", "err_total_mean",
                      *(f"err_{k}_{s}" for k in ERROR_PARTS for s in ("contrib", "mean", "mse")),
                      "firing_rate", "membrane_sqnr_db")
# accuracy-like metrics: shown as percentages
FRACTIONS = ("accuracy", "ann_accuracy", "agreement", "float_snn_accuracy", "source_accuracy")


def label(metric: str) -> str:
    """Readable name of a metric (the metric's own name when it has none)."""
    return LABELS.get(metric, metric)


# ---------------------------------------------------------------- validation and selection

def check_frame(df, *, columns: Iterable[str] = ("layer", "t", "metric", "value"),
                metrics: Iterable[str] = (), what: str = "this figure") -> pd.DataFrame:
    """Raise ``ValueError`` unless ``df`` is a non-empty DataFrame with ``columns`` and rows of ``metrics``."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what} needs a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs column(s) {missing}; the table has {list(df.columns)}")
    if df.empty:
        raise ValueError(f"{what} got an empty table")
    metrics = list(metrics)
    if metrics:
        have = set(df["metric"].unique())
        lacking = [m for m in metrics if m not in have]
        if len(lacking) == len(metrics):
            raise ValueError(f"{what} needs metric(s) {lacking}; the table has {sorted(map(str, have))}")
    return df


def layers_in_order(df: pd.DataFrame) -> list[str]:
    """Layer names in the order the table lists them (the network's order), run-level rows left out."""
    return [str(x) for x in pd.unique(df["layer"]) if x != OUTPUT]


def is_missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))


def bits_name(v) -> str:
    """``"4-bit"``; full precision (32, or missing) is ``"float"``, everywhere."""
    if is_missing(v) or float(v) >= FLOAT_BITS:
        return "float"
    return f"{int(v)}-bit" if float(v).is_integer() else str(v)


_bits_name = bits_name  # the name earlier code used


def config_label(row: Mapping | pd.Series, keys: Sequence[str] = ("weight_bits", "timesteps")) -> str:
    """Short name of a configuration, e.g. ``"W4 T8"``; full precision is ``"W float"`` (never "W32")."""
    short = {"weight_bits": "W", "state_bits": "S", "timesteps": "T", "rounding": "", "neuron": "", "dataset": "",
             "model": "", "mode": ""}
    parts = []
    for k in keys:
        if k not in row:
            continue
        v = row[k]
        if k in ("weight_bits", "state_bits") and (is_missing(v) or float(v) >= FLOAT_BITS):
            parts.append(f"{short[k]} float")
            continue
        if is_missing(v):
            continue
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        parts.append(f"{short.get(k, k + '=')}{v}")
    return " ".join(parts)


def final_t(df: pd.DataFrame) -> pd.DataFrame:
    """Rows at the last timestep of each configuration (the value after all T steps)."""
    if "t" not in df.columns:
        return df
    keys = [c for c in (*CONFIG_COLUMNS, "mode", "layer", "metric", "variant") if c in df.columns]
    if df.empty:
        return df
    t = pd.to_numeric(df["t"], errors="coerce")
    last = t.groupby([df[k] for k in keys], dropna=False).transform("max") if keys else pd.Series(t.max(), df.index)
    return df[(t == last) | t.isna()]


def select(df: pd.DataFrame, metric: str | None = None, layer: str | None = None, **config) -> pd.DataFrame:
    """Rows of one metric and/or layer and configuration values (``None`` values match missing ones)."""
    mask = pd.Series(True, index=df.index)
    if metric is not None:
        mask &= df["metric"] == metric
    if layer is not None:
        mask &= df["layer"] == layer
    for k, v in config.items():
        if k not in df.columns:
            continue
        mask &= df[k].isna() if v is None else (df[k] == v)
    return df[mask]


def sorted_bits(values) -> list:
    """Bit widths ascending, float (32 or missing) last."""
    vals = list(pd.unique(pd.Series(list(values))))
    known = sorted(v for v in vals if not is_missing(v))
    return known + [v for v in vals if is_missing(v)]


_sorted_bits = sorted_bits


def bits_mask(series: pd.Series, bits) -> pd.Series:
    if is_missing(bits):
        return series.isna()
    return series == bits


_bits_mask = bits_mask


# ---------------------------------------------------------------- style and units

def _base(fig: go.Figure, title: str, height: int = 420, subject: str | None = None) -> go.Figure:
    """The common style; ``subject`` (model and configuration) is a second, smaller title line."""
    text = title if not subject else f"{title}<br><sup>{subject}</sup>"
    fig.update_layout(template=TEMPLATE, title=dict(text=text, x=0.01, xanchor="left"), height=height,
                      margin=dict(l=60, r=20, t=70 if subject else 50, b=50))
    return fig


base = _base


def with_subject(fig: go.Figure, subject: str | None) -> go.Figure:
    """The figure with a second title line naming its model and configuration (once: a figure that names
    one already keeps it)."""
    if not subject:
        return fig
    title = fig.layout.title.text or ""
    if "<sup>" in title:
        return fig
    fig.update_layout(title_text=f"{title}<br><sup>{subject}</sup>", margin_t=max(84, fig.layout.margin.t or 0))
    return fig


ENERGY_UNITS = ((1e6, "µJ"), (1e3, "nJ"), (1.0, "pJ"))


def energy_unit(values_pj) -> tuple[float, str]:
    """``(divisor, unit)`` for energies in pJ: the largest of µJ, nJ, pJ the largest value reaches."""
    arr = np.asarray(pd.to_numeric(pd.Series(list(np.ravel(values_pj))), errors="coerce"), dtype=float)
    top = float(np.nanmax(np.abs(arr))) if arr.size and np.isfinite(arr).any() else 0.0
    for div, unit in ENERGY_UNITS:
        if top >= div:
            return div, unit
    return 1.0, "pJ"


def kib(bits) -> float | np.ndarray:
    """Bits as KiB (1 KiB = 8192 bits)."""
    return np.asarray(bits, dtype=float) / 8192.0


def log_ticks(values) -> list[float]:
    """Tick values 1, 2, 5, 10, 20, 50, ... spanning ``values`` (a log axis whose ticks read as numbers, not
    as plotly's bare minor digits)."""
    v = np.asarray(pd.to_numeric(pd.Series(list(np.ravel(values))), errors="coerce"), dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return []
    lo, hi = np.floor(np.log10(v.min())), np.ceil(np.log10(v.max()))
    ticks = [m * 10.0 ** e for e in np.arange(lo - 1, hi + 1) for m in (1, 2, 5)]
    inside = [t for t in ticks if v.min() / 1.6 <= t <= v.max() * 1.6]
    return inside if len(inside) >= 2 else [t for t in ticks if v.min() / 10 <= t <= v.max() * 10]


def integer_axis(fig: go.Figure, values, title: str, **where) -> None:
    """An x axis of whole numbers (timesteps): a tick at each value when there are few, never 1.5."""
    vals = sorted({int(v) for v in values if not is_missing(v)})
    if vals and len(vals) <= 20:
        fig.update_xaxes(title=title, tickmode="array", tickvals=vals, ticktext=[str(v) for v in vals], **where)
    else:
        fig.update_xaxes(title=title, tickformat="d", **where)


def to_html(fig: go.Figure) -> bytes:
    """A standalone HTML page of the figure that works offline (plotly.js inlined, ~4 MB)."""
    return fig.to_html(include_plotlyjs=True, full_html=True).encode()
