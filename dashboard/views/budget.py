"""Budget: the best accuracy within a memory / energy budget, or the cheapest configuration within a tolerance
that the accuracies' intervals support; the choice downloadable as a config or a checkpoint.

The page works on a table of configurations, one row each: ``weight_bits``, ``timesteps``, ``accuracy``,
``samples``, ``ci_low``, ``ci_high``, ``memory_bits``, ``energy_pj`` (`budget_points`; a mixed-precision
search's records table has the same columns, with a ``label``, and can take its place)."""

import io
import json
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import controls, grids, state, ui
from dashboard import figures as F
from qnoise import __version__, insights
from qnoise.choice import best_within_budget, cheapest_within_tolerance, setting_of, with_intervals
from qnoise.report import readable

ctx = ui.context("Budget")
st.title("Budget")


def budget_points(grid) -> pd.DataFrame:
    """One row per configuration with its accuracy's interval and costs in KiB and nJ."""
    return with_intervals(insights.config_table(grid.frame), grid.samples)


COST_NAMES = {"memory_bits": "memory (KiB)", "energy_pj": "energy per sample", "synops": "synaptic operations"}


def label_keys(points: pd.DataFrame) -> list[str]:
    """The configuration columns that vary (a label names only what tells configurations apart)."""
    keys = [k for k in ("dataset", "weight_bits", "timesteps", "state_bits", "rounding", "neuron")
            if k in points.columns and points[k].nunique(dropna=False) > 1]
    return keys or ["weight_bits", "timesteps"]


def describe_row(row: pd.Series) -> str:
    cfg = str(row["label"]) if "label" in row.index else F.config_label(row, KEYS)
    parts = [f"**{cfg}**", f"accuracy {100 * row['accuracy']:.1f}%"]
    if pd.notna(row.get("ci_low")):
        parts.append(f"95% interval {100 * row['ci_low']:.1f} – {100 * row['ci_high']:.1f}% "
                     f"({int(row['samples'])} samples)")
    if "memory_bits" in row.index:
        parts.append(f"{row['memory_bits'] / 8192:.1f} KiB")
    if "energy_pj" in row.index:
        div, unit = F.energy_unit([row["energy_pj"]])
        parts.append(f"{row['energy_pj'] / div:.3g} {unit} per sample")
    return ", ".join(parts)


def config_json(row: pd.Series, how: str) -> bytes:
    setting = setting_of(row)
    per_layer = {k: (None if pd.isna(v) else v) for k, v in row.items() if str(k).startswith(("w:", "v:"))}
    cmd = " ".join([f"qnoise analyze --checkpoint {ctx.checkpoint}" if ctx.checkpoint else "qnoise analyze"]
                   + [f"--{k.replace('_', '-')} {v}" for k, v in setting.items() if k in ("weight_bits", "timesteps",
                                                                                        "state_bits", "rounding",
                                                                                        "neuron")])
    doc = {"format": "qnoise-chosen-configuration", "qnoise": __version__, "model": ui.subject(ctx),
           "checkpoint": str(ctx.checkpoint) if ctx.checkpoint else None, "chosen by": how, "setting": setting,
           "accuracy": float(row["accuracy"]), "samples": None if pd.isna(row.get("samples")) else int(row["samples"]),
           "ci_low": None if pd.isna(row.get("ci_low")) else float(row["ci_low"]),
           "ci_high": None if pd.isna(row.get("ci_high")) else float(row["ci_high"]),
           "memory_kib": float(row["memory_bits"]) / 8192 if "memory_bits" in row.index else None,
           "energy_nj": float(row["energy_pj"]) / 1000 if "energy_pj" in row.index else None, "command": cmd}
    if per_layer:  # a search's row: its per-layer bits (w: weights, v: membrane)
        doc["per_layer"] = {k: (int(v) if isinstance(v, (int, float)) else v) for k, v in per_layer.items()}
        doc["label"] = str(row.get("label"))
    return json.dumps(doc, indent=2).encode()


def checkpoint_zip(row: pd.Series, how: str) -> bytes:
    from qnoise.choice import save_configuration
    from qnoise.search.result import candidate_of
    from qnoise.search.result import save_configuration as save_candidate

    model, lock = state.load_model(ctx.checkpoint)
    with tempfile.TemporaryDirectory(prefix="qnoise-chosen-") as tmp, lock:
        if from_search:  # a search's row: every layer at its own bits
            folder = save_candidate(model, candidate_of(row), Path(tmp) / "chosen", row, note={"chosen_by": how})
        else:
            folder = save_configuration(model, setting_of(row), Path(tmp) / "chosen",
                                        metrics={"budget_accuracy": float(row["accuracy"])}, note={"chosen_by": how})
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(folder.iterdir()):
                z.write(f, f"{ctx.checkpoint.name}-chosen/{f.name}")
        return buf.getvalue()


searches = ctx.catalog.searches if ctx.catalog is not None else {}
origin = "grid"
if searches:
    origin = controls.choice("radio", "Configurations from", ["the model's grid", *(f"search: {k}" for k in searches)],
                             "bg_source", horizontal=True,
                             help="a mixed-precision search's table (qnoise search) has one row per per-layer "
                                  "configuration, with its interval")
if origin.startswith("search: "):
    from qnoise.table_files import read_parquet

    label = origin.split(": ", 1)[1]
    table, _ = read_parquet(searches[label])
    n = int(table["samples"].max()) if "samples" in table and table["samples"].notna().any() else None
    grid = grids.Grid(table, n, f"the search table {label} ({len(table)} evaluated configurations, {n} samples each)")
else:
    grid = ui.grid_results(ctx, "bg")
if grid is None:
    st.stop()
from_search = origin.startswith("search: ")
with ui.guard("build the budget table"):
    points = with_intervals(grid.frame, grid.samples) if from_search else budget_points(grid)
    KEYS = label_keys(points)
    costs = [c for c in ("memory_bits", "energy_pj", "synops") if c in points.columns]
    if "accuracy" not in points.columns or not costs:
        raise ValueError("the results table needs run-level accuracy and memory_bits or energy_pj rows")
    subject = ui.subject(ctx, samples=grid.samples)
    st.caption(f"Configurations from {grid.source}. "
               + ("Every accuracy carries its 95% Wilson interval." if grid.samples else
                  "The table does not record its sample count: no intervals, and a tolerance cannot be checked "
                  "against them."))
    c = st.columns([2, 1])
    how = controls.choice("radio", "Choose", ["best accuracy within a budget", "cheapest within a tolerance"],
                          "bg_mode", where=c[0], horizontal=True)
    cost = controls.choice("selectbox", "Cost axis", costs, "bg_cost", where=c[1],
                           format_func=lambda k: COST_NAMES.get(k, F.label(k)))
    limit = None
    if how.startswith("best"):
        c = st.columns(2)
        mem_top = float(points["memory_bits"].max() / 8192) if "memory_bits" in points else 0.0
        mem = controls.number("number_input", "Memory at most (KiB; 0: no limit)", "bg_mem_kib",
                              round(float(points["memory_bits"].median() / 8192), 1) if mem_top else 0.0, where=c[0],
                              min_value=0.0, step=1.0)
        en = controls.number("number_input", "Energy at most (nJ per sample; 0: no limit)", "bg_energy_nj", 0.0,
                             where=c[1], min_value=0.0, step=10.0)
        chosen = best_within_budget(points, memory_kib=mem or None, energy_nj=en or None)
        limit = (mem * 8192 if mem and cost == "memory_bits" else en * 1000 if en and cost == "energy_pj" else None)
        rule = " and ".join(x for x in (f"memory ≤ {mem:g} KiB" if mem else "", f"energy ≤ {en:g} nJ" if en else "")
                            if x) or "no budget"
        if chosen is None:
            st.warning(f"No configuration fits {rule}.")
        else:
            st.success(f"Best within {rule}: {describe_row(chosen)}.")
    else:
        best = points.loc[points["accuracy"].idxmax()]
        half = (100 * (best["ci_high"] - best["ci_low"]) / 2) if pd.notna(best.get("ci_low")) else 0.0
        tol = controls.number("slider", "Tolerance (accuracy points below the best)", "bg_tol",
                              float(max(1.0, round(half + 0.25, 1))), min_value=0.0, max_value=20.0, step=0.25)
        if half:
            st.caption(f"The best accuracy ({100 * best['accuracy']:.1f}%, {int(best['samples'])} samples) has a 95% "
                       f"interval of ±{half:.1f} points: a configuration counts as within the tolerance only when "
                       f"the lower end of its own interval is, so that one sample more or less right cannot decide.")
            if tol < half:
                st.warning(f"A tolerance of {tol:g} points is inside the best accuracy's own interval (±{half:.1f}): "
                           f"{int(best['samples'])} samples cannot tell configurations that close apart.")
        chosen = cheapest_within_tolerance(points, tol / 100, cost)
        if chosen is None:
            st.warning(f"No configuration's interval reaches within {tol:g} points of the best "
                       f"({100 * best['accuracy']:.1f}%).")
        else:
            st.success(f"Cheapest by {COST_NAMES.get(cost, F.label(cost))} within {tol:g} points, as its interval "
                       f"supports: "
                       f"{describe_row(chosen)}.")
    front = insights.pareto_front(points, cost)
    ui.show_figure(F.pareto_scatter(points, cost, front, chosen, limit=limit), f"pareto_{cost}", "bg_pareto",
                   subject=subject)
    if chosen is not None:
        ui.describe(configuration=f"chosen: {chosen['label'] if 'label' in chosen.index else F.config_label(chosen, KEYS)}"
                                  f" ({how})")
        row = st.container(horizontal=True)
        row.download_button("Chosen configuration (JSON)", data=lambda r=chosen: config_json(r, how),
                            file_name=f"{ctx.checkpoint.name if ctx.checkpoint else 'model'}-chosen.json",
                            mime="application/json", key="bg_cfg_json", icon=":material/download:", on_click="ignore")
        if ctx.checkpoint is not None:
            row.download_button("Chosen configuration as a checkpoint (zip)", data=lambda r=chosen: checkpoint_zip(r, how),
                                 file_name=f"{ctx.checkpoint.name}-chosen.zip", mime="application/zip",
                                 key="bg_ckpt_zip", icon=":material/download:", on_click="ignore",
                                 help="model.safetensors + config.json at the chosen weight bits, state bits and T")
        if from_search:  # the search's choice per layer: a table and a bar per layer of bits
            ui.show_figure(F.layer_bits_bars(chosen, subject=subject), "chosen_layers", "bg_layers", subject=subject)
            bits = pd.DataFrame([{"layer": str(k)[2:], "kind": "weights" if str(k).startswith("w:") else "membrane",
                                  "bits": "float" if v >= 32 else int(v)} for k, v in chosen.items()
                                 if str(k).startswith(("w:", "v:")) and v == v])
            ui.show_table(bits, "chosen_layers", "bg_layers_table")
    st.markdown("**Pareto front** (accuracy and its interval in %, memory in KiB, energy per sample)")
    ui.show_table(readable(front), "pareto_front", "bg_front")
with st.expander("All configurations"):
    ui.show_table(readable(points), "configurations", "bg_all")
