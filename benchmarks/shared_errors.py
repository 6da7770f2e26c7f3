"""Which samples of a split several trained SNNs get wrong, and the accuracy ceiling that leaves a recipe change.

Every checkpoint predicts the same split (`qnoise.accuracy.predictions`, fed as its checkpoint says); the
samples wrong in every run bound what a better recipe can gain on that split (`qnoise.accuracy.ceiling`).
Prints each run's accuracy, the shared errors and the ceiling as markdown for docs/methods.md; ``--out`` also
writes the table as parquet. Trains nothing. Run by hand, e.g. on the N-MNIST recipe's nine runs:

    .venv/bin/python benchmarks/shared_errors.py --data-root ../shared/data/nmnist-1k --split val \\
        runs/train_results/nmnist-{float,binary,ternary}-s{0,1,2}
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qnoise.accuracy import ceiling, predictions, shared_errors
from qnoise.data import dataset_tensors, load_dataset
from qnoise.io import load_checkpoint
from qnoise.table_files import write_parquet_atomic


def split_of(doc: dict, split: str, root: str | None):
    """The ``split`` of the dataset a checkpoint was trained on, binned at its T with its data options."""
    record = doc.get("dataset") or {}
    ds = load_dataset(record.get("name", "nmnist"), split, root=root, timesteps=int(doc["timesteps"]),
                      **(record.get("options") or {}))
    return dataset_tensors(ds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoint folders trained on the same dataset")
    parser.add_argument("--data-root", default="../shared/data/nmnist-1k")
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", default=None, help="a .parquet file for the table of shared errors")
    args = parser.parse_args()
    predicted, labels, key = {}, None, None
    for path in args.checkpoints:
        model = load_checkpoint(path)
        doc = model.qnoise_checkpoint
        record = doc.get("dataset") or {}
        this = (record.get("name"), doc["timesteps"], str(sorted((record.get("options") or {}).items())))
        if key is not None and this != key:
            raise SystemExit(f"{path}: trained on {this}, the first checkpoint on {key}: compare runs on one split")
        key = this
        p, y = predictions(model, split_of(doc, args.split, args.data_root))
        if labels is not None and (y != labels).any():
            raise SystemExit(f"{path}: its {args.split} split's labels differ from the first checkpoint's")
        labels = y
        predicted[Path(path).name] = p
        print(f"{Path(path).name}: {100 * (p == y).mean():.2f}% of {len(y)}")
    table = shared_errors(predicted, labels)
    n = len(labels)
    print(f"\n{len(predicted)} runs, {n} {args.split} samples; wrong in every run: "
          f"{int((table['wrong_in'] == table['runs']).sum())}; ceiling {100 * ceiling(table, n):.2f}%\n")
    print("| sample | label | wrong in | most predicted |")
    print("|---:|---:|---:|---:|")
    for r in table.itertuples():
        print(f"| {r.sample} | {r.label} | {r.wrong_in} of {r.runs} | {r.most_predicted} |")
    if args.out:
        write_parquet_atomic(table, args.out, {"checkpoints": args.checkpoints, "split": args.split})


if __name__ == "__main__":
    main()
