"""Budget: memory and energy against accuracy over a sweep, the Pareto front, the smallest configuration
within a tolerance."""

import streamlit as st

from dashboard import figures as F
from dashboard import ui
from qnoise import insights

ctx = ui.context()
st.title("Budget")
df = ui.grid_results(ctx, "bg")
if df is None:
    st.stop()
with ui.guard("build the budget table"):
    points = insights.config_table(df)
    costs = [c for c in ("memory_bits", "energy_pj", "synops") if c in points.columns]
    if "accuracy" not in points.columns or not costs:
        raise ValueError("the results table needs run-level accuracy and memory_bits or energy_pj rows")
    c = st.columns(3)
    cost = c[0].selectbox("Cost", costs, key="bg_cost", format_func=F.label)
    tol = c[1].slider("Tolerance (accuracy points below the best)", 0.0, 10.0, 1.0, 0.25, key="bg_tol")
    ref_kind = c[2].radio("Against", ["best SNN in the sweep", "ANN twin"], key="bg_ref", horizontal=True)
    reference = None
    if ref_kind == "ANN twin" and "ann_accuracy" in points.columns:
        reference = float(points["ann_accuracy"].max())
    front = insights.pareto_front(points, cost)
    chosen = insights.smallest_within(points, tol / 100, cost, reference=reference)
    ui.show_figure(F.pareto_scatter(points, cost, front, chosen), f"pareto_{cost}", "bg_pareto")
    if chosen is None:
        st.warning(f"No configuration is within {tol:g} accuracy points of the reference.")
    else:
        desc = ", ".join(f"{k} {chosen[k]}" for k in ("weight_bits", "timesteps", "state_bits", "neuron", "rounding")
                         if k in chosen.index)
        st.success(f"Smallest within {tol:g} accuracy points: **{desc}** — accuracy {100 * chosen['accuracy']:.2f}%, "
                   f"{F.label(cost)} {chosen[cost]:.4g}.")
    st.markdown("**Pareto front**")
    ui.show_table(front, "pareto_front", "bg_front")
with st.expander("All configurations"):
    ui.show_table(points, "configurations", "bg_all")
