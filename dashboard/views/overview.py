"""Overview: the model's card, accuracy against timesteps and bits (every accuracy with its sample count and
95% interval), memory and energy beside the ANN, and accuracy per class."""

import pandas as pd
import streamlit as st

from dashboard import analyses, controls, grids, state, ui
from dashboard import figures as F
from qnoise.accuracy import accuracy_interval
from qnoise.choice import with_intervals

ctx = ui.context("Overview")
st.title("Overview")


def samples_of(metrics: dict, key: str) -> int | None:
    """The sample count a card metric was measured on: ``test_accuracy`` -> ``test_samples`` (also for the
    ANN's ``ann_test_accuracy``)."""
    for split in ("test", "val", "train"):
        if split in key and isinstance(metrics.get(f"{split}_samples"), int):
            return metrics[f"{split}_samples"]
    return None


card_samples = None
if ctx.checkpoint is not None:
    with ui.guard("read the model card"):
        card = state.card(ctx.checkpoint)
        st.subheader(f"Model: {ctx.checkpoint_label}")
        m = card["metrics"]
        acc = {k: v for k, v in m.items() if isinstance(v, (int, float)) and "acc" in k}
        cols = st.columns(6)
        cols[0].metric("Architecture", f"{card['arch']} ({card['kind']})")
        cols[1].metric("Parameters", f"{card['params']:,}")
        cols[2].metric("Weight bits", "float" if card["weight_bits"] is None else
                       f"{card['weight_bits']} ({card['weight_method']})")
        cols[3].metric("State bits", "float" if card["state_bits"] is None else card["state_bits"])
        cols[4].metric("Timesteps T", card["timesteps"] or "?")
        ds = card["dataset"]
        cols[5].metric("Dataset", (ds.get("name") if isinstance(ds, dict) else ds) or "?")
        if acc:
            acols = st.columns(min(6, len(acc)))
            for i, (k, v) in enumerate(sorted(acc.items())[:6]):
                n = samples_of(m, k)
                card_samples = card_samples or (n if k == "test_accuracy" else None)
                if n and v <= 1:
                    lo, hi = accuracy_interval(v, n)
                    acols[i].metric(f"{k.replace('_', ' ')} ({n} samples)", f"{100 * v:.2f}%",
                                    help=f"95% Wilson interval {100 * lo:.1f}% – {100 * hi:.1f}% on {n} samples")
                    acols[i].caption(f"95% interval {100 * lo:.1f} – {100 * hi:.1f}%")
                else:
                    acols[i].metric(k.replace("_", " "), f"{100 * v:.2f}%" if v <= 1 else f"{v:.2f}",
                                    help="the checkpoint does not record how many samples this was measured on")
        with st.expander("Thresholds, neuron and layers"):
            neuron = (f"neuron {card['neuron']}, v_init {card['v_init']}, signed {card['signed']}"
                      if card["neuron"] else "ANN (no spiking neurons)")
            st.write(f"{neuron}; input {card['input_shape']}, {card['num_classes']} classes; "
                     f"activation bits {card['act_bits']}; threshold bits {card['threshold_bits']}")
            th = pd.DataFrame([{"layer": k, "mean threshold": v[0], "thresholds": v[1]}
                               for k, v in card["thresholds"].items()])
            if len(th):
                st.dataframe(th, hide_index=True)
            st.code(card["modules"], language=None)

st.subheader("Accuracy, bits and timesteps")
grid = ui.grid_results(ctx, "ov")
if grid is not None:
    grid = grids.one_grid(grid, "ov")
    df = grid.frame
    subject = ui.subject(ctx, samples=grid.samples)
    note = f"From {grid.source}."
    if grid.samples and card_samples and grid.samples != card_samples:
        note += (f" The card's test accuracy is on {card_samples} samples, these accuracies on {grid.samples}: they "
                 f"differ by sampling, within the 95% intervals shown (bars).")
    elif not grid.samples:
        note += " No intervals: the table does not say how many samples its accuracies are on."
    st.caption(note)
    with ui.guard("draw accuracy against timesteps"):
        left, right = st.columns(2)
        with left:
            ui.show_figure(F.accuracy_vs_timesteps(df, samples=grid.samples), "accuracy_vs_timesteps", "ov_acc",
                           subject=subject)
        with right:
            have = [m for m in ("accuracy", "agreement", "energy_pj", "synops", "memory_bits")
                    if m in set(df.loc[df["layer"] == F.OUTPUT, "metric"])]
            metric = controls.choice("selectbox", "Heatmap metric", have or ["accuracy"], "ov_heat_metric",
                                     format_func=F.label)
            ui.show_figure(F.metric_heatmap(df, metric), f"heatmap_{metric}", "ov_heat", subject=subject)
    with ui.guard("draw memory and energy"):
        ui.show_figure(F.cost_comparison(df), "energy_memory", "ov_cost", subject=subject)
    with st.expander("Run-level table (accuracy and its 95% interval in %, memory in KiB, energy per sample)"):
        from qnoise.insights import config_table
        from qnoise.report import readable

        ui.show_table(readable(with_intervals(config_table(df), grid.samples)), "configurations", "ov_table")

if ctx.checkpoint is not None and not ui.is_ann(ctx):
    own = ui.default_config(ctx)
    st.subheader(f"Accuracy per class ({own.label()})")
    with ui.guard("measure the accuracy per class"):
        if analyses.has_class_accuracy(ctx.checkpoint, own, ctx.batch_file):
            table = analyses.class_accuracy(ctx.checkpoint, own, ctx.batch_file)
        else:
            table = ui.with_progress("predicting every class", lambda p: analyses.class_accuracy(
                ctx.checkpoint, own, ctx.batch_file, progress=p))
        ui.show_figure(F.class_accuracy_bars(table), "class_accuracy", "ov_classes",
                       subject=ui.subject(ctx, own, int(table["samples"].iloc[-1])))
        with st.expander("Per-class table"):
            ui.show_table(table, "class_accuracy", "ov_class_table")
