"""Per-layer sensitivity (AIMET QuantAnalyzer style): accuracy with one layer's quantizer on alone, and
with every quantizer on but that layer's.

Two quantizers per layer:

- ``"weights"``: the weight quantizer of the layer's weight tensors (the layers feeding a neuron, or the
  readout), at ``weight_bits``, with the model's own quantizer options (per-channel scales, levels, and the
  layers its spec keeps in float: those stay float in every variant, as `qnoise.analyze` keeps them); the
  network runs as the SNN for T steps.
- ``"timesteps"``: the rate quantization of a neuron layer. A layer "quantized in time" runs its spiking
  neuron for T steps on the constant input it receives and passes its mean rate ``r(T)`` on; a layer not
  quantized in time is the ANN twin's clamp ``clamp(z, 0, theta)``. The whole network runs once on the
  mean input frame, with float weights. With one layer on, the accuracy shows what that layer's T+1-level
  rate (its quantization and sequential error on a constant input) costs alone; "all" turns every layer
  on, which is the SNN without inter-layer spike timing (each layer sees a constant input), "none" is the
  ANN twin.

Rows: the config and value columns of `qnoise.probe.analyze`'s table with ``metric="accuracy"`` and
``t = T``, plus ``quantity`` (``"weights"``/``"timesteps"``) and ``variant``: ``"only"`` (this layer on
alone), ``"all_but"`` (all on but this layer), and, with ``layer="<all>"``, the ``"all"`` and ``"none"``
baselines.
"""

from __future__ import annotations

import contextlib

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..device import resolve_device
from ..metrics import predicted_class
from ..neurons import IF, ClampActivation, spiking_neurons
from ..quant import quantize_weights, remove_weight_quantization
from ..time_mean import frame_mean
from ..train.evaluation import data_plan
from .analysis import configured
from .copying import clone_model
from .core import describe_neurons, describe_state_bits
from .inputs import iter_batches, model_device, model_dtype, resolve_data, resolve_model
from .references import set_module
from .structure import model_structure

QUANTITIES = ("weights", "timesteps")


class RateNeuron(nn.Module):
    """A neuron "quantized in time" inside an ANN: ``[1, B, ...] -> mean over T steps of neuron(z, ..., z)``."""

    def __init__(self, neuron: IF, timesteps: int) -> None:
        super().__init__()
        self.neuron, self.timesteps = neuron, timesteps

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.neuron(z.expand(self.timesteps, *z.shape[1:])).mean(0, keepdim=True)


def _accuracy(model: nn.Module, batches: list, mean_input: bool = False) -> float:
    correct = total = 0
    for x, y in batches:
        out = model(frame_mean(x) if mean_input else x)
        correct += int((predicted_class(out) == y.to(out.device)).sum())
        total += len(y)
    return correct / total if total else float("nan")


def _hybrid(model: nn.Module, timed: set[str], T: int) -> nn.Module:
    h = clone_model(model, "float")
    for name, neuron in spiking_neurons(h):
        set_module(h, name, RateNeuron(neuron, T) if name in timed else ClampActivation(neuron))
    return h.eval()


def sensitivity(model, data=None, weight_bits: int = 4, timesteps: int | None = None,
                quantities: tuple[str, ...] = QUANTITIES, *, rounding: str = "nearest",
                weight_method: str = "uniform", batch_size: int = 64, limit: int | None = None,
                split: str = "test", input_mode: str | None = None, device="auto", model_name: str | None = None,
                dataset_name: str | None = None, seed: int = 0):
    """Per-layer accuracy with one quantizer on alone / all but one on (see the module docstring).

    Args:
        model, data, timesteps, batch_size, limit, split, input_mode, device: as `qnoise.probe.analyze`.
        weight_bits, rounding, weight_method: the weight quantizer turned on and off per layer.
        quantities: which of ``"weights"`` and ``"timesteps"`` to analyse.

    Returns:
        DataFrame with columns ``model, dataset, weight_bits, state_bits, timesteps, rounding, neuron, layer,
        t, metric, value, quantity, variant``.
    """
    bad = set(quantities) - set(QUANTITIES)
    if bad:
        raise ValueError(f"unknown quantities {sorted(bad)}; expected some of {QUANTITIES}")
    dev = resolve_device(device)
    model, default_name, ckpt = resolve_model(model, dev)
    static, steps, bins = data_plan(ckpt, timesteps, input_mode)
    data, default_dataset = resolve_data(data, ckpt, bins, split, limit)
    home = model_device(model)
    rows = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []))
        torch.manual_seed(seed)
        model.to(dev)
        stack.callback(model.to, home)
        stack.enter_context(configured(model, weight_bits=32))
        stack.enter_context(torch.no_grad())
        feed = iter_batches(data, batch_size, limit, steps, static, model_dtype(model))
        batches = [(x.to(dev), y) for x, y in feed]
        if not batches or batches[0][1] is None:
            raise ValueError("sensitivity needs labelled data")
        T = batches[0][0].shape[0]
        structure = model_structure(model, tuple(batches[0][0].shape[2:]))
        layers = [(layer.name, layer.synapses) for layer in structure.layers if layer.synapses]
        all_syn = [s for _, syn in layers for s in syn]

        def add(quantity, layer, variant, acc):
            rows.append((quantity, layer, variant, acc))

        if "weights" in quantities:
            method = "binary" if weight_bits == 1 else weight_method
            # the model's own quantizer options, as `configured` (so "all" is analyze's model at these bits)
            spec = ((getattr(model, "qnoise_config", None) or {}).get("quantization") or {}).get("weights") or {}
            options = {"keep_first_last": spec.get("keep_first_last", False),
                       "per_channel": spec.get("per_channel", False), "levels": spec.get("levels", "uniform")}

            def run(skip):
                remove_weight_quantization(model)
                if len(skip) < len(all_syn):
                    quantize_weights(model, weight_bits, method, rounding, skip=[*skip, *spec.get("skip", ())],
                                     **options)
                with parametrize.cached():
                    return _accuracy(model, batches)

            add("weights", "<all>", "all", run([]))
            add("weights", "<all>", "none", run(all_syn))
            for name, syn in layers:
                add("weights", name, "only", run([s for s in all_syn if s not in syn]))
                add("weights", name, "all_but", run(syn))
            remove_weight_quantization(model)
        if "timesteps" in quantities:
            neurons = [layer.neuron for layer in structure.neuron_layers]
            add("timesteps", "<all>", "all", _accuracy(_hybrid(model, set(neurons), T), batches, True))
            add("timesteps", "<all>", "none", _accuracy(_hybrid(model, set(), T), batches, True))
            for name in neurons:
                add("timesteps", name, "only", _accuracy(_hybrid(model, {name}, T), batches, True))
                add("timesteps", name, "all_but",
                    _accuracy(_hybrid(model, set(neurons) - {name}, T), batches, True))
        neuron = describe_neurons(model)
        state_bits = describe_state_bits(model)
    df = pd.DataFrame(rows, columns=["quantity", "layer", "variant", "value"])
    df["model"] = model_name or default_name
    df["dataset"] = dataset_name or default_dataset
    df["weight_bits"] = [weight_bits if q == "weights" else 32 for q in df["quantity"]]
    df["state_bits"] = state_bits
    df["timesteps"] = T
    df["rounding"] = rounding
    df["neuron"] = neuron
    df["t"] = T
    df["metric"] = "accuracy"
    cols = ["model", "dataset", "weight_bits", "state_bits", "timesteps", "rounding", "neuron", "layer", "t",
            "metric", "value", "quantity", "variant"]
    return df[cols].astype({"weight_bits": "int64", "state_bits": "int64", "timesteps": "int64", "t": "int64",
                            "value": "float64"})
