"""A saved snnTorch / SpikingJelly state dict -> a qnoise model (`from_state_dict`), without unpickling code.

The architecture comes from the caller's own code (an ``nn.Module`` built as it was trained); the values from a
file: ``.safetensors``, or a ``torch.save`` file read with ``torch.load(weights_only=True)``, which rebuilds
tensors only and refuses any other object. Keys must match the module exactly (no missing, no unexpected).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """The tensors of a state-dict file (module docstring); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"state dict {path} does not exist")
    if path.suffix == ".safetensors":
        from ..io import load_tensors

        return load_tensors(path)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError and others
        raise ValueError(f"{path} is not a tensors-only torch state dict (read with weights_only=True): {err}") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return state


def from_state_dict(module: nn.Module, path, library: str | None = None, **kwargs):
    """Load the state dict at ``path`` into ``module`` (strict), then import it with `from_snntorch` or
    `from_spikingjelly` (``library`` "snntorch" / "spikingjelly"; None: from the module's neuron classes).
    ``kwargs`` go to the importer (``input_shape``, ``num_classes``)."""
    from .snntorch import from_snntorch
    from .spikingjelly import from_spikingjelly

    state = read_state_dict(path)
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes that differ
        raise ValueError(f"{path} does not fit {type(module).__name__}: {str(err).splitlines()[-1].strip()}") from err
    # snnTorch neurons keep an empty "mem" buffer that may or may not be saved: it carries no value
    missing = [k for k in result.missing_keys if not k.endswith((".mem", ".syn"))]
    unexpected = [k for k in result.unexpected_keys if not k.endswith((".mem", ".syn"))]
    if missing or unexpected:
        raise ValueError(f"{path} does not fit {type(module).__name__}: missing {missing[:10]}, unexpected "
                         f"{unexpected[:10]}")
    if library is None:
        mods = {type(m).__module__.split(".")[0] for m in module.modules()}
        library = "snntorch" if "snntorch" in mods else "spikingjelly" if "spikingjelly" in mods else None
    if library == "snntorch":
        return from_snntorch(module, **kwargs)
    if library == "spikingjelly":
        return from_spikingjelly(module, **kwargs)
    raise ValueError(f"library={library!r}: expected 'snntorch' or 'spikingjelly'")
