"""`analyze`: run a `Probe` over a dataset under a temporary configuration and return the tidy table.

Options come as the four values of `qnoise.probe.options` (`Setting`, `Compare`, `Count`, `Execution`) or
as their field names: ``analyze(model, data, weight_bits=4, reference="snn", limit=256)``. Data forms are
those of `qnoise.probe.inputs`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from .. import parametrized
from ..device import resolve_device
from ..neurons import spiking_neurons
from ..quant import quantize_weights, remove_weight_quantization, weight_layers, weight_quantizers
from ..train.evaluation import data_plan
from .core import Probe
from .inputs import (count_samples, iter_batches, model_device, model_dtype, resolve_data, resolve_model,
                     source_reference)
from .options import Setting, split_options


@contextlib.contextmanager
def configured(model: nn.Module, setting: Setting | None = None, **fields):
    """Temporarily apply a `Setting` (or its fields) to ``model``: weight bits and method, membrane bits,
    neuron kind; everything is restored on exit. The model is in eval mode inside.

    ``weight_bits``: None keeps the model's weights as they are; 32 means float (quantizers removed); 1 is
    binary; otherwise ``weight_method`` at that width. Options the model's own quantization spec holds
    (``keep_first_last``, ``per_channel``, ``skip``, ``levels``) are kept. ``state_bits``: None keeps, 32 float
    membrane, else a b-bit membrane. ``neuron``: None keeps, ``"if"`` unsigned, ``"signed"`` signed IF.
    """
    s = setting if setting is not None else Setting(**fields)
    saved_quant = weight_quantizers(model)
    neurons = [n for _, n in spiking_neurons(model)]
    saved_neurons = [(n.state_bits, n.state_rounding, n.signed) for n in neurons]
    was_training = model.training
    try:
        model.eval()
        if s.weight_bits is not None:
            remove_weight_quantization(model)
            if s.weight_bits != 32:
                spec = ((getattr(model, "qnoise_config", None) or {}).get("quantization") or {}).get("weights") or {}
                method = "binary" if s.weight_bits == 1 else s.weight_method
                quantize_weights(model, s.weight_bits, method, s.rounding, skip=spec.get("skip", ()),
                                 keep_first_last=spec.get("keep_first_last", False),
                                 per_channel=spec.get("per_channel", False), levels=spec.get("levels", "uniform"),
                                 **({"step": s.weight_step, "ties": s.ties} if method == "uniform" else {}))
        for n in neurons:
            if s.state_bits is not None:
                n.state_bits = None if s.state_bits == 32 else s.state_bits
            if s.neuron is not None:
                n.signed = s.neuron == "signed"
        yield model
    finally:
        if s.weight_bits is not None:
            remove_weight_quantization(model)
            layers = dict(weight_layers(model))
            for name, q in saved_quant.items():
                parametrized.register(layers[name], "weight", q)
        for n, (sb, sr, sg) in zip(neurons, saved_neurons, strict=True):
            n.state_bits, n.state_rounding, n.signed = sb, sr, sg
        model.train(was_training)


def _references(compare, model: nn.Module, ckpt: dict, dev) -> tuple[nn.Module | None, nn.Module | None, str | None]:
    """``(ann, source, note)``: the ANN a ``"source"`` / given reference names, the source ANN of a converted
    checkpoint (for ``source_accuracy``) when it can be found, and why it could not."""
    ref = compare.reference
    ann = None
    if ref == "source":
        ann = source_reference(model, ckpt, dev)
    elif isinstance(ref, nn.Module):
        ann = ref
    elif isinstance(ref, (str, Path)) and compare.name == "ann-given":
        ann = resolve_model(ref, dev)[0]
    if compare.name == "source" or not (ckpt.get("conversion") or {}).get("source"):
        return ann, None, None
    try:
        return ann, source_reference(model, ckpt, dev), None
    except (FileNotFoundError, ValueError) as err:
        return ann, None, f"source_accuracy not reported: {err}"


def analyze(model, data=None, *, setting: Setting | None = None, compare=None, count=None, execution=None,
            model_name: str | None = None, dataset_name: str | None = None, reference_cache: dict | None = None,
            reference_cache_bytes: int = 1 << 30, **options):
    """Quantization noise, spikes and costs of an SNN per layer and timestep, as one long-form DataFrame.

    Args:
        model: an SNN (qnoise neurons, ``[T, B, ...] -> [T, B, classes]``) or a checkpoint directory.
        data: see `qnoise.probe.inputs`; a name is loaded with `qnoise.data.load_dataset` (``split``,
            ``limit``); None: the checkpoint's dataset.
        setting, compare, count, execution: the options (`qnoise.probe.options`); any of their fields may be
            given by name instead (``weight_bits=4, reference="snn", limit=64``). ``timesteps`` None: the
            checkpoint's T, else the data's; one frame per sample repeats to T steps. ``input_mode``
            ``"sequence"`` or ``"static"``; None: as the checkpoint records (`data_plan`).
        model_name, dataset_name: the ``model`` / ``dataset`` columns (defaults from the inputs).
        reference_cache: a dict batch index -> the reference's activations (`Probe.reference_activations`),
            shared by runs whose reference is the same (same data and T, same reference weights); filled while
            it holds less than ``reference_cache_bytes``.

    Returns:
        DataFrame with columns `qnoise.probe.COLUMNS` (see `qnoise.probe` for every metric; ``t = 0`` marks
        values that do not depend on t); ``df.attrs["qnoise"]`` records the reference, neuron rules and energy
        constants used (`Probe.sidecar`), ``df.attrs["tensors"]`` the kept tensors.
    """
    with analysis(model, data, setting=setting, compare=compare, count=count, execution=execution,
                  model_name=model_name, dataset_name=dataset_name, reference_cache=reference_cache,
                  reference_cache_bytes=reference_cache_bytes, **options) as table:
        return table()


@contextlib.contextmanager
def analysis(model, data=None, *, setting: Setting | None = None, compare=None, count=None, execution=None,
             model_name: str | None = None, dataset_name: str | None = None, reference_cache: dict | None = None,
             reference_cache_bytes: int = 1 << 30, **options):
    """`analyze`'s run (same arguments), kept open: yields ``table(steps=None)``, the table of the whole run or
    of its first ``steps`` steps (`Probe.table_of_first_steps`: what a run at T = steps gives when the frames
    are static), while the model is still configured as the run was."""
    setting, compare, count, execution = split_options(
        {"setting": setting, "compare": compare, "count": count, "execution": execution}, **options)
    dev = resolve_device(execution.device)
    model, default_name, ckpt = resolve_model(model, dev)
    static, steps, bins = data_plan(ckpt, setting.timesteps, execution.input_mode)
    data, default_dataset = resolve_data(data, ckpt, bins, execution.split, execution.limit, execution.data_root)
    ann, source, source_note = _references(compare, model, ckpt, dev)
    home = model_device(model)
    total = count_samples(data, execution.limit)
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []))
        torch.manual_seed(execution.seed)
        model.to(dev)
        stack.callback(model.to, home)
        stack.enter_context(configured(model, setting))
        stack.enter_context(torch.no_grad())
        stack.enter_context(parametrize.cached())
        probe = stack.enter_context(Probe(model, compare, count, execution.compile, ann=ann, source=source))
        bar = stack.enter_context(tqdm(total=total, unit="sample", desc="analyze", leave=False,
                                       disable=None if execution.progress is None else not execution.progress))
        batches = iter_batches(data, execution.batch_size, execution.limit, steps, static, model_dtype(model))
        for i, (x, y) in enumerate(batches):
            x = x.to(dev, non_blocking=True)
            acts = None if reference_cache is None else reference_cache.get(i)
            if acts is None:
                acts = probe.reference_activations(x)
                if acts is not None and reference_cache is not None and \
                        sum(a.nbytes() for a in reference_cache.values()) < reference_cache_bytes:
                    reference_cache[i] = acts
            probe.step(x, y, acts)
            bar.update(x.shape[1])
        bar.close()
        if probe.rec.samples == 0:
            raise ValueError("the data holds no samples")
        config = {"model": model_name or default_name, "dataset": dataset_name or default_dataset}
        if setting.weight_bits is not None:
            config["rounding"] = setting.rounding

        def table(steps: int | None = None):
            df = probe.table(**config) if steps is None else probe.table_of_first_steps(steps, **config)
            if source_note:
                df.attrs["qnoise"]["source_note"] = source_note
            if count.keep_tensors:
                df.attrs["tensors"] = probe.tensors
            return df

        yield table
