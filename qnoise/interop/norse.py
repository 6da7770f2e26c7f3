"""Norse -> qnoise (`from_norse`), through Norse's own NIR export.

Norse 1.x requires torchvision (and, through nirtorch, any torch), so qnoise does not install it: installing
it next to the CPU build of torch would pull a multi-GB CUDA torch. Where Norse is installed, `from_norse`
exports the model with ``norse.torch.to_nir`` and imports the graph with `qnoise.interop.from_nir` at the same
``dt``. Norse's neurons fire with ``>`` (``heaviside(x) = x > 0``), reset to ``v_reset`` right after firing and
add the input to the synaptic current after the voltage update (a one-step input delay for its LIF, which NIR
expresses in its CubaLIF node); these are NIR's defaults in `from_nir`. Untested in qnoise's suite (Norse
cannot be installed there); the NIR import itself is.
"""

from __future__ import annotations

from torch import nn

from .nir_import import DEFAULT_DT, from_nir


def from_norse(model: nn.Module, sample, dt: float = DEFAULT_DT, **kwargs):
    """``from_nir(norse.torch.to_nir(model, sample, time_scaling_factor=...), dt)``; ``sample`` is one input
    batch as Norse wants it for tracing."""
    try:
        import norse.torch as norse_torch
    except ImportError as err:
        raise ImportError("from_norse needs Norse (pip install norse; it requires torchvision, so install it with "
                          "--no-deps next to a CPU torch), or export the model to NIR yourself and use "
                          "qnoise.interop.from_nir") from err
    graph = norse_torch.to_nir(model, sample)
    return from_nir(graph, dt=dt, fire=">", **kwargs)
