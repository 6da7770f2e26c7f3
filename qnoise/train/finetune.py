"""Layer-wise fine-tuning of a converted SNN against its quantized ANN (Fast-SNN, Hu et al., TPAMI 2023).

Spiking layers l = 2 .. L-1 in turn (1-based; L is the readout, which has no neuron; the first spiking layer
sees the static input, where its rate equals the ANN's activation exactly, and is not tuned). For a batch,
with the layers below l already tuned and every rate a mean over the T steps of the static input::

    r_k     = (1/T) sum_t out_k[t]                 the SNN's rates, k <= l   (no gradient)
    z_l     = f_l(r_{<l})                          layer l's synaptic op (conv/linear, pooling, residual add)
                                                   applied to the rates below: the quantized ANN's layer fed
                                                   the SNN's input; exact because f_l is affine and the same
                                                   at every step
    y_l     = a_l(z_l) + stopgrad(r_l - a_l(z_l))  a_l = the ANN's activation (its LearnableClip); the value
                                                   is the SNN's rate, the gradient the ANN layer's
                                                   (straight-through, the authors' ``output.data = out_maps``)
    loss    = MSE(y_l, A_l)                        A_l = the quantized ANN's activation at layer l
    update  SGD with momentum (lr 1e-3, momentum 0.9, weight decay 5e-4: the authors' code) of the weights and
            biases that feed layer l only; thresholds (the ANN's clip levels) stay frozen

After each epoch the SNN's accuracy on the training set is measured; the layer keeps the weights of its best
epoch if that accuracy beats the best so far, else its weights from before tuning (``force=True`` keeps every
update and skips the measurement, as the authors' ``--force``).

Deviations, on purpose: batch norm is folded into the SNN's weights at conversion, so the tuned parameters are
the folded weights and biases (Fast-SNN's tuner holds the conv weights and the BN affine parameters with the
running statistics fixed: the same function class); ``f_l`` is evaluated by running the SNN itself on one step
with each lower neuron's output replaced by its rate, which covers pooling and residual blocks alike.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..allocator import recycle_large_allocations
from ..neurons import spiking_neurons
from ..quant import learnable_clip, weight_layers
from ..quant.clip import CLIP_FLOOR
from .convert import clip_layers
from .loop import evaluate, model_input

LR, MOMENTUM, WEIGHT_DECAY = 1e-3, 0.9, 5e-4  # the authors' snn_ft.py


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the wanted layer has been reached."""


def layer_groups(snn: nn.Module) -> list[list[nn.Parameter]]:
    """For each spiking layer, the parameters of the Conv/Linear layers between it and the previous one
    (with their quantizers' parameters, if any)."""
    weights = {id(m) for _, m in weight_layers(snn)}
    neurons = {id(m) for _, m in spiking_neurons(snn)}
    groups, current = [], []
    for _, m in snn.named_modules():
        if id(m) in weights:
            current.extend(m.parameters())
        elif id(m) in neurons:
            groups.append(current)
            current = []
    return groups


def _ann_activation(ann: nn.Module, clip: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``A_l [B, ...]``: the ANN's output at ``clip`` for the time-major batch ``x``."""
    box = {}

    def hook(_m, _i, out):
        box["out"] = out
        raise _Stop

    handle = clip.register_forward_hook(hook)
    try:
        ann(model_input(ann, x))
    except _Stop:
        pass
    finally:
        handle.remove()
    return box["out"][0]


def snn_rates(snn: nn.Module, neurons: list[nn.Module], x: torch.Tensor, timesteps: int) -> list[torch.Tensor]:
    """``[r_1, ..., r_l]`` (each ``[B, ...]``): the SNN's rates up to ``neurons[-1]`` on the static input."""
    rates: list[torch.Tensor] = []
    last = neurons[-1]

    def hook(module, _i, out):
        rates.append(out.mean(0))
        if module is last:
            raise _Stop

    handles = [n.register_forward_hook(hook) for n in neurons]
    try:
        snn(model_input(snn, x, static=True, timesteps=timesteps))
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return rates


def synaptic_input(snn: nn.Module, neurons: list[nn.Module], rates: list[torch.Tensor], x: torch.Tensor,
                   ) -> torch.Tensor:
    """``z_l [B, ...]``: what reaches ``neurons[-1]`` when the SNN runs one step on the mean input with each
    lower neuron's output replaced by its rate ``rates[k]`` (differentiable in the layer's own weights)."""
    box = {}
    target = neurons[-1]
    swaps = {id(n): r.unsqueeze(0) for n, r in zip(neurons[:-1], rates, strict=True)}

    def swap(module, _i, _out):
        return swaps[id(module)]

    def capture(_m, inputs):
        box["z"] = inputs[0]
        raise _Stop

    handles = [n.register_forward_hook(swap) for n in neurons[:-1]]
    handles.append(target.register_forward_pre_hook(capture))
    try:
        snn(model_input(snn, x, static=True, timesteps=1))
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return box["z"][0]


def tune_step(snn: nn.Module, ann: nn.Module, neurons: list[nn.Module], clip: nn.Module, x: torch.Tensor,
              timesteps: int) -> torch.Tensor:
    """The loss of one batch for the layer ``neurons[-1]`` (module docstring); call ``.backward()`` on it."""
    with torch.no_grad():
        target = _ann_activation(ann, clip, x)
        rates = snn_rates(snn, neurons, x, timesteps)
    z = synaptic_input(snn, neurons, rates[:-1], x)
    a = learnable_clip(z, clip.alpha.detach().clamp_min(CLIP_FLOOR), clip.bits)  # the threshold stays frozen
    y = a + (rates[-1] - a).detach()
    return F.mse_loss(y, target)


def _accuracy(snn: nn.Module, batches, device, timesteps: int) -> float:
    return evaluate(snn, batches, device, static=True, timesteps=timesteps)["accuracy"]


def layerwise_finetune(snn: nn.Module, ann: nn.Module, train_batches, timesteps: int, epochs: int = 1,
                       lr: float = LR, force: bool = False, device: str | torch.device = "cpu",
                       eval_batches=None, progress: bool = True, momentum: float = MOMENTUM,
                       weight_decay: float = WEIGHT_DECAY) -> list[dict]:
    """Fine-tune ``snn`` (in place) layer by layer towards ``ann``; returns one report dict per spiking layer.

    Args:
        snn: converted SNN (`convert_to_snn`), run for ``timesteps`` steps on the static input.
        ann: its quantized ANN (frozen; its LearnableClip layers are the activations ``a_l``).
        train_batches: iterable of time-major ``(x, y)`` of the training split (shuffled or not).
        epochs: passes over ``train_batches`` per layer.
        lr, momentum, weight_decay: SGD's (defaults: the authors').
        force: keep every update without measuring accuracy.
        eval_batches: batches for the keep/revert decision (default ``train_batches``).
        progress: a tqdm bar per layer; False prints one line per layer and epoch instead.
    """
    recycle_large_allocations()
    device = torch.device(device)
    ann, snn = ann.to(device).eval(), snn.to(device).eval()
    eval_batches = eval_batches or train_batches
    neurons = [m for _, m in spiking_neurons(snn)]
    clips = clip_layers(ann)
    groups = layer_groups(snn)
    if len(neurons) != len(clips):
        raise ValueError(f"the SNN has {len(neurons)} spiking layers but the ANN {len(clips)} LearnableClip layers")
    trainable = {p: p.requires_grad for p in snn.parameters()}
    frozen_ann = {p: p.requires_grad for p in ann.parameters()}
    for p in ann.parameters():
        p.requires_grad_(False)
    best = None if force else _accuracy(snn, eval_batches, device, timesteps)
    reports = [{"layer": 1, "kept": False, "skipped": "the first spiking layer sees the static input: nothing to "
                                                     "tune (Fast-SNN tunes layers 2 .. L-1)"}]
    try:
        for i in range(1, len(neurons)):
            params = groups[i]
            if not params:
                reports.append({"layer": i + 1, "kept": False, "skipped": "no weights feed this layer"})
                continue
            for p in snn.parameters():
                p.requires_grad_(False)
            for p in params:
                p.requires_grad_(True)
            report = _tune_layer(snn, ann, neurons[:i + 1], clips[i], params, train_batches, eval_batches, timesteps,
                                 epochs, lr, momentum, weight_decay, force, best, device, progress, len(neurons))
            best = report.get("train_accuracy", best)
            reports.append(report)
    finally:
        for p, flag in trainable.items():
            p.requires_grad_(flag)
        for p, flag in frozen_ann.items():
            p.requires_grad_(flag)
        snn.eval()
    return reports


def _tune_layer(snn, ann, neurons, clip, params, train_batches, eval_batches, timesteps, epochs, lr, momentum,
                weight_decay, force, best, device, progress, n_layers) -> dict:
    """Tune one layer for ``epochs``; keep its best epoch if it beats ``best`` (or ``force``), else revert."""
    layer = len(neurons)
    start = time.perf_counter()
    before = [p.detach().clone() for p in params]
    kept_state = None
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    history = []
    bar = tqdm(total=epochs * len(train_batches), desc=f"fine-tune layer {layer}/{n_layers}", disable=not progress,
               unit="batch")
    first_seed = getattr(train_batches, "seed", 0)
    for epoch in range(epochs):
        if getattr(train_batches, "shuffle", False):
            train_batches.seed = first_seed + epoch  # a new order every epoch, the same for every layer
        total, seen = 0.0, 0
        for x, _y in train_batches:
            x = x.to(device)
            loss = tune_step(snn, ann, neurons, clip, x, timesteps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * x.shape[1]
            seen += x.shape[1]
            bar.update(1)
            bar.set_postfix(mse=f"{total / seen:.4g}")
        row = {"epoch": epoch + 1, "mse": total / max(seen, 1)}
        if not force:
            row["train_accuracy"] = _accuracy(snn, eval_batches, device, timesteps)
        history.append(row)
        if force or row["train_accuracy"] > best:
            kept_state = [p.detach().clone() for p in params]
            best = None if force else row["train_accuracy"]
        if not progress:
            acc = f"  train accuracy {row['train_accuracy']:.4f}" if not force else ""
            print(f"fine-tune layer {layer}/{n_layers} epoch {epoch + 1}/{epochs}  mse {row['mse']:.4g}{acc}",
                  flush=True)
    bar.close()
    if hasattr(train_batches, "seed"):
        train_batches.seed = first_seed
    with torch.no_grad():
        for p, value in zip(params, kept_state if kept_state is not None else before, strict=True):
            p.copy_(value)
    report = {"layer": layer, "kept": kept_state is not None, "epochs": history,
              "seconds": round(time.perf_counter() - start, 3)}
    if not force:
        report["train_accuracy"] = best  # the SNN's training accuracy after this layer's decision
    return report


__all__ = ["layer_groups", "layerwise_finetune", "snn_rates", "synaptic_input", "tune_step"]
