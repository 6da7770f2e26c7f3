"""`analyze`: run a `Probe` over a dataset under a temporary configuration and return the tidy table.

Data may be a ``DataLoader``, a ``Dataset`` of ``(x [T, ...], label)`` (as `qnoise.data.load_dataset`
returns), an ``(X, y)`` tensor pair with ``X`` sample-major ``[N, T, ...]`` (as
`qnoise.data.dataset_tensors` returns), or a dataset name. A DataLoader's batches are sample-major
``[B, T, ...]`` (default collate) unless its ``collate_fn`` is `qnoise.data.collate_time_first`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..metrics import E_AC_PJ, E_MAC_PJ
from ..neurons import spiking_neurons
from ..quant import quantize_weights, remove_weight_quantization, weight_layers, weight_quantizers
from ..train.evaluation import data_plan
from .core import Probe

NEURON_CHOICES = ("if", "signed")


# ------------------------------------------------------------------------------------------------ data

def _fit_time(x: torch.Tensor, timesteps: int | None, static: bool = False) -> torch.Tensor:
    """``[T_d, B, ...]`` -> ``[T, B, ...]``: a single frame (T_d = 1) repeats to T steps; ``static`` first
    replaces the frames by their mean (the input of a model converted from an ANN)."""
    if static:
        x = x.mean(0, keepdim=True)
    if timesteps is None or x.shape[0] == timesteps:
        return x
    if x.shape[0] == 1:
        return x.expand(timesteps, *x.shape[1:])
    raise ValueError(f"the data has {x.shape[0]} frames per sample but timesteps={timesteps}; load the data "
                     f"with timesteps={timesteps} (event data cannot be re-binned here) or give static frames")


def iter_batches(data, batch_size: int = 64, limit: int | None = None, timesteps: int | None = None,
                 static: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield ``(x [T, B, ...], y [B] or None)`` from any supported data form (module docstring); with
    ``static`` each sample's frames are replaced by their mean, repeated over the T steps."""
    from torch.utils.data import DataLoader, Dataset

    seen = 0

    def cut(x, y, time_first):
        nonlocal seen
        b = x.shape[1] if time_first else x.shape[0]
        if limit is not None:
            b = min(b, limit - seen)
            x = x[:, :b] if time_first else x[:b]
            y = None if y is None else y[:b]
        seen += b
        return _fit_time(x if time_first else x.transpose(0, 1), timesteps, static), y

    if isinstance(data, DataLoader):
        from ..data import collate_time_first

        time_first = data.collate_fn is collate_time_first
        for batch in data:
            if limit is not None and seen >= limit:
                return
            x, y = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
            yield cut(x, y, time_first)
        return
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        X, Y = data
        if Y is not None and len(Y) != len(X):
            raise ValueError(f"(X, y): X has {len(X)} samples but y has {len(Y)}; X must be sample-major "
                             f"[N, T, ...]")
    elif isinstance(data, Dataset) and callable(getattr(data, "tensors", None)):
        X, Y = data.tensors()
    elif isinstance(data, Dataset):
        n = len(data) if limit is None else min(len(data), limit)
        for start in range(0, n, batch_size):
            items = [data[i] for i in range(start, min(n, start + batch_size))]
            x = torch.stack([torch.as_tensor(it[0]) for it in items])
            y = torch.tensor([int(it[1]) for it in items])
            yield cut(x, y, False)
        return
    else:
        raise TypeError(f"data must be a DataLoader, a Dataset, an (X, y) tensor pair or a dataset name, got "
                        f"{type(data).__name__}")
    n = len(X) if limit is None else min(len(X), limit)
    for start in range(0, n, batch_size):
        yield cut(X[start:start + batch_size], None if Y is None else Y[start:start + batch_size], False)


def count_samples(data, limit: int | None = None) -> int | None:
    """Number of samples the batches will hold, when known (for progress bars)."""
    try:
        n = len(data[0]) if isinstance(data, (tuple, list)) else len(data.dataset if hasattr(data, "dataset")
                                                                      else data)
    except TypeError:
        return None
    return n if limit is None else min(n, limit)


def resolve_model(model, device: torch.device | None = None) -> tuple[nn.Module, str, dict]:
    """A model object, or a checkpoint directory loaded with `qnoise.io.load_checkpoint`; returns
    ``(model, name, checkpoint config or {})``."""
    if isinstance(model, nn.Module):
        cfg = getattr(model, "qnoise_checkpoint", {}) or {}
        arch = getattr(model, "qnoise_config", {}).get("arch") if hasattr(model, "qnoise_config") else None
        return model, arch or type(model).__name__, cfg
    if isinstance(model, (str, Path)):
        from ..io import load_checkpoint

        m = load_checkpoint(model, device or "cpu")
        m.qnoise_checkpoint_path = str(Path(model).resolve())
        return m, Path(model).resolve().name, getattr(m, "qnoise_checkpoint", {})
    raise TypeError(f"model must be an nn.Module or a checkpoint directory, got {type(model).__name__}")


def resolve_data(data, checkpoint_config: dict, bins: int | None, split: str, limit: int | None):
    """A dataset name is loaded with `qnoise.data.load_dataset` (``bins`` frames, else 8) with the loader
    options the checkpoint recorded for that dataset; anything else is returned as is. ``(data, name)``."""
    record = checkpoint_config.get("dataset") or {}
    if data is None:
        if not record.get("name"):
            raise ValueError("no data given and the checkpoint names no dataset")
        data = record["name"]
    if isinstance(data, str):
        from ..data import load_dataset

        options = dict(record.get("options") or {}) if record.get("name") == data else {}
        return load_dataset(data, split, timesteps=bins or 8, limit=limit, **options), data
    if isinstance(data, (tuple, list)):
        return data, "tensors"
    name = getattr(data, "name", None) or getattr(getattr(data, "dataset", None), "name", None)
    return data, str(name or type(data).__name__)


def source_reference(model: nn.Module, checkpoint_config: dict, device) -> nn.Module:
    """The ANN a converted checkpoint was made from (``conversion.source``): a folder given as recorded,
    else next to the checkpoint's own folder."""
    source = (checkpoint_config.get("conversion") or {}).get("source")
    if not source:
        raise ValueError("reference='source' needs a checkpoint converted from an ANN (config.json records no "
                         "conversion.source)")
    here = getattr(model, "qnoise_checkpoint_path", None)
    for candidate in (Path(source), *([Path(here).parent / source] if here else [])):
        if (candidate / "config.json").is_file():
            return resolve_model(candidate, device)[0]
    raise FileNotFoundError(f"the source ANN {source!r} of this checkpoint was not found (looked as given"
                            f"{' and next to ' + str(here) if here else ''}); pass reference=<ANN folder>")


# ------------------------------------------------------------------------------------------------ config

@contextlib.contextmanager
def configured(model: nn.Module, weight_bits: int | None = None, rounding: str = "nearest",
               weight_method: str = "uniform", state_bits: int | None = None, neuron: str | None = None):
    """Temporarily set weight bits, membrane bits and neuron kind of ``model``; everything is restored on exit.

    ``weight_bits``: None keeps the model's weights as they are; 32 means float (quantizers removed);
    1 is binary; otherwise ``weight_method`` (``"uniform"`` with ``rounding``, ``"ternary"``, ``"sigmoid"``)
    at that width. Options the model's own quantization spec holds (``keep_first_last``, ``per_channel``,
    ``skip``, ``levels``) are kept. ``state_bits``: None keeps, 32 float membrane, else k-bit membrane.
    ``neuron``: None keeps, ``"if"`` unsigned, ``"signed"`` signed IF (Fast-SNN). The model is in eval mode
    inside.
    """
    if neuron not in (None, *NEURON_CHOICES):
        raise ValueError(f"neuron={neuron!r} is not one of {NEURON_CHOICES} (or None: as the model is)")
    if state_bits is not None and not (isinstance(state_bits, int) and 2 <= state_bits <= 32):
        raise ValueError(f"state_bits must be an int in 2..32 or None, got {state_bits!r}")
    saved_quant = weight_quantizers(model)
    neurons = [n for _, n in spiking_neurons(model)]
    saved_neurons = [(n.state_bits, n.state_rounding, n.signed) for n in neurons]
    was_training = model.training
    try:
        model.eval()
        if weight_bits is not None:
            remove_weight_quantization(model)
            if weight_bits != 32:
                spec = ((getattr(model, "qnoise_config", None) or {}).get("quantization") or {}).get("weights") or {}
                method = "binary" if weight_bits == 1 else weight_method
                quantize_weights(model, weight_bits, method, rounding, skip=spec.get("skip", ()),
                                 keep_first_last=spec.get("keep_first_last", False),
                                 per_channel=spec.get("per_channel", False), levels=spec.get("levels", "uniform"))
        for n in neurons:
            if state_bits is not None:
                n.state_bits = None if state_bits == 32 else state_bits
            if neuron is not None:
                n.signed = neuron == "signed"
        yield model
    finally:
        if weight_bits is not None:
            remove_weight_quantization(model)
            layers = dict(weight_layers(model))
            for name, q in saved_quant.items():
                parametrize.register_parametrization(layers[name], "weight", q)
        for n, (sb, sr, sg) in zip(neurons, saved_neurons, strict=True):
            n.state_bits, n.state_rounding, n.signed = sb, sr, sg
        model.train(was_training)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


# ------------------------------------------------------------------------------------------------ analyze

def analyze(model, data=None, timesteps: int | None = None, weight_bits: int | None = None,
            state_bits: int | None = None, rounding: str = "nearest", reference="float", isolate: bool = True,
            keep_tensors: int = 0, *, weight_method: str = "uniform", neuron: str | None = None,
            twin_input: str = "mean", input_mode: str | None = None, batch_size: int = 64,
            limit: int | None = None, split: str = "test",
            device="auto", progress: bool | None = None, compile: bool | str = "auto",
            e_mac: float = E_MAC_PJ, e_ac: float = E_AC_PJ, seed: int = 0, model_name: str | None = None,
            dataset_name: str | None = None, twin_cache: dict | None = None, twin_cache_bytes: int = 1 << 30):
    """Quantization noise, spikes and costs of an SNN per layer and timestep, as one long-form DataFrame.

    Args:
        model: an SNN (qnoise neurons, ``[T, B, ...] -> [T, B, classes]``) or a checkpoint directory.
        data: see the module docstring; a name is loaded with `qnoise.data.load_dataset` (``split``,
            ``limit``); None: the checkpoint's dataset.
        timesteps: T; None: the checkpoint's, else the data's. One frame per sample repeats to T steps.
        input_mode: ``"sequence"`` (the frames as they are) or ``"static"`` (their mean at every step, as
            models converted from ANNs are fed); None: as the checkpoint records (`data_plan`).
        weight_bits, rounding, weight_method, state_bits, neuron: a temporary configuration (`configured`);
            None keeps the model's own.
        reference: ``"float"``, ``"quantized"``, an ANN module or an ANN checkpoint folder, or ``"source"``:
            the quantized ANN a converted checkpoint records as its source (`qnoise.probe.twin`).
        isolate: add isolated-mode rows (``mode="isolated"``).
        keep_tensors: keep full tensors of this many samples in ``df.attrs["tensors"]`` (`Probe.tensors`).
        twin_input: ``"mean"`` or ``"cumulative"`` (`qnoise.probe.twin`).
        device: ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda"``...; the model is moved back after.
        progress: tqdm progress bar over batches (None: only on a terminal).
        e_mac, e_ac: pJ per MAC and per accumulate (defaults 4.6 and 0.9, 45 nm).
        seed: seeds stochastic rounding (weights are quantized once for the whole run).
        model_name, dataset_name: the ``model`` / ``dataset`` columns (defaults from the inputs).
        twin_cache: a dict batch index -> `TwinActivations` shared by runs whose twins are the same (same
            data, same reference weights); filled while it holds less than ``twin_cache_bytes``.

    Returns:
        DataFrame with columns ``model, dataset, weight_bits, state_bits, timesteps, rounding, neuron, layer,
        t, metric, value, mode`` (see `qnoise.probe` for every metric; ``t = 0`` marks values that do not
        depend on the timestep).
    """
    from tqdm.auto import tqdm

    from ..device import resolve_device

    dev = resolve_device(device)
    model, default_name, ckpt = resolve_model(model, dev)
    static, steps, bins = data_plan(ckpt, timesteps, input_mode)
    data, default_dataset = resolve_data(data, ckpt, bins, split, limit)
    if reference == "source":
        reference = source_reference(model, ckpt, dev)
    elif isinstance(reference, (str, Path)) and reference not in ("float", "quantized"):
        reference = resolve_model(reference, dev)[0]
    home = _model_device(model)
    total = count_samples(data, limit)
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []))
        torch.manual_seed(seed)
        model.to(dev)
        stack.callback(model.to, home)
        stack.enter_context(configured(model, weight_bits, rounding, weight_method, state_bits, neuron))
        stack.enter_context(torch.no_grad())
        stack.enter_context(parametrize.cached())
        probe = stack.enter_context(Probe(model, reference, isolate, keep_tensors, twin_input, compile,
                                          e_mac, e_ac))
        bar = stack.enter_context(tqdm(total=total, unit="sample", desc="analyze", leave=False,
                                       disable=None if progress is None else not progress))
        for i, (x, y) in enumerate(iter_batches(data, batch_size, limit, steps, static)):
            x = x.to(dev, non_blocking=True)
            twin = None if twin_cache is None else twin_cache.get(i)
            if twin is None:
                twin = probe.twin_activations(x)
                if twin_cache is not None and sum(t.nbytes() for t in twin_cache.values()) < twin_cache_bytes:
                    twin_cache[i] = twin
            probe.step(x, y, twin)
            bar.update(x.shape[1])
        config = {"model": model_name or default_name, "dataset": dataset_name or default_dataset}
        if weight_bits is not None:
            config["rounding"] = rounding
        df = probe.table(**config)
        if keep_tensors:
            df.attrs["tensors"] = probe.tensors
    return df
