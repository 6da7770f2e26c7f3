"""One training epoch and one evaluation pass over in-memory batches.

Loss: cross-entropy of the time-averaged readout, ``CE(mean_t out[t], y)``; prediction (evaluation)
``argmax_c sum_t out[t, c]``, summed in step order (`qnoise.metrics.predicted_class`, as the probe's accuracy);
accuracy = share of correct predictions (training accuracy: the argmax of the averaged readout of the loss).

Inputs are time-major ``[T, B, ...]``. What a model sees (`model_input`): an ANN gets the time-averaged
input with T = 1; an SNN gets the sequence as is, or with ``static=True`` (converted ANNs) the time-averaged
input repeated over ``timesteps`` steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import predicted_class
from ..labels import check_classes
from ..models import sync_threshold_step
from ..time_mean import frame_mean


class Batches:
    """Mini-batches ``(x [T, B, ...], y [B])`` from sample-major tensors ``X [N, T, ...]``, ``y [N]``.

    ``shuffle`` draws a permutation from ``torch.Generator().manual_seed(seed)`` on each pass, where the
    caller sets ``seed`` per epoch: the order is a function of (seed, epoch) alone. A last batch of one
    sample joins the batch before it (BatchNorm cannot train on one sample), so that batch holds
    ``batch_size + 1``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False, seed: int = 0):
        if len(x) != len(y):
            raise ValueError(f"inputs and labels differ in length: {len(x)} vs {len(y)}")
        self.x, self.y, self.batch_size, self.shuffle, self.seed = x, y, batch_size, shuffle, seed

    def _bounds(self) -> list[int]:
        n = len(self.y)
        starts = list(range(0, n, self.batch_size))
        if len(starts) > 1 and n - starts[-1] == 1:
            starts.pop()  # merge a trailing single sample into the previous batch
        return [*starts, n]

    def __len__(self) -> int:
        return len(self._bounds()) - 1

    def __iter__(self):
        n = len(self.y)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)) if self.shuffle \
            else torch.arange(n)
        bounds = self._bounds()
        for a, b in zip(bounds, bounds[1:]):
            idx = order[a:b]
            yield self.x[idx].transpose(0, 1).contiguous(), self.y[idx]


def check_trainable(model: nn.Module, batches: Batches) -> None:
    """Refuse up front what BatchNorm1d cannot train on: batches of one sample (``batch_size=1``, or a
    training split of one sample), instead of failing inside the first batch."""
    if any(isinstance(m, nn.BatchNorm1d) for m in model.modules()) and min(batches.batch_size, len(batches.y)) < 2:
        raise ValueError(f"the model has BatchNorm1d layers, which cannot train on batches of one sample "
                         f"(batch_size={batches.batch_size}, {len(batches.y)} training sample(s)): use batch_size >= 2 "
                         f"and at least 2 samples, or the model option batchnorm=false")


def model_input(model: nn.Module, x: torch.Tensor, static: bool = False, timesteps: int | None = None) -> torch.Tensor:
    """The input ``model`` runs on for a time-major batch ``x [T, B, ...]`` (see the module docstring)."""
    if model.qnoise_config["kind"] == "ann":
        return frame_mean(x)
    if static:
        return frame_mean(x).expand(timesteps or x.shape[0], *x.shape[1:])
    return x


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each sample of ``x [T, B, C, H, W]`` by its own random (dy, dx) in ``[-max_shift, max_shift]``,
    filling with zeros (the same shift at every timestep)."""
    t, b, c, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator).tolist()
    return torch.stack([padded[:, i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)], dim=1)


@torch.no_grad()
def keep_positive(model: nn.Module) -> None:
    """After an optimizer step, learned clip levels and thresholds back to the floors their forwards use
    (`qnoise.quant.clip.CLIP_FLOOR`, `qnoise.neurons.THRESHOLD_FLOOR`): a projected step. Below its floor an alpha
    got no gradient (the forward clamps it) and stayed there, and the run saved a checkpoint `load_checkpoint`
    refuses (a clip level <= 0)."""
    from ..neurons import IF, THRESHOLD_FLOOR
    from ..quant.clip import CLIP_FLOOR, LearnableClip

    for m in model.modules():
        if isinstance(m, LearnableClip) and isinstance(m.alpha, nn.Parameter):
            m.alpha.clamp_(min=CLIP_FLOOR)
        elif isinstance(m, IF) and isinstance(m.stored_threshold, nn.Parameter):
            m.stored_threshold.clamp_(min=THRESHOLD_FLOOR)


def train_epoch(model: nn.Module, batches: Batches, optimizer: torch.optim.Optimizer, device: torch.device,
                augment: str | None = None, seed: int = 0, progress=None) -> dict:
    """One pass of BPTT over ``batches``; returns ``{"loss", "train_accuracy"}`` (running means)."""
    model.train()
    gen = torch.Generator().manual_seed(seed)
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in batches:
        if augment == "shift" and x.dim() == 5:
            x = random_shift(x, 2, gen)
        x, y = x.to(device), y.to(device)
        sync_threshold_step(model)
        logits = model(model_input(model, x)).mean(0)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        keep_positive(model)
        total_loss += float(loss.detach()) * len(y)
        correct += int((logits.argmax(-1) == y).sum())
        seen += len(y)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    sync_threshold_step(model)
    return {"loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1)}


@torch.no_grad()
def predict(model: nn.Module, batches, device: torch.device, static: bool = False,
            timesteps: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean-over-time logits [N, classes], predicted classes [N], labels [N])`` of ``model`` in eval mode (its
    mode is restored); the classes by `qnoise.metrics.predicted_class`, as every qnoise accuracy."""
    was_training = model.training
    model.eval()
    logits, classes, labels = [], [], []
    try:
        for x, y in batches:
            out = model(model_input(model, x.to(device), static, timesteps))
            logits.append(out.mean(0).float().cpu())
            classes.append(predicted_class(out).cpu())
            labels.append(y)
    finally:
        model.train(was_training)
    if not labels:
        raise ValueError("the data holds no samples")
    return torch.cat(logits), torch.cat(classes), torch.cat(labels)


def evaluate(model: nn.Module, batches, device: torch.device | str = "cpu", static: bool = False,
             timesteps: int | None = None) -> dict:
    """``{"accuracy", "loss", "samples"}`` of ``model`` over ``batches`` (time-major ``(x, y)`` pairs)."""
    logits, classes, labels = predict(model, batches, torch.device(device), static, timesteps)
    check_classes(labels, logits.shape[-1])
    return {"accuracy": int((classes == labels).sum()) / len(labels),
            "loss": float(F.cross_entropy(logits, labels)), "samples": int(len(labels))}
