"""Results to draw for the Overview, Compare and Budget pages: the chosen sweep table's rows for the model, the grid
shipped beside the checkpoint (`qnoise sample-data` writes the sample's: no analysis at all), a grid analysed
before (kept on disk), or the model's small grid analysed here with a progress bar. Each comes with the number
of samples its accuracies were measured on (None when the table does not say). Figures over weight bits x
timesteps take `one_configuration` of it (Budget keeps every configuration: each is a candidate)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from dashboard import figures as F
from dashboard import analyses, state, stored, ui


@dataclass
class Grid:
    frame: pd.DataFrame
    samples: int | None  # accuracies were measured on this many samples (None: not recorded)
    source: str          # in words, for a caption


def grid_cells(checkpoint) -> list[tuple[int | None, int]]:
    """The model's small grid (`qnoise.train.sample_data.grid_cells`: weight bits 2, 4, 8, float and the
    trained ones x T in 1, 2, 4, 8, 16 and the model's own), the one shipped with the sample."""
    from qnoise.io import read_checkpoint_config
    from qnoise.train.sample_data import grid_cells as cells

    return cells(read_checkpoint_config(checkpoint))


def _describe(cells) -> str:
    bits = list(dict.fromkeys("as trained" if b is None else F.bits_name(b) for b, _ in cells))
    steps = sorted({t for _, t in cells})
    return f"weight bits {', '.join(bits)} x T {', '.join(map(str, steps))}"


def table_samples(df: pd.DataFrame) -> int | None:
    """How many samples a table's accuracies are on, from its own ``samples`` rows (layer ``<output>``) when they
    agree; None when they differ between configurations or the table has none."""
    if "metric" not in df.columns:
        return None
    values = pd.unique(df.loc[(df["metric"] == "samples") & (df["layer"] == F.OUTPUT), "value"].dropna())
    return int(values[0]) if len(values) == 1 else None


def samples_of(ctx: ui.Context, df: pd.DataFrame) -> int | None:
    """The table's own count (`table_samples`); for a table without ``samples`` rows, the sweep's ``limit``."""
    if "metric" in df.columns and (df["metric"] == "samples").any():
        return table_samples(df)
    return sweep_samples(ctx)


def sweep_samples(ctx: ui.Context) -> int | None:
    """How many samples a sweep's accuracies are on, when its manifest says (a ``limit`` on its data)."""
    import json

    if ctx.results_path is None or not (ctx.results_path / "manifest.json").is_file():
        return None
    try:
        data = (json.loads((ctx.results_path / "manifest.json").read_text()).get("identity") or {}).get("data") or {}
    except (OSError, ValueError, AttributeError):
        return None
    limit = data.get("limit")
    return int(limit) if isinstance(limit, int) else None


def grid_results(ctx: ui.Context, key: str) -> Grid | None:
    """Results to draw (module docstring), or None with a message saying why there are none."""
    df = ui.results_for(ctx)
    if df is not None:
        df = model_rows(ctx, df, f"{key}_model")
        n = samples_of(ctx, df)
        return Grid(df, n, f"the results table {ctx.results_path.name}" + (f" ({n} samples)" if n else
                                                                         " (its sample count is not recorded)"))
    if ctx.results_path is not None:  # a table was chosen but could not be read: its error is shown
        return None
    if ctx.checkpoint is None:
        st.info("Choose a folder with a checkpoint or a sweep table in the sidebar.")
        return None
    if ui.is_ann(ctx):
        ui.ann_note(ctx)
        return None
    shipped = stored.shipped_grid(ctx.checkpoint, ctx.batch_file)
    if shipped is not None:
        df, record = shipped
        cells = [(b, t) for b, t in record.get("cells", [])]
        return Grid(df, record.get("samples"), f"the grid shipped with the sample ({_describe(cells)}, "
                                               f"{record.get('samples')} samples of {record.get('batch')})")
    try:
        cells = grid_cells(ctx.checkpoint)
        samples = state.ANALYSIS_SAMPLES
        cache = stored.grid_cache_file(ctx.checkpoint, ctx.batch_file, cells, samples)
    except Exception as err:  # noqa: BLE001
        st.error(f"Could not read the checkpoint: {ui.message(err)}", icon="⚠️")
        return None
    source = (f"a small grid ({_describe(cells)}, {samples} samples) analysed here and kept on disk for every "
              f"session; for a full grid run `qnoise sweep --checkpoint DIR --out RUN` and open RUN")
    done = stored.read_grid_cache(cache)
    if done is not None:
        n = table_samples(done) or samples
        return Grid(done, n, source.replace(f", {samples} samples)", f", {n} samples)"))
    bar = st.progress(0.0, text="analysing the model's small grid (once: it is kept on disk)")
    frames = []
    for i, (w, t) in enumerate(cells):
        cfg = state.Config(weight_bits=w, timesteps=t, samples=samples)
        name = cfg.label()

        def progress(frac, text, i=i, name=name):
            bar.progress(min(1.0, (i + frac) / len(cells)), text=f"grid {i + 1}/{len(cells)}, {name}: {text}")

        try:
            frames.append(analyses.analysis(ctx.checkpoint, cfg, ctx.batch_file, progress=progress)[0])
        except Exception as err:  # noqa: BLE001
            bar.empty()
            st.error(f"Could not analyse {name}: {ui.message(err)}", icon="⚠️")
            return None
    bar.empty()
    df = pd.concat(frames, ignore_index=True)
    df.attrs = {}
    stored.write_grid_cache(cache, df)
    n = table_samples(df) or samples  # the evaluation batch may hold fewer than asked for
    return Grid(df, n, source.replace(f", {samples} samples)", f", {n} samples)"))


PICKED = ("dataset", "rounding", "state_bits", "neuron", "reference")  # besides weight bits and T


def one_configuration(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """The rows of one value of each configuration column (`PICKED`) that varies in ``df``, chosen here in a
    selectbox each: the bits x timesteps figures then show configurations, never an average of several (a
    sweep over membrane bits would otherwise draw the mean of its accuracies)."""
    from dashboard import controls

    for col in PICKED:
        if col in df.columns and df[col].nunique(dropna=False) > 1:
            values = [str(v) for v in pd.unique(df[col])]
            chosen = controls.choice("selectbox", f"{col.replace('_', ' ').capitalize()} in the results table", values,
                                     f"{key}_{col}")
            df = df[df[col].astype(str) == chosen]
    return df


def one_grid(grid: Grid, key: str) -> Grid:
    """`one_configuration` of a grid, its sample count read again from the rows kept (a table whose
    configurations differ in sample count has one count per configuration)."""
    frame = one_configuration(grid.frame, key)
    return Grid(frame, table_samples(frame) or grid.samples, grid.source)


def model_rows(ctx: ui.Context, df: pd.DataFrame, key: str) -> pd.DataFrame:
    """The rows of one model in a results table: the chosen checkpoint's when the table names it, else the
    model picked here."""
    from dashboard import controls

    if "model" not in df.columns or df["model"].nunique() <= 1:
        return df
    models = [str(m) for m in pd.unique(df["model"])]
    name = ctx.checkpoint.name if ctx.checkpoint is not None else ""
    guess = name if name in models else next((m for m in models if name and (m in name or name in m)), models[0])
    chosen = controls.choice("selectbox", "Model in the results table", models, key, default=guess)
    return df[df["model"].astype(str) == chosen]


def config_frame(ctx: ui.Context, cfg: state.Config, keep: int = 0, isolate: bool = False):
    """``(table, tensors)`` for one configuration: the sweep table's rows when it holds that configuration
    with per-layer rows (instant), else a cached analysis of the chosen model."""
    if keep == 0 and not isolate and cfg.neuron is None and cfg.threshold_scale == 1.0 and ctx.results_path \
            and None not in (cfg.weight_bits, cfg.state_bits):
        try:
            df = state.load_results(ctx.results_path)
            rows = F.select(df, weight_bits=cfg.weight_bits, timesteps=cfg.timesteps, state_bits=cfg.state_bits,
                            rounding=cfg.rounding)
            if "model" in rows.columns:
                name = ctx.checkpoint.name if ctx.checkpoint is not None else None
                if name in set(rows["model"].astype(str)):
                    rows = rows[rows["model"].astype(str) == name]
                elif rows["model"].nunique() > 1:
                    rows = rows.iloc[0:0]
            if "mode" in rows.columns:
                rows = rows[rows["mode"] != "isolated"]
            if "reference" in rows.columns:  # the configuration's reference only: terms differ between them
                rows = rows[rows["reference"].astype(str) == cfg.reference]
            if any(c in rows.columns and rows[c].nunique() > 1 for c in ("dataset", "neuron")):
                rows = rows.iloc[0:0]  # not one configuration: analyse the checkpoint instead
            if len(rows) and (rows["layer"] != F.OUTPUT).any():
                rows = rows.copy()
                rows.attrs = {"samples": samples_of(ctx, rows),
                              "source": f"the results table {ctx.results_path.name}"}
                return rows, {}
        except Exception:  # noqa: BLE001 - fall back to analysing
            pass
    return ui.analysis_for(ctx, cfg, keep=keep, isolate=isolate)
