"""Shared page parts: the sidebar (where the data comes from, and the page's report), analyses with a progress
bar, figures and tables with their downloads (each naming its model and configuration), and errors shown as
messages rather than tracebacks. Controls live in `dashboard.controls`, results grids in `dashboard.grids`."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import analyses, controls, sources, state, stored
from dashboard import figures as F
from dashboard.controls import (  # noqa: F401 - the pages' vocabulary
    NEURONS,
    ROUNDINGS,
    STATE_BITS,
    TIMESTEPS,
    WEIGHT_BITS,
    config_controls,
)

PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
KEEP_SAMPLES = state.KEEP_SAMPLES


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

def _pick(label: str, options: list[str], key: str, help: str | None = None, default: str | None = None,
          root: Path | None = None):
    if not options:
        return None
    return controls.choice("selectbox", label, options, key, default=default or options[0], help=help,
                           format_func=lambda k: f"{root.name} (this folder)" if k == "." and root else k)


def _sweep_model(ctx: Context, results: dict[str, Path], checkpoints: dict[str, Path]) -> str | None:
    """Add the checkpoint the chosen sweep records (`stored.sweep_checkpoint`) to ``checkpoints`` unless it is
    there already; returns its label (or None), and says why when the sweep's model cannot be opened."""
    ss = st.session_state
    label = ss.get("_results_label", ss.get("results_label"))
    path = results.get(label) if label in results else next(iter(results.values()), None)
    ckpt, why = stored.sweep_checkpoint(path)
    if why:
        st.caption(f"⚠️ {why}")
    if ckpt is None:
        return None
    for name, p in checkpoints.items():
        if p.resolve() == ckpt.resolve():
            return name
    name = f"from the sweep: {ckpt.name}"
    checkpoints[name] = ckpt
    return name


def sidebar(page: str = "") -> Context:
    """Draw the data-source sidebar and return the chosen context (also kept in session_state)."""
    ss = st.session_state
    default = str(sources.default_dir())
    ss.setdefault("uploads", {})
    controls.persist("folder", default)
    with st.sidebar:
        st.markdown("### Data")
        st.text_input("Folder (sample, checkpoint, sweep run or .parquet)", key="folder", on_change=controls.keep,
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
        from_sweep = _sweep_model(ctx, ctx.catalog.results, checkpoints) if ctx.catalog is not None else None
        checkpoints.update({f"uploaded: {k}": Path(v) for k, v in ss["uploads"].items() if Path(v).is_dir()})
        label = _pick("Model (checkpoint)", list(checkpoints), "checkpoint_label",
                      default=from_sweep if from_sweep and not ctx.catalog.checkpoints else None)
        if label is not None:
            ctx.checkpoint, ctx.checkpoint_label = checkpoints[label], label
        if ctx.catalog is not None:
            label = _pick("Results table (sweep)", list(ctx.catalog.results), "results_label", root=ctx.catalog.root)
            if label is not None:
                ctx.results_path = ctx.catalog.results[label]
        controls.follow_model(ctx.checkpoint)
        with st.expander("Upload a checkpoint"):
            upload_form()
        st.caption(f"Reading {ctx.folder}")
        report_button(page)
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


def context(page: str = "") -> Context:
    """Every page starts here: it draws the data sidebar and returns the chosen context. (The sidebar is
    drawn by the page, not by app.py before ``nav.run()``: Streamlit's AppTest drops elements the entry
    script writes on reruns, so the pages could not be tested that way.)"""
    return sidebar(page)


def need_checkpoint(ctx: Context) -> Path:
    if ctx.checkpoint is None:
        st.warning("This page needs a model: choose a folder holding a qnoise checkpoint in the sidebar, or upload "
                   "one.")
        st.stop()
    return ctx.checkpoint


def default_config(ctx: Context) -> state.Config:
    return controls.default_config(ctx.checkpoint)


def is_ann(ctx: Context) -> bool:
    try:
        return ctx.checkpoint is not None and state.card(ctx.checkpoint).get("kind") == "ann"
    except Exception:  # noqa: BLE001 - a bad checkpoint is reported where it is loaded
        return False


def ann_note(ctx: Context) -> None:
    st.info(f"{ctx.checkpoint_label} is an ANN (no spiking neurons): the probe analyses SNNs. Choose an SNN in "
            f"the sidebar — e.g. the one converted from it.", icon="ℹ️")


# ---------------------------------------------------------------- what a page shows: its subject

def data_name(ctx: Context, samples: int | None = None) -> str:
    """The evaluation data in words, e.g. ``digits-test-256.safetensors, 256 samples``."""
    where = Path(ctx.batch_file).name if ctx.batch_file else (state.dataset_name(ctx.checkpoint) or "data"
                                                              if ctx.checkpoint else "data")
    return f"{where}, {samples} samples" if samples else where


def subject(ctx: Context, cfg: state.Config | None = None, samples: int | None = None) -> str:
    """The line every figure and export carries: model, configuration and data."""
    model = ctx.checkpoint.name if ctx.checkpoint is not None else (ctx.results_path.name if ctx.results_path
                                                                    else "no model")
    parts = [model]
    if cfg is not None:
        parts.append(cfg.label())
    if samples is not None or ctx.batch_file:
        parts.append(data_name(ctx, samples))
    text = " · ".join(parts)
    _page()["info"].update({"model": model, "configuration": cfg.label() if cfg is not None else "—",
                            "data": data_name(ctx, samples),
                            "checkpoint": str(ctx.checkpoint) if ctx.checkpoint else "—"})
    return text


def describe(**facts) -> None:
    """Set what the page's report names (model, configuration, data, ...) where `subject` does not fit."""
    _page()["info"].update(facts)


# ---------------------------------------------------------------- analyses with a progress bar

def analysis_for(ctx: Context, cfg: state.Config, keep: int = 0, isolate: bool = False):
    """``(table, tensors)`` for a configuration of the chosen model, or stop the page with a message. When it
    is not computed yet, a progress bar follows its batches."""
    ckpt = need_checkpoint(ctx)
    if is_ann(ctx):
        ann_note(ctx)
        st.stop()
    bar = None
    try:
        if not analyses.has_analysis(ckpt, cfg, ctx.batch_file, keep, isolate):
            bar = st.progress(0.0, text=f"analysing {cfg.label()}…")

        def progress(frac, text):
            if bar is not None:
                bar.progress(min(1.0, frac), text=f"analysing {cfg.label()}: {text}")

        return analyses.analysis(ckpt, cfg, ctx.batch_file, keep=keep, isolate=isolate, progress=progress)
    except Exception as err:  # noqa: BLE001
        st.error(f"Could not analyse {cfg.label()}: {message(err)}", icon="⚠️")
        st.stop()
    finally:
        if bar is not None:
            bar.empty()


def with_progress(what: str, fn):
    """``fn(progress)`` under a progress bar that ``progress(fraction, text)`` moves, removed afterwards."""
    bar = st.progress(0.0, text=what)
    try:
        return fn(lambda frac, text: bar.progress(min(1.0, frac), text=f"{what}: {text}"))
    finally:
        bar.empty()


def results_for(ctx: Context) -> pd.DataFrame | None:
    """The chosen results table, or None (with a message when it could not be read)."""
    if ctx.results_path is None:
        return None
    try:
        return state.load_results(ctx.results_path)
    except Exception as err:  # noqa: BLE001
        st.error(f"Could not read {ctx.results_path}: {message(err)}", icon="⚠️")
        return None


# ---------------------------------------------------------------- figures and tables, collected for the report

def _page() -> dict:
    """This run's report: the page, what it shows and its figures and tables (reset by `report_button`)."""
    ss = st.session_state
    if "_report" not in ss:
        ss["_report"] = {"page": "", "info": {}, "items": []}
    return ss["_report"]


def _file_stem(name: str) -> str:
    model = _page()["info"].get("model")
    stem = f"{model}_{name}" if model and model != "no model" else name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)


def show_figure(fig: go.Figure, name: str, key: str, subject: str | None = None) -> None:
    """Draw a figure (its title names ``subject``: model and configuration) with its HTML download (and PNG
    where the server can render it); it goes into the page's report."""
    fig = F.with_subject(fig, subject)
    _page()["items"].append((name, fig))
    st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG, theme=None)
    row = st.container(horizontal=True, vertical_alignment="center")
    stem = _file_stem(name)
    row.download_button("HTML", data=lambda f=fig: F.to_html(f), file_name=f"{stem}.html", mime="text/html",
                        key=f"{key}_html", icon=":material/download:", help="standalone page, works offline",
                        on_click="ignore")
    ok, why = state.png_export_available()
    if ok:
        row.download_button("PNG", data=lambda f=fig: state.figure_png(f), file_name=f"{stem}.png",
                            mime="image/png", key=f"{key}_png", icon=":material/download:", on_click="ignore")
    else:
        row.caption("PNG: camera icon in the figure's toolbar", help=why)


def named_table(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``model`` and ``configuration`` columns first when it lacks them: an exported table names
    what it is about."""
    info = _page()["info"]
    out = df.copy()
    if "configuration" not in out.columns and info.get("configuration") not in (None, "—"):
        out.insert(0, "configuration", info["configuration"])
    if "model" not in out.columns and info.get("model"):
        out.insert(0, "model", info["model"])
    return out


def show_table(df: pd.DataFrame, name: str, key: str, show: bool = True) -> None:
    if show:
        st.dataframe(df, hide_index=True, key=f"{key}_df", height=min(400, 38 + 35 * len(df)))
    export = named_table(df)
    _page()["items"].append((name, export))
    row = st.container(horizontal=True)
    stem = _file_stem(name)
    row.download_button("CSV", data=lambda: state.table_bytes(export, "csv"), file_name=f"{stem}.csv",
                        mime="text/csv", key=f"{key}_csv", icon=":material/download:", on_click="ignore")
    row.download_button("Parquet", data=lambda: state.table_bytes(export, "parquet"), file_name=f"{stem}.parquet",
                        mime="application/octet-stream", key=f"{key}_pq", icon=":material/download:",
                        on_click="ignore")


def report_html(report: dict) -> bytes:
    """The page's figures and tables as one standalone HTML file (`qnoise.report.html_page`) naming the
    model, data, configuration and qnoise version."""
    from qnoise.report import html_page

    info = {"page": report.get("page") or "dashboard", **report.get("info", {})}
    sections = []
    for name, item in report.get("items", []):
        title = name
        if isinstance(item, go.Figure) and item.layout.title.text:
            title = re.sub(r"<[^>]+>", " ", item.layout.title.text).strip()
        sections.append((title, item))
    if not sections:
        sections.append(("Nothing drawn", "This page had drawn no figure or table when the report was made."))
    return html_page(f"qnoise dashboard: {info['page']}", info, sections).encode()


def report_button(page: str) -> None:
    """The sidebar's report download. Its file is made when it is clicked, from this run's figures and tables
    (collected by `show_figure` / `show_table` as the page draws them)."""
    ss = st.session_state
    report = {"page": page, "info": {}, "items": []}
    ss["_report"] = report
    st.download_button("Report of this page (HTML)", data=lambda r=report: report_html(r),
                       file_name=f"qnoise-{re.sub(r'[^A-Za-z0-9]+', '-', page.lower()).strip('-') or 'page'}.html",
                       mime="text/html", key="report_html", icon=":material/description:", on_click="ignore",
                       help="every figure and table of this page in one standalone HTML file (works offline), "
                            "naming the model, data, configuration and qnoise version")


def present(df: pd.DataFrame, metrics) -> list[str]:
    have = set(df["metric"].unique())
    return [m for m in metrics if m in have]


# the grids' entry points, where the pages have always found them
def grid_results(ctx: Context, key: str):
    from dashboard import grids

    return grids.grid_results(ctx, key)


def config_frame(ctx: Context, cfg: state.Config, keep: int = 0, isolate: bool = False):
    from dashboard import grids

    return grids.config_frame(ctx, cfg, keep, isolate)
