"""Models from other SNN libraries as qnoise models, and back (DESIGN.md's map: ``qnoise/interop/``).

- `from_snntorch`, `from_spikingjelly`: an ``nn.Sequential`` of the library's layers and neurons, each neuron
  kept exact to the spike (`qnoise.neuron_kinds`); `from_norse` goes through Norse's own NIR export.
- `from_nir` (a ``nir.NIRGraph`` or ``.nir`` file) and `to_nir` (weights at their quantized values).
- `from_state_dict`: a saved snnTorch / SpikingJelly state dict loaded into the user's architecture, then imported.

Every import returns a `qnoise.models.graph.GraphNet`, which `qnoise.analyze`, `qnoise.sweep`, the CLI and the
dashboard take, and which `qnoise.io.save_checkpoint` saves as safetensors + JSON. See docs/interop.md.
"""

from __future__ import annotations

from .nir_export import to_nir
from .nir_import import DEFAULT_DT, NIRImportError, from_nir
from .norse import from_norse
from .snntorch import from_snntorch
from .spikingjelly import from_spikingjelly
from .state_dicts import from_state_dict

__all__ = ["from_snntorch", "from_spikingjelly", "from_norse", "from_nir", "to_nir", "from_state_dict",
           "NIRImportError", "DEFAULT_DT"]
