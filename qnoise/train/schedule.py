"""Per-epoch schedules, pure functions of the epoch index (so a resumed run needs no scheduler state).

    lr(e)            = lr0 * (1 + cos(pi * e / E)) / 2                  cosine decay over E epochs
    temperature(e)   = min(k * (e + 1), cap)                            sigmoid-sum weight quantizer (the paper's)
    act_bits(e)      = stages[floor(e * S / E)]                         progressive ANN quantization
                       stages = [None (float), 4, 3, 2] cut at the final bit width, S = len(stages)
    seed(s, e)       = s * 1_000_003 + e                                 RNG seed of epoch e
"""

from __future__ import annotations

import math

from ..quant.sigmoid_sum import paper_temperature


def cosine_lr(epoch: int, epochs: int, lr: float) -> float:
    """Learning rate of ``epoch`` (0-based) under cosine decay from ``lr`` over ``epochs``."""
    return lr * (1 + math.cos(math.pi * epoch / max(epochs, 1))) / 2


def temperature(epoch: int, k: float, cap: float) -> float:
    """Sigmoid-sum temperature of ``epoch`` (0-based): `qnoise.quant.sigmoid_sum.paper_temperature`."""
    return paper_temperature(epoch, k, cap)


def progressive_stages(final_bits: int) -> list[int | None]:
    """``[None, 4, 3, 2]`` keeping the float stage and widths above ``final_bits``, then ``final_bits``."""
    return [None] + [b for b in (4, 3) if b > final_bits] + [final_bits]


def act_bits_at(epoch: int, epochs: int, final_bits: int | None, progressive: bool) -> int | None:
    """Activation bits of ``epoch``: ``final_bits``, or its progressive stage (equal shares of the epochs)."""
    if not progressive or final_bits is None:
        return final_bits
    stages = progressive_stages(final_bits)
    return stages[min(len(stages) - 1, epoch * len(stages) // max(epochs, 1))]


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the RNGs (shuffling, augmentation) of one epoch."""
    return seed * 1_000_003 + epoch
