"""``qnoise sample-data``: regenerate ``sample_data/`` (digits ANNs at 2, 3, 4 bits with their converted SNNs,
a direct-trained binary-weight SNN, a 256-sample evaluation batch, ``index.json`` and each SNN's small grid
of analyses in ``grids/``, which the dashboard opens on), deterministically. ``--grids-only`` writes the grids
for the models already there, without training them again."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample-data", help="regenerate the shipped sample models and evaluation batch",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="sample_data", help="folder to write")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    p.add_argument("--grids-only", action="store_true",
                   help="only analyse the existing SNNs' small grids into OUT/grids/ (no training)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train.sample_data import make_sample_data, write_sample_grids

    if args.grids_only:
        for path in write_sample_grids(args.out, progress=args.progress):
            print(f"wrote {path}")
        return 0
    index = make_sample_data(args.out, progress=args.progress)
    for e in index["models"]:
        acc = e["metrics"].get("test_accuracy")
        print(f"{e['name']:<28} {e['kind']}  T={e['timesteps']}  test accuracy {acc:.4f}")
    print(f"wrote {args.out}/index.json ({len(index['models'])} models, {len(index['batches'])} batch)")
    return 0
