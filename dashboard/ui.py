"""Shared page parts: the sidebar (where the data comes from), configuration controls, figures with their
downloads, tables with theirs, and errors shown as messages rather than tracebacks."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import figures as F
from dashboard import sources, state

WEIGHT_BITS = ["as trained", "float", 1, 2, 3, 4, 6, 8]
STATE_BITS = ["as trained", "float", 4, 6, 8, 12, 16]
NEURONS = {"as trained": None, "IF": "if", "signed IF": "signed"}
TIMESTEPS = [1, 2, 3, 4, 6, 7, 8, 12, 15, 16, 24, 31, 32, 48, 64]
ROUNDINGS = ["nearest", "truncate", "stochastic"]
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


@dataclass
class Context:
    """What the sidebar chose: the folder, its catalog, a checkpoint and a results table (either may be None)."""

    folder: Path
    catalog: sources.Catalog | None = None
    checkpoint: Path | None = None
    checkpoint_label: str | None = None
    results_path: Path | None = None
    uploads: dict = field(default_factory=dict)

    @property
    def batch_file(self) -> str | None:
        if self.catalog is None or self.checkpoint is None:
            return None
        try:
            return state.batch_file_for(self.catalog, self.checkpoint)
        except Exception:  # a bad card is reported where the card is drawn
            return None


# ---------------------------------------------------------------- errors

@contextlib.contextmanager
def guard(what: str):
    """Show any error while doing ``what`` as a message in the page; the rest of the page still runs."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - the point is to never show a traceback
        st.error(f"Could not {what}: {message(err)}", icon="⚠️")


def message(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    if not isinstance(err, (ValueError, FileNotFoundError, RuntimeError, KeyError)):
        text = f"{type(err).__name__}: {text}"
    return text


# ---------------------------------------------------------------- sidebar

def _keep(key: str) -> None:
    """Carry a sidebar widget's value across pages: Streamlit forgets the state of a widget that the next
    page draws anew, so the value also lives under ``_<key>`` and is restored before the widget is drawn."""
    st.session_state[f"_{key}"] = st.session_state[key]


def _restore(key: str, default) -> None:
    ss = st.session_state
    ss[key] = ss.get(f"_{key}", default)


def _pick(label: str, options: list[str], key: str, help: str | None = None) -> str | None:
    if not options:
        return None
    _restore(key, options[0])
    if st.session_state[key] not in options:
        st.session_state[key] = options[0]
    return st.selectbox(label, options, key=key, help=help, on_change=_keep, args=(key,))


def sidebar() -> Context:
    """Draw the data-source sidebar and return the chosen context (also kept in session_state)."""
    ss = st.session_state
    default = str(sources.default_dir())
    ss.setdefault("uploads", {})
    _restore("folder", default)
    with st.sidebar:
        st.markdown("### Data")
        st.text_input("Folder (sample, checkpoint, sweep run or .parquet)", key="folder", on_change=_keep,
                      args=("folder",),
                      help="Opens on the bundled sample_data/. Any folder holding qnoise checkpoints "
                           "(model.safetensors + config.json) or results tables (.parquet, sweep runs).")
        if ss["folder"] != default:
            st.button("Back to the sample", on_click=lambda: ss.update(_folder=default), key="reset_folder")
        ctx = Context(folder=Path(ss["folder"]).expanduser(), uploads=ss["uploads"])
        try:
            ctx.catalog = state.current_catalog(str(ctx.folder))
        except Exception as err:  # noqa: BLE001
            st.error(f"Cannot open {ctx.folder}: {message(err)}", icon="⚠️")
        checkpoints: dict[str, Path] = {}
        if ctx.catalog is not None:
            checkpoints.update(ctx.catalog.checkpoints)
        checkpoints.update({f"uploaded: {k}": Path(v) for k, v in ss["uploads"].items() if Path(v).is_dir()})
        label = _pick("Model (checkpoint)", list(checkpoints), "checkpoint_label")
        if label is not None:
            ctx.checkpoint, ctx.checkpoint_label = checkpoints[label], label
        if ctx.catalog is not None:
            label = _pick("Results table (sweep)", list(ctx.catalog.results), "results_label")
            if label is not None:
                ctx.results_path = ctx.catalog.results[label]
        with st.expander("Upload a checkpoint"):
            upload_form()
        st.caption(f"Reading {ctx.folder}")
    ss["ctx"] = ctx
    return ctx


def upload_form() -> None:
    mb = sources.MAX_UPLOAD_BYTES // 2**20
    files = st.file_uploader(f"model.safetensors and config.json (at most {mb} MiB)", accept_multiple_files=True,
                             type=["safetensors", "json"], key="upload_files")
    if st.button("Load the upload", key="upload_go", disabled=not files):
        try:
            data = {}
            for f in files:
                if f.size > sources.MAX_UPLOAD_BYTES:
                    raise ValueError(f"{f.name} is {f.size / 2**20:.1f} MiB; the limit is {mb} MiB")
                data[f.name] = f.getvalue()
            folder = sources.save_upload(data)
        except Exception as err:  # noqa: BLE001
            st.error(f"Upload rejected: {message(err)}", icon="⚠️")
            return
        name = f"{len(st.session_state['uploads']) + 1}"
        st.session_state["uploads"][name] = str(folder)
        st.session_state["_checkpoint_label"] = f"uploaded: {name}"
        st.success("Checkpoint loaded.")
        st.rerun()


def context() -> Context:
    """Every page starts here: it draws the data sidebar and returns the chosen context. (The sidebar is
    drawn by the page, not by app.py before ``nav.run()``: Streamlit's AppTest drops elements the entry
    script writes on reruns, so the pages could not be tested that way.)"""
    return sidebar()


def need_checkpoint(ctx: Context) -> Path:
    if ctx.checkpoint is None:
        st.warning("This page needs a model: choose a folder holding a qnoise checkpoint in the sidebar, or upload "
                   "one.")
        st.stop()
    return ctx.checkpoint


# ---------------------------------------------------------------- configuration controls

def _bits_value(v):
    if v in ("as trained", "float"):
        return {"as trained": None, "float": 32}[v]
    return None if v is None else int(v)


def _bits_option(v):
    return {None: "as trained", 32: "float"}.get(v, v)


def default_config(ctx: Context) -> state.Config:
    t = 8
    if ctx.checkpoint is not None:
        with contextlib.suppress(Exception):
            t = int(state.card(ctx.checkpoint).get("timesteps") or 8)
    return state.Config(timesteps=t)


def config_controls(key: str, base: state.Config, columns: bool = True, extended: bool = True) -> state.Config:
    """Widgets for one configuration; their state lives under ``key`` in this browser session."""
    cols = st.columns(6 if extended else 3) if columns else [*st.columns(3), *st.columns(3)]
    t_opts = sorted(set(TIMESTEPS) | {base.timesteps})
    w = cols[0].selectbox("Weight bits", WEIGHT_BITS, key=f"{key}_w",
                          index=WEIGHT_BITS.index(_bits_option(base.weight_bits)),
                          help="'as trained': the checkpoint's own weights; 1 = binary")
    t = cols[1].select_slider("Timesteps T", t_opts, value=base.timesteps, key=f"{key}_t")
    s = cols[2].selectbox("State bits", STATE_BITS, key=f"{key}_s",
                          index=STATE_BITS.index(_bits_option(base.state_bits)),
                          help="membrane potential quantized to this many bits every step")
    cfg = replace(base, weight_bits=_bits_value(w), timesteps=int(t), state_bits=_bits_value(s))
    if extended:
        r = cols[3].selectbox("Rounding", ROUNDINGS, key=f"{key}_r", index=ROUNDINGS.index(base.rounding))
        names = list(NEURONS)
        n = cols[4].selectbox("Neuron", names, key=f"{key}_n",
                              index=list(NEURONS.values()).index(base.neuron))
        th = cols[5].number_input("Threshold scale", 0.25, 4.0, float(base.threshold_scale), 0.05, key=f"{key}_th",
                                  help="multiplies every neuron's threshold θ")
        cfg = replace(cfg, rounding=r, neuron=NEURONS[n], threshold_scale=float(th))
    return cfg


def is_ann(ctx: Context) -> bool:
    try:
        return ctx.checkpoint is not None and state.card(ctx.checkpoint).get("kind") == "ann"
    except Exception:  # noqa: BLE001 - a bad checkpoint is reported where it is loaded
        return False


def ann_note(ctx: Context) -> None:
    st.info(f"{ctx.checkpoint_label} is an ANN (no spiking neurons): the probe analyses SNNs. Choose an SNN in "
            f"the sidebar — e.g. the one converted from it.", icon="ℹ️")


def analysis_for(ctx: Context, cfg: state.Config, keep: int = 0, isolate: bool = False):
    """``(table, tensors)`` for a configuration of the chosen model (cached), or stop the page with a message."""
    ckpt = need_checkpoint(ctx)
    if is_ann(ctx):
        ann_note(ctx)
        st.stop()
    try:
        return state.analysis(ckpt, cfg, ctx.batch_file, keep=keep, isolate=isolate)
    except Exception as err:  # noqa: BLE001
        st.error(f"Could not analyse {cfg.label()}: {message(err)}", icon="⚠️")
        st.stop()


def results_for(ctx: Context) -> pd.DataFrame | None:
    """The chosen results table, or None (with a message when it could not be read)."""
    if ctx.results_path is None:
        return None
    try:
        return state.load_results(ctx.results_path)
    except Exception as err:  # noqa: BLE001
        st.error(f"Could not read {ctx.results_path}: {message(err)}", icon="⚠️")
        return None


# ---------------------------------------------------------------- figures and tables

def show_figure(fig: go.Figure, name: str, key: str) -> None:
    """Draw a figure with its HTML download (and PNG where the server can render it)."""
    st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG, theme=None)
    row = st.container(horizontal=True, vertical_alignment="center")
    row.download_button("HTML", data=lambda f=fig: F.to_html(f), file_name=f"{name}.html", mime="text/html",
                        key=f"{key}_html", icon=":material/download:", help="standalone page, works offline")
    ok, why = state.png_export_available()
    if ok:
        row.download_button("PNG", data=lambda f=fig: state.figure_png(f), file_name=f"{name}.png",
                            mime="image/png", key=f"{key}_png", icon=":material/download:")
    else:
        row.caption("PNG: camera icon in the figure's toolbar", help=why)


def show_table(df: pd.DataFrame, name: str, key: str, show: bool = True) -> None:
    if show:
        st.dataframe(df, hide_index=True, key=f"{key}_df", height=min(400, 38 + 35 * len(df)))
    row = st.container(horizontal=True)
    row.download_button("CSV", data=lambda: state.table_bytes(df, "csv"), file_name=f"{name}.csv",
                        mime="text/csv", key=f"{key}_csv", icon=":material/download:")
    row.download_button("Parquet", data=lambda: state.table_bytes(df, "parquet"), file_name=f"{name}.parquet",
                        mime="application/octet-stream", key=f"{key}_pq", icon=":material/download:")


# ---------------------------------------------------------------- results for the chosen model

def model_rows(ctx: Context, df: pd.DataFrame, key: str) -> pd.DataFrame:
    """The rows of one model in a results table: the chosen checkpoint's when the table names it, else the
    model picked here."""
    if "model" not in df.columns or df["model"].nunique() <= 1:
        return df
    models = [str(m) for m in pd.unique(df["model"])]
    name = ctx.checkpoint.name if ctx.checkpoint is not None else ""
    guess = name if name in models else next((m for m in models if name and (m in name or name in m)), models[0])
    if st.session_state.get(key) not in models:
        st.session_state[key] = guess
    chosen = st.selectbox("Model in the results table", models, key=key)
    return df[df["model"].astype(str) == chosen]


GRID_BITS = [2, 4, 8, "float"]
GRID_T = [1, 2, 4, 8, 16]
GRID_SAMPLES = 128


def grid_results(ctx: Context, key: str) -> pd.DataFrame | None:
    """Results to draw: the chosen sweep table's rows for this model, or a small grid analysed here on request."""
    df = results_for(ctx)
    if df is not None:
        return model_rows(ctx, df, f"{key}_model")
    if ctx.results_path is not None:  # a table was chosen but could not be read: its error is shown
        return None
    if ctx.checkpoint is None:
        st.info("Choose a folder with a checkpoint or a sweep table in the sidebar.")
        return None
    if is_ann(ctx):
        ann_note(ctx)
        return None
    st.caption(f"No sweep table in this folder: showing a small grid (weight bits {', '.join(map(str, GRID_BITS))}"
               f" x timesteps {', '.join(map(str, GRID_T))}, 128 samples) analysed here and cached for every session. For a full grid run "
               f"`qnoise sweep --checkpoint DIR --out RUN` and open RUN in the sidebar.")
    cells = [(w, t) for w in GRID_BITS for t in GRID_T]
    try:
        cache = state.grid_cache_file(ctx.checkpoint, ctx.batch_file, cells, GRID_SAMPLES)
    except Exception as err:  # noqa: BLE001
        st.error(f"Could not read the checkpoint: {message(err)}", icon="⚠️")
        return None
    done = state.read_grid_cache(cache)
    if done is not None:
        return done
    frames = []
    bar = st.progress(0.0, text="analysing a small grid (once: it is kept on disk)")
    for i, (w, t) in enumerate(cells):
        cfg = state.Config(weight_bits=_bits_value(w), timesteps=t, samples=GRID_SAMPLES)
        frames.append(analysis_for(ctx, cfg)[0])
        bar.progress((i + 1) / len(cells), text=f"analysed {i + 1}/{len(cells)} configurations")
    bar.empty()
    df = pd.concat(frames, ignore_index=True)
    state.write_grid_cache(cache, df)
    return df


def config_frame(ctx: Context, cfg: state.Config, keep: int = 0, isolate: bool = False):
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
            if len(rows) and (rows["layer"] != F.OUTPUT).any():
                return rows, {}
        except Exception:  # noqa: BLE001 - fall back to analysing
            pass
    return analysis_for(ctx, cfg, keep=keep, isolate=isolate)


def present(df: pd.DataFrame, metrics) -> list[str]:
    have = set(df["metric"].unique())
    return [m for m in metrics if m in have]

KEEP_SAMPLES = state.KEEP_SAMPLES
