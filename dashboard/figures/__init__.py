"""Plot builders of the dashboard: plain functions from qnoise's tidy tables (or small arrays) to plotly
figures. No Streamlit here, and no math beyond selecting and reshaping: every number comes from qnoise.

Results tables follow DESIGN.md ("Results: one tidy table"): long form, one row per
(config, layer, t, metric) with columns ``model, dataset, weight_bits, state_bits, timesteps, rounding,
neuron, reference, mode, layer, t, metric, value``; run-level rows have ``layer = "<output>"``. A frame that
lacks what a builder needs raises ``ValueError`` naming what is missing. Every builder takes ``subject``: a
second title line naming the model and configuration, so an exported figure says what it shows.

One module per page group: `common` (vocabulary, selection, units), `overview`, `layers`, `spikes`,
`diagnose`, `budget`, `learn`.
"""

from .budget import cost_axis, layer_bits_bars, pareto_scatter
from .common import (
    COLUMNS,
    CONFIG_COLUMNS,
    ERROR_COLORS,
    ERROR_NAMES,
    ERROR_PARTS,
    FLOAT_BITS,
    FRACTIONS,
    LABELS,
    LAYER_TIME_METRICS,
    OUTPUT,
    TEMPLATE,
    _base,
    _bits_mask,
    _bits_name,
    _sorted_bits,
    bits_name,
    check_frame,
    config_label,
    energy_unit,
    final_t,
    integer_axis,
    kib,
    label,
    layers_in_order,
    select,
    sorted_bits,
    to_html,
    with_subject,
)
from .diagnose import activation_scatter, drop_profile
from .layers import (
    config_comparison,
    difference_heatmap,
    error_decomposition,
    layer_time_grid,
    layer_time_heatmap,
    per_layer_bars,
    sensitivity_bars,
    value_range,
)
from .learn import neuron_figure, sigmoid_sum_figure, staircase_figure
from .overview import accuracy_vs_timesteps, class_accuracy_bars, cost_comparison, metric_heatmap, runs_overlay
from .spikes import (
    MAX_LEVELS_DRAWN,
    firing_rate_lines,
    membrane_histogram,
    membrane_traces,
    spike_raster,
    value_histogram,
)


__all__ = [
    "COLUMNS",
    "CONFIG_COLUMNS",
    "ERROR_COLORS",
    "ERROR_NAMES",
    "ERROR_PARTS",
    "FLOAT_BITS",
    "FRACTIONS",
    "LABELS",
    "LAYER_TIME_METRICS",
    "OUTPUT",
    "TEMPLATE",
    "_base",
    "_bits_mask",
    "_bits_name",
    "_sorted_bits",
    "bits_name",
    "check_frame",
    "config_label",
    "energy_unit",
    "final_t",
    "integer_axis",
    "kib",
    "label",
    "layers_in_order",
    "select",
    "sorted_bits",
    "to_html",
    "with_subject",
    "config_comparison",
    "difference_heatmap",
    "error_decomposition",
    "layer_time_grid",
    "layer_time_heatmap",
    "per_layer_bars",
    "sensitivity_bars",
    "value_range",
    "MAX_LEVELS_DRAWN",
    "firing_rate_lines",
    "membrane_histogram",
    "membrane_traces",
    "spike_raster",
    "value_histogram",
    "cost_axis",
    "layer_bits_bars", "pareto_scatter",
    "activation_scatter",
    "drop_profile",
    "neuron_figure",
    "sigmoid_sum_figure",
    "staircase_figure",
    "accuracy_vs_timesteps",
    "class_accuracy_bars",
    "cost_comparison",
    "metric_heatmap",
    "runs_overlay",
]
