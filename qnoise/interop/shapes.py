"""Input and output sizes of a foreign model, read from its layers."""

from __future__ import annotations

from torch import nn


def guess_input_shape(model: nn.Module, input_shape, library: str) -> list[int]:
    """``input_shape`` as given, else the first layer's ``in_features`` when it is a Linear; else ValueError."""
    if input_shape is not None:
        shape = [int(d) for d in input_shape]
        if not shape or any(d <= 0 for d in shape):
            raise ValueError(f"input_shape must hold positive sizes, got {input_shape!r}")
        return shape
    for m in model.modules():
        if isinstance(m, nn.Linear):
            return [m.in_features]
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            break
    raise ValueError(f"the {library} model starts with a convolution: pass input_shape=(C, H, W), one sample "
                     f"without time and batch")


def output_size(model: nn.Module) -> int | None:
    """``out_features`` of the last Linear (the classes of a classifier), or None."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m.out_features
    return last
