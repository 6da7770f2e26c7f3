"""qnoise: quantization-noise analysis of spiking neural networks.

Core parts (DESIGN.md): `qnoise.quant` (quantizers), `qnoise.neurons` (IF/LIF/signed IF), `qnoise.layers`
(multi-step wrappers). Heavier parts are imported on first use: ``qnoise.analyze``, ``qnoise.Probe``,
``qnoise.sweep`` and friends resolve lazily so ``import qnoise`` stays fast.
"""

from __future__ import annotations

import importlib

from .layers import MultiStep
from .neurons import IF, LIF, ClampActivation, NeuronTrace, neuron_multistep, spiking_neurons

__version__ = "0.1.0"

# name -> module that defines it, imported on first attribute access
_LAZY = {
    "analyze": "qnoise.probe",
    "Probe": "qnoise.probe",
    "sensitivity": "qnoise.probe",
    "sweep": "qnoise.sweep",
    "search": "qnoise.search",
    "load_dataset": "qnoise.data",
    "build_model": "qnoise.models",
    "save_checkpoint": "qnoise.io",
    "load_checkpoint": "qnoise.io",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'qnoise' has no attribute {name!r}")


__all__ = ["IF", "LIF", "ClampActivation", "MultiStep", "NeuronTrace", "neuron_multistep", "spiking_neurons",
           "__version__", *_LAZY]
