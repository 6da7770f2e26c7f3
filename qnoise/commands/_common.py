"""Helpers shared by the probe's commands (analyze, sweep, report): the bundled sample model (re-exported
from `qnoise.samples`, where it lives) and the parsing of comma-separated grids."""

from __future__ import annotations

from ..samples import sample_checkpoint, sample_checkpoints, sample_dir
from . import _args

__all__ = ["add_analysis_options", "check_probe_memory", "dataset_arg", "int_list", "sample_checkpoint",
           "sample_checkpoints", "sample_dir", "str_list"]


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
    p.add_argument("--data", default=None, metavar="PATH",
                   help="your own data instead of --dataset: an .npz of frames and labels, or a folder of event "
                        "recordings with a labels file (see docs/interop.md)")
    p.add_argument("--data-root", default=None, help="where named datasets are read (default: $QNOISE_DATA, else "
                                                      "~/.cache/qnoise/data)")
    p.add_argument("--split", default="test", help="dataset split (default: test)")
    p.add_argument("--limit", type=_args.samples, default=None, help="analyse at most this many samples")
    p.add_argument("--batch-size", type=_args.batch_size, default=64)
    p.add_argument("--reference", default="ann",
                   help="what the SNN is compared with: ann (the ANN twin with float weights: the whole drop, split "
                        "into weight, propagated, quantization and sequential error), ann-quantized (the twin with "
                        "the SNN's quantized weights), source (the quantized ANN a converted checkpoint came from), "
                        "an ANN checkpoint folder, or snn (the same SNN at full precision: own and propagated error)")
    p.add_argument("--input-mode", choices=("sequence", "static"), default=None,
                   help="feed the frames as they are, or their mean at every step (default: as the checkpoint says)")
    p.add_argument("--twin-input", choices=("mean", "cumulative"), default="mean",
                   help="what the ANN twin sees: the mean input frame, or at step t the mean of frames 1..t")
    p.add_argument("--no-isolate", action="store_true", help="skip the isolated-mode rows")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (default: on a terminal)")
    p.add_argument("--weight-method", choices=("uniform", "ternary", "sigmoid"), default="uniform",
                   help="weight quantizer for weight bits 2..31 (1 bit is always binary)")
    p.add_argument("--weight-step", type=_args.float_positive("a weight step"), default=None,
                   help="quantize uniform weights on this fixed step (a hardware's grid, e.g. 2 for Loihi's 8-bit "
                        "weights) instead of from max|w|; weights already on a b-bit grid keep it without this")
    p.add_argument("--ties", default="half-even", choices=("half-even", "half-away", "half-up"),
                   help="how nearest rounding breaks exact halves")
    p.add_argument("--energy", action="append", default=[], metavar="KEY=PJ",
                   help="override a per-operation energy of qnoise.metrics.EnergyModel (45 nm, Horowitz 2014), e.g. "
                        "--energy float_add=0.9 --energy int_mult_8=0.2; repeatable")
    p.add_argument("--memory-access", action="store_true",
                   help="add the energy of reading weights and reading/writing membranes (Lemaire et al. 2022)")
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


def energy_model(overrides: list[str], memory_access: bool = False):
    """`qnoise.metrics.EnergyModel` with ``KEY=VALUE`` overrides (``--energy``), naming a bad key or value."""
    import dataclasses

    from ..metrics import EnergyModel

    known = {f.name for f in dataclasses.fields(EnergyModel)} - {"memory_access"}
    values: dict = {"memory_access": bool(memory_access)}
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or key.strip() not in known:
            raise ValueError(f"--energy {item!r}: expected KEY=PJ with KEY one of {sorted(known)}")
        try:
            values[key.strip()] = float(text)
        except ValueError as err:
            raise ValueError(f"--energy {item!r}: {text!r} is not a number of pJ") from err
    return EnergyModel(**values)


def dataset_arg(args):
    """What the data options name: ``--data PATH`` (the user's own data) or ``--dataset``; both is refused."""
    if args.data and args.dataset:
        raise ValueError("give --data PATH or --dataset NAME, not both")
    return args.data or args.dataset


def probe_options(args) -> dict:
    """The probe's options (`qnoise.probe.options`) from the arguments of `add_analysis_options`."""
    return {"split": args.split, "limit": args.limit, "batch_size": args.batch_size, "reference": args.reference,
            "isolate": not args.no_isolate, "twin_input": args.twin_input, "input_mode": args.input_mode,
            "device": args.device, "seed": args.seed, "data_root": args.data_root,
            "energy": energy_model(args.energy, args.memory_access),
            **({"progress": False} if args.no_progress else {})}
