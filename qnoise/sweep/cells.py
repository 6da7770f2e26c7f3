"""A sweep's grid: its cells, their file-safe ids, and which cells can share the reference's activations."""

from __future__ import annotations

import itertools

from ..probe import Setting

AXES = ("weight_bits", "timesteps", "rounding", "state_bits", "neuron")


def _as_list(v) -> list:
    if v is None:
        return [None]
    if isinstance(v, (str, int)):
        return [v]
    out = list(v)
    return out or [None]


def cell_id(cell: dict) -> str:
    """File-safe, readable id: ``w4-T8-nearest-s32-if`` (``model`` where the model's own setting is kept)."""
    def f(v):
        return "model" if v is None else str(v)
    return (f"w{f(cell['weight_bits'])}-T{f(cell['timesteps'])}-{f(cell['rounding'])}-s{f(cell['state_bits'])}"
            f"-{f(cell['neuron'])}")


def make_cells(weight_bits, timesteps, rounding, state_bits, neuron) -> list[dict]:
    """The grid's cells, in order (each axis a list; None keeps the model's own setting). Every value is
    checked before any work (`qnoise.probe.Setting`: ``timesteps=0`` is refused, not run as the model's T),
    and a value repeated on an axis is named."""
    axes = dict(zip(AXES, (_as_list(weight_bits), _as_list(timesteps), _as_list(rounding), _as_list(state_bits),
                           _as_list(neuron)), strict=True))
    for axis, values in axes.items():
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"the grid repeats {axis} value(s) {', '.join(repeated)}")
    cells = []
    for wb, T, r, sb, n in itertools.product(*axes.values()):
        Setting(weight_bits=wb, timesteps=T, rounding=r or "nearest", state_bits=sb, neuron=n)
        cell = {"weight_bits": wb, "timesteps": T, "rounding": r or "nearest", "state_bits": sb, "neuron": n}
        cell["id"] = cell_id(cell)
        cells.append(cell)
    return cells


def twin_key(cell: dict, options: dict, data_key: tuple = (), frames_static: bool = False) -> tuple:
    """Cells with the same key see the same reference activations: same data (and T, unless every step shows
    the same frame for an ANN reference) and, with ``reference="ann-quantized"``, the same weights; the float
    SNN (``"snn"``) runs T steps and keeps the neuron kind."""
    reference = options["compare"]["reference"]
    static = frames_static and reference != "snn"
    key = (*data_key, None if static else cell["timesteps"])
    if reference == "ann-quantized":
        return (*key, cell["weight_bits"], cell["rounding"])
    if reference == "snn":
        return (*key, cell["neuron"])
    return key
