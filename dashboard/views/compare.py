"""Compare runs: any two checkpoints or results tables (sweep folders, .parquet) of the opened folder (and this
session's uploads) overlaid on the same axes: e.g. an SNN and its fine-tuned version, float and imported."""



import pandas as pd
import streamlit as st

from dashboard import controls, grids, ui
from dashboard import figures as F

ctx = ui.context("Compare runs")
st.title("Compare runs")
st.caption("Two runs on one set of axes: a checkpoint contributes its small grid (shipped, kept on disk or "
           "analysed here), a results table its rows. Accuracies carry 95% intervals where the sample count is "
           "known.")

runs: dict[str, tuple[str, object]] = {}
if ctx.catalog is not None:
    runs.update({f"model: {k}": ("checkpoint", p) for k, p in ctx.catalog.checkpoints.items()})
    runs.update({f"table: {k}": ("table", p) for k, p in ctx.catalog.results.items()})
runs.update({f"model: uploaded {k}": ("checkpoint", v) for k, v in ctx.uploads.items()})
if len(runs) < 2:
    st.info("This needs two runs: open a folder holding at least two checkpoints or results tables (the sample has "
            "ten), or upload a checkpoint.")
    st.stop()

names = list(runs)
c = st.columns(2)
first = controls.choice("selectbox", "Run A", names, "cmp_a", where=c[0])
second = controls.choice("selectbox", "Run B", names, "cmp_b", default=names[1], where=c[1])


def run_grid(label: str):
    kind, path = runs[label]
    sub = ui.Context(folder=ctx.folder, catalog=ctx.catalog, uploads=ctx.uploads)
    if kind == "checkpoint":
        sub.checkpoint, sub.checkpoint_label = path, label
    else:
        sub.results_path = path
    return grids.grid_results(sub, f"cmp_{label}")


frames, samples = {}, {}
for label in dict.fromkeys([first, second]):
    with ui.guard(f"read {label}"):
        g = run_grid(label)
        if g is not None:
            short = label.split(": ", 1)[1]
            g = grids.one_grid(g, f"cmp_{label}")
            frames[short], samples[short] = g.frame, g.samples
if len(frames) < 2:
    st.info("Choose two different runs that hold SNN results (an ANN has no spiking results to compare).")
    st.stop()
ui.describe(model=" vs ".join(frames), configuration="each run's grid", data="; ".join(
    f"{k}: {n or 'unknown'} samples" for k, n in samples.items()))

widths = sorted({F.bits_name(b) for df in frames.values() for b in df["weight_bits"].unique()},
                key=lambda n: (n == "float", int(n.split("-")[0]) if n != "float" else 0))
controls.persist("cmp_bits", widths, None)
if not set(st.session_state["cmp_bits"]) <= set(widths):
    controls.set_value("cmp_bits", widths)
shown = st.multiselect("Weight widths shown", widths, key="cmp_bits", on_change=controls.keep, args=("cmp_bits",))
frames_shown = {k: df[df["weight_bits"].map(F.bits_name).isin(shown)] for k, df in frames.items()}
with ui.guard("overlay the accuracies"):
    metric = controls.choice("selectbox", "Run-level metric", [m for m in ("accuracy", "agreement", "energy_pj")
                                                                if all((df["metric"] == m).any()
                                                                       for df in frames.values())],
                             "cmp_metric", format_func=F.label)
    ui.show_figure(F.runs_overlay(frames_shown, metric, samples), f"runs_{metric}", "cmp_overlay",
                   subject=" vs ".join(frames))

st.subheader("Per layer, at one configuration both runs hold")
cells = None
for df in frames.values():
    have = set(map(tuple, F.final_t(df[df["layer"] != F.OUTPUT])[["weight_bits", "timesteps"]]
                   .drop_duplicates().itertuples(index=False)))
    cells = have if cells is None else cells & have
if not cells:
    st.info("The two runs share no configuration with per-layer rows.")
else:
    options = sorted(cells, key=lambda c: (float(c[0]), int(c[1])))
    labels = [F.config_label({"weight_bits": w, "timesteps": t}) for w, t in options]
    at = controls.choice("selectbox", "Configuration", labels, "cmp_cell", default=labels[-1])
    w, t = options[labels.index(at)]
    metric = controls.choice("selectbox", "Per-layer metric", ["sqnr_db", "cosine", "err_total_mse", "firing_rate"],
                             "cmp_layer_metric", format_func=F.label)
    with ui.guard("compare the runs per layer"):
        rows = {k: F.select(df, weight_bits=w, timesteps=t) for k, df in frames.items()}
        ui.show_figure(F.config_comparison(rows, metric), f"runs_per_layer_{metric}", "cmp_layers",
                       subject=f"{' vs '.join(frames)} · {at}")
with st.expander("Run-level tables"):
    from qnoise.choice import with_intervals
    from qnoise.insights import config_table

    table = pd.concat([with_intervals(config_table(df), samples[k]).assign(run=k) for k, df in frames.items()],
                      ignore_index=True)
    ui.show_table(table, "runs", "cmp_table")

