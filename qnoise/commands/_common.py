"""Helpers shared by the probe's commands (analyze, sweep, report): the bundled sample model (re-exported
from `qnoise.samples`, where it lives) and the parsing of comma-separated grids."""

from __future__ import annotations

from ..samples import sample_checkpoint, sample_checkpoints, sample_dir
from . import _args

__all__ = ["add_analysis_options", "check_probe_memory", "int_list", "sample_checkpoint", "sample_checkpoints",
           "sample_dir", "str_list"]


def int_list(text: str | None, what: str) -> list[int | None] | None:
    """``"1,2,4"`` -> ``[1, 2, 4]``; ``"model"`` (or empty) -> None entries: keep the model's own setting."""
    if text is None:
        return None
    out: list[int | None] = []
    for part in str(text).split(","):
        part = part.strip()
        if part in ("", "model", "none", "None"):
            out.append(None)
            continue
        try:
            out.append(int(part))
        except ValueError as err:
            raise ValueError(f"--{what}: {part!r} is not an integer (give a comma-separated list like 1,2,4)") \
                from err
    return out


def str_list(text: str | None) -> list[str | None] | None:
    if text is None:
        return None
    return [None if p.strip() in ("", "model") else p.strip() for p in str(text).split(",")]


def add_analysis_options(p) -> None:
    """Options common to analyze and sweep."""
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the bundled sample model)")
    p.add_argument("--dataset", default=None, help="dataset name (default: the checkpoint's dataset)")
    p.add_argument("--split", default="test", help="dataset split (default: test)")
    p.add_argument("--limit", type=_args.samples, default=None, help="analyse at most this many samples")
    p.add_argument("--batch-size", type=_args.batch_size, default=64)
    p.add_argument("--reference", default="float",
                   help="the ANN reference: float (twin with float weights: the whole drop), quantized (the "
                        "SNN's quantized weights), source (the quantized ANN a converted checkpoint came from), "
                        "or an ANN checkpoint folder")
    p.add_argument("--input-mode", choices=("sequence", "static"), default=None,
                   help="feed the frames as they are, or their mean at every step (default: as the checkpoint says)")
    p.add_argument("--twin-input", choices=("mean", "cumulative"), default="mean",
                   help="what the ANN twin sees: the mean input frame, or at step t the mean of frames 1..t")
    p.add_argument("--no-isolate", action="store_true", help="skip the isolated-mode rows")
    p.add_argument("--weight-method", choices=("uniform", "ternary", "sigmoid"), default="uniform",
                   help="weight quantizer for weight bits 2..31 (1 bit is always binary)")
    p.add_argument("--e-mac", type=float, default=4.6, help="energy per MAC in pJ (default 4.6, 45 nm)")
    p.add_argument("--e-ac", type=float, default=0.9, help="energy per accumulate in pJ (default 0.9, 45 nm)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=0)


PROBE_COPIES = 3  # per layer the probe holds the SNN's output, its reference's and their difference


def check_probe_memory(checkpoint, timesteps: list[int | None], batch_size: int) -> None:
    """Refuse, before the analysis, a T x batch the probe could not hold: every layer's output over T steps
    for a batch, a few times over (checked against `qnoise.limits.memory_budget`). Loading the checkpoint
    here also reports a broken one before any work."""
    from ..io import load_checkpoint
    from ..limits import check_bytes
    from ..train.budget import activation_elements

    model = load_checkpoint(checkpoint)
    steps = max((t or model.qnoise_checkpoint.get("timesteps") or 1) for t in (timesteps or [None]))
    _, total = activation_elements(model)
    check_bytes(4 * PROBE_COPIES * steps * batch_size * total,
                f"the analysis of a batch ({batch_size} samples x T = {steps}, {total:,} activations per sample and "
                f"step)", "lower --batch-size or --timesteps")
