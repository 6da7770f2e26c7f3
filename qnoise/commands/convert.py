"""``qnoise convert``: quantized ANN checkpoint -> SNN checkpoint (IF, theta = alpha, T = 2^b - 1, BN folded),
optionally signed IF and layer-wise fine-tuning; prints ANN and SNN accuracy."""

from __future__ import annotations

import argparse

from . import _args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a quantized ANN checkpoint into an SNN checkpoint",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="ANN checkpoint directory (LearnableClip activations)")
    p.add_argument("--out", required=True, help="SNN checkpoint directory to write")
    p.add_argument("--signed", action="store_true", help="signed IF neurons (negative spikes undo early ones)")
    p.add_argument("--finetune-epochs", type=_args.int_in(0, 1_000_000, "a number of epochs"), default=0,
                   help="layer-wise fine-tuning epochs per layer")
    p.add_argument("--finetune-lr", type=_args.float_positive("a learning rate"), default=1e-3,
                   help="SGD learning rate of the fine-tuning (momentum 0.9, weight decay 5e-4: Fast-SNN's)")
    p.add_argument("--force", action="store_true",
                   help="keep every fine-tuning update (default: a layer keeps its update only if the SNN's "
                        "training accuracy improves)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train.convert_run import convert_checkpoint

    snn = convert_checkpoint(args.checkpoint, args.out, signed=args.signed, finetune_epochs=args.finetune_epochs,
                             finetune_lr=args.finetune_lr, force=args.force, data_root=args.data_root,
                             device=args.device, seed=args.seed, progress=not args.no_progress)
    doc = snn.qnoise_checkpoint
    m = doc["metrics"]
    print(f"saved {args.out}: T = {doc['timesteps']}")
    for key in ("val", "test"):
        if f"{key}_accuracy" in m:
            print(f"  {key}: ANN {m[f'ann_{key}_accuracy']:.4f}  SNN {m[f'{key}_accuracy']:.4f}  "
                  f"({m[f'{key}_samples']} samples)")
    return 0
