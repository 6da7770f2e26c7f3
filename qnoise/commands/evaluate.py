"""``qnoise evaluate``: accuracy of a checkpoint on a dataset split (number of samples too).

Quantization options evaluate a post-training quantized copy (`qnoise.models.apply_quantization`): weights
(``--weight-bits``/``--weight-method``), thresholds on one shared grid (``--threshold-bits``) and membrane
(``--state-bits``), each with a rounding mode. The checkpoint itself is not changed.
"""

from __future__ import annotations

import argparse

from . import _args

ROUNDINGS = ("nearest", "truncate", "stochastic")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy of a checkpoint on a dataset split (optionally post-training "
                                        "quantized)", description=__doc__,
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint directory")
    p.add_argument("--dataset", default=None, help="dataset name (default: the checkpoint's)")
    p.add_argument("--data", dest="dataset", metavar="PATH",
                   help="your own data instead of a dataset name: an .npz of frames and labels or a folder of event "
                        "recordings (same as --dataset PATH)")
    p.add_argument("--split", default="test", help="train, val or test")
    p.add_argument("--timesteps", type=_args.timesteps, default=None, help="T (default: the checkpoint's)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object (strict JSON: NaN is written as null)")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="load a checkpoint holding NaN/Inf values or thresholds <= 0 anyway (with a warning), to "
                        "inspect it; by default it is refused")
    g = p.add_argument_group("post-training quantization")
    g.add_argument("--weight-bits", type=_args.bits, default=None, help="1 is binary (uniform becomes binary)")
    g.add_argument("--weight-method", default=None, choices=("uniform", "binary", "ternary", "sigmoid"),
                   help="default uniform when --weight-bits is given")
    g.add_argument("--weight-rounding", default="nearest", choices=ROUNDINGS)
    g.add_argument("--keep-first-last", action="store_true", help="first and last weight layer stay as they are")
    g.add_argument("--threshold-bits", type=_args.bits, default=None)
    g.add_argument("--threshold-rounding", default="nearest", choices=ROUNDINGS)
    g.add_argument("--state-bits", type=_args.state_bits, default=None, help="membrane bits")
    g.add_argument("--state-rounding", default="nearest", choices=ROUNDINGS)
    p.set_defaults(func=run)


def ptq_spec(args: argparse.Namespace) -> dict:
    """The quantization parts the options ask for (empty: evaluate the checkpoint as it is)."""
    spec: dict = {}
    if args.weight_bits is not None or args.weight_method is not None:
        bits = args.weight_bits if args.weight_bits is not None else 1  # binary/ternary set their own
        method = args.weight_method or "uniform"
        spec["weights"] = {"bits": bits, "method": "binary" if bits == 1 and method == "uniform" else method,
                           "rounding": args.weight_rounding, "keep_first_last": args.keep_first_last}
    if args.threshold_bits is not None:
        spec["thresholds"] = {"bits": args.threshold_bits, "rounding": args.threshold_rounding}
    if args.state_bits is not None:
        spec["membrane"] = {"bits": args.state_bits, "rounding": args.state_rounding}
    return spec


def run(args: argparse.Namespace) -> int:
    import torch

    from ..files import dumps_json
    from ..io import load_checkpoint
    from ..models import apply_quantization
    from ..train.evaluation import evaluate_model

    model = load_checkpoint(args.checkpoint, args.device, allow_nonfinite=args.allow_nonfinite)
    spec = ptq_spec(args)
    if spec:
        torch.manual_seed(0)  # stochastic rounding draws from the global generator
        apply_quantization(model, spec)
    r = evaluate_model(model, args.dataset, args.split, args.timesteps, args.data_root,
                       device=next(model.parameters()).device)
    r["checkpoint"] = args.checkpoint
    if spec:
        r["post_training_quantization"] = model.qnoise_config["quantization"]
    if args.json:
        print(dumps_json(r, sort_keys=True))
    else:
        ptq = " (post-training quantized)" if spec else ""
        print(f"{args.checkpoint}{ptq}: {r['dataset']}/{r['split']} T={r['timesteps']}: accuracy {r['accuracy']:.4f} "
              f"on {r['samples']} samples (loss {r['loss']:.4f})")
    return 0
