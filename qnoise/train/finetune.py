"""Layer-wise fine-tuning of a converted SNN against its quantized ANN (Fast-SNN).

For spiking layer l = 1..L in turn, with ``A_l`` the ANN's (quantized) activation and
``r_l = (1/T) sum_t out_l[t]`` the SNN's rate at that layer, both on the same static input::

    minimise  MSE(r_l, A_l)  over the weights and biases feeding layer l   (BPTT, surrogate gradients)

The SNN's layers below l are the already tuned ones, so layer l learns to absorb the sequential error it
inherits. An update is kept only if it improves the SNN on the training set: higher accuracy, or equal
accuracy and lower cross-entropy (a tie-break: converted SNNs often sit at 100 % training accuracy);
``force=True`` keeps every update.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..neurons import spiking_neurons
from ..quant import weight_layers
from .convert import clip_layers
from .loop import evaluate, model_input


class _Stop(Exception):
    """Raised by a forward hook to end a forward pass once the wanted layer has run."""


def layer_groups(snn: nn.Module) -> list[list[nn.Parameter]]:
    """For each spiking layer, the parameters of the Conv/Linear layers between it and the previous one."""
    weights = {id(m) for _, m in weight_layers(snn)}
    neurons = {id(m) for _, m in spiking_neurons(snn)}
    groups, current = [], []
    for _, m in snn.named_modules():
        if id(m) in weights:
            current.extend(m.parameters(recurse=False))
        elif id(m) in neurons:
            groups.append(current)
            current = []
    return groups


def _output_of(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run ``model`` on ``x`` only as far as ``layer``; return ``layer``'s output."""
    box = {}

    def hook(_module, _inputs, output):
        box["out"] = output
        raise _Stop

    handle = layer.register_forward_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    return box["out"]


def _score(snn, batches, device, timesteps) -> tuple[float, float]:
    r = evaluate(snn, batches, device, static=True, timesteps=timesteps)
    return r["accuracy"], -r["loss"]


def layerwise_finetune(snn: nn.Module, ann: nn.Module, train_batches, timesteps: int, epochs: int = 1,
                       lr: float = 1e-4, force: bool = False, device: str | torch.device = "cpu",
                       eval_batches=None, progress: bool = True) -> list[dict]:
    """Fine-tune ``snn`` (in place) layer by layer towards ``ann``; returns one report dict per layer.

    Args:
        snn: converted SNN (`convert_to_snn`), run for ``timesteps`` steps on the static input.
        ann: its quantized ANN (frozen).
        train_batches: iterable of time-major ``(x, y)`` from the training split (shuffled or not).
        epochs: passes over ``train_batches`` per layer.
        lr: Adam learning rate.
        force: keep every update, improving or not.
        eval_batches: batches for the keep/undo decision (default ``train_batches``).
    """
    device = torch.device(device)
    ann, snn = ann.to(device).eval(), snn.to(device)
    eval_batches = eval_batches or train_batches
    neurons = [m for _, m in spiking_neurons(snn)]
    clips = clip_layers(ann)
    groups = layer_groups(snn)
    if len(neurons) != len(clips):
        raise ValueError(f"the SNN has {len(neurons)} spiking layers but the ANN {len(clips)} LearnableClip layers")
    best = _score(snn, eval_batches, device, timesteps)
    reports = []
    for i, (neuron, clip, params) in enumerate(zip(neurons, clips, groups, strict=True)):
        if not params:
            reports.append({"layer": i + 1, "kept": False, "skipped": "no weights feed this layer"})
            continue
        saved = copy.deepcopy(snn.state_dict())
        opt = torch.optim.Adam(params, lr=lr)
        losses = []
        bar = tqdm(total=epochs * len(train_batches), desc=f"fine-tune layer {i + 1}/{len(neurons)}",
                   disable=not progress, unit="batch")
        snn.train()
        for _ in range(epochs):
            for x, _y in train_batches:
                x = x.to(device)
                with torch.no_grad():
                    target = _output_of(ann, clip, model_input(ann, x))[0]
                rate = _output_of(snn, neuron, model_input(snn, x, static=True, timesteps=timesteps)).mean(0)
                loss = F.mse_loss(rate, target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                bar.update(1)
        bar.close()
        score = _score(snn, eval_batches, device, timesteps)
        kept = force or score > best
        if kept:
            best = score
        else:
            snn.load_state_dict(saved)
        reports.append({"layer": i + 1, "kept": kept, "train_accuracy": score[0], "train_loss": -score[1],
                        "mse_first": losses[0] if losses else None, "mse_last": losses[-1] if losses else None})
    snn.eval()
    return reports
