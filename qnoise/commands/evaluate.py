"""``qnoise evaluate``: accuracy of a checkpoint on a dataset split (number of samples too)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy of a checkpoint on a dataset split", description=__doc__,
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint directory")
    p.add_argument("--dataset", default=None, help="dataset name (default: the checkpoint's)")
    p.add_argument("--split", default="test", help="train, val or test")
    p.add_argument("--timesteps", type=int, default=None, help="T (default: the checkpoint's)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import load_checkpoint
    from ..train.evaluation import evaluate_model

    model = load_checkpoint(args.checkpoint, args.device)
    r = evaluate_model(model, args.dataset, args.split, args.timesteps, args.data_root,
                       device=next(model.parameters()).device)
    r["checkpoint"] = args.checkpoint
    if args.json:
        print(json.dumps(r, sort_keys=True))
    else:
        print(f"{args.checkpoint}: {r['dataset']}/{r['split']} T={r['timesteps']}: accuracy {r['accuracy']:.4f} "
              f"on {r['samples']} samples (loss {r['loss']:.4f})")
    return 0
