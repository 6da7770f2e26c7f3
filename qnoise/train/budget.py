"""Memory checks made before the work starts (`qnoise.limits.memory_budget`): a split held in memory, a
forward pass over T steps, a training step (BPTT keeps every layer's output over all T steps).

A forward pass holds about `ALIVE` tensors the size of the widest layer's output at once (input, output,
membrane, spikes); BPTT holds every layer's output of every step. Both sizes are measured by running the
model on one sample for one step (`activation_elements`), so they hold for any architecture.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..limits import check_bytes, memory_budget

ALIVE = 4      # tensors the size of the widest activation alive at once in a forward pass
BPTT_SAVED = 3  # tensors per layer output that backpropagation through time keeps


def split_bytes(samples: int, timesteps: int, input_shape) -> int:
    """Bytes of a float32 split ``X [N, T, *input_shape]``."""
    return 4 * samples * timesteps * math.prod(input_shape)


def check_split(name: str, split: str, samples: int, timesteps: int, input_shape) -> None:
    """Refuse loading a split into memory when it would exceed the budget."""
    check_bytes(split_bytes(samples, timesteps, input_shape),
                f"{name}/{split} in memory ({samples} samples x T = {timesteps} x {list(input_shape)})",
                "lower the timesteps, or limit the samples")


@torch.no_grad()
def activation_elements(model: nn.Module) -> tuple[int, int]:
    """``(widest, total)``: elements of the widest leaf-module output and of all leaf-module outputs, for one
    sample and one step of ``model`` (a `qnoise.models.Network`; run once, its RNG state and mode restored)."""
    shape = model.qnoise_config["input_shape"]
    sizes: list[int] = []

    def hook(_module, _inputs, output):
        if torch.is_tensor(output):
            sizes.append(output.numel())

    leaves = [m for name, m in model.named_modules() if "parametrizations" not in name
              and all(child == "parametrizations" for child, _ in m.named_children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        model.eval()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            model(torch.zeros(1, 1, *shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return max(sizes, default=math.prod(shape)), sum(sizes)


def fit_batch(model: nn.Module, timesteps: int, batch_size: int) -> int:
    """The largest batch, at most ``batch_size``, whose forward over ``timesteps`` steps fits the budget
    (a smaller batch gives the same numbers); ``ValueError`` when not even one sample fits."""
    widest, _ = activation_elements(model)
    per_sample = 4 * ALIVE * timesteps * widest
    fits = memory_budget() // max(per_sample, 1)
    if fits < 1:
        check_bytes(per_sample, f"one sample over T = {timesteps} steps (widest layer {widest:,} values per step)",
                    "lower the timesteps")
    return int(max(1, min(batch_size, fits)))


def check_training(model: nn.Module, timesteps: int, batch_size: int) -> None:
    """Refuse a training step (BPTT over ``timesteps``) that would not fit the budget, before training."""
    _, total = activation_elements(model)
    check_bytes(4 * BPTT_SAVED * timesteps * batch_size * total,
                f"a training batch ({batch_size} samples x T = {timesteps}, {total:,} activations per sample and "
                f"step, kept for backpropagation)", "lower --batch-size or --timesteps")
