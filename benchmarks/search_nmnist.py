"""The mixed-precision search on an N-MNIST SNN under a quarter of its float memory, against the best single
global bit width that fits the same budget (issue 14's N-MNIST proof).

The float model's memory (float weights, float membranes) sets the budget: a quarter of it. The guided search
(`qnoise.search`) chooses per-layer weight and membrane bits; the baseline evaluates every *global*
configuration (all weight layers at one width, all membranes at one width) and keeps the most accurate that
fits. Both are evaluated on the same samples, with Wilson intervals. Prints a markdown table for
docs/results.md.

Run by hand (trains nothing; give an N-MNIST SNN checkpoint):

    .venv/bin/python benchmarks/search_nmnist.py --checkpoint runs/train_results/nmnist-t4-float \\
        --data-root ../shared/data/nmnist-1k --split val [--limit 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch

from qnoise.data import dataset_tensors, load_dataset
from qnoise.io import load_checkpoint
from qnoise.search import Candidate, Evaluator, SearchSpace, search

WEIGHT_BITS = (32, 8, 6, 4, 3, 2)
STATE_BITS = (32, 16, 8, 6, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-root", default="../shared/data/nmnist-1k")
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", default="runs/search-nmnist")
    parser.add_argument("--data-file", default=None,
                        help="an .npz with X [N, T, ...] and y (frames made elsewhere) instead of loading the split")
    parser.add_argument("--weight-bits", default=",".join(map(str, WEIGHT_BITS)))
    parser.add_argument("--state-bits", default=",".join(map(str, STATE_BITS)))
    args = parser.parse_args()
    weight_bits = tuple(int(b) for b in args.weight_bits.split(","))
    state_bits = tuple(int(b) for b in args.state_bits.split(","))
    model = load_checkpoint(args.checkpoint)
    doc = model.qnoise_checkpoint
    T = int(doc["timesteps"])
    record = doc.get("dataset") or {}
    options = {k: v for k, v in (record.get("options") or {}).items()}
    if args.data_file:
        with np.load(args.data_file) as f:
            data = (torch.from_numpy(f["X"]), torch.from_numpy(f["y"]))
    else:
        ds = load_dataset(record.get("name", "nmnist"), args.split, root=args.data_root, timesteps=T,
                          limit=args.limit, **options)
        data = dataset_tensors(ds)
    space = SearchSpace.for_model(model, T, weight_bits=weight_bits, state_bits=state_bits)
    ev = Evaluator(model, data, {})
    top = ev(space.top())
    budget_kib = top["memory_bits"] / 4 / 8192
    start = time.perf_counter()
    result = search(args.checkpoint, data, budget={"memory_kib": budget_kib}, space=space, out=args.out,
                    workers=args.workers, max_evaluations=400, progress=True)
    seconds = time.perf_counter() - start
    best = None
    for wb, sb in itertools.product(weight_bits, state_bits):
        c = Candidate(tuple((n, wb) for n in space.weights), tuple((n, sb) for n in space.states), T)
        r = result.records.get(c.key) or ev(c)
        better = best is None or (r["accuracy"], -r["memory_bits"]) > (best[2]["accuracy"], -best[2]["memory_bits"])
        if r["memory_bits"] / 8192 <= budget_kib and better:
            best = (wb, sb, r)
    n = top["samples"]
    print(f"model {args.checkpoint}, T={T}, {n} {args.split} samples; float: {100 * top['accuracy']:.2f}% at "
          f"{top['memory_bits'] / 8192:.1f} KiB; budget a quarter: {budget_kib:.1f} KiB")
    print(f"search: {result.extra['evaluations']} evaluations, {seconds:.0f} s; {result.message}")
    print("| configuration | accuracy % | 95% interval | memory KiB | energy nJ |")
    print("|---|---:|---|---:|---:|")
    rows = [("float (reference)", top)]
    if result.chosen is not None:
        rows.append((f"searched, per layer: {result.chosen['label']}", result.records[result.chosen["key"]]))
    if best is not None:
        wb, sb, r = best
        rows.append((f"best global width that fits: weights {wb} bits, membranes {'float' if sb == 32 else sb}", r))
    for name, r in rows:
        print(f"| {name} | {100 * r['accuracy']:.2f} | {100 * r['ci_low']:.1f}-{100 * r['ci_high']:.1f} | "
              f"{r['memory_bits'] / 8192:.1f} | {r['energy_pj'] / 1000:.1f} |")
    if result.chosen is not None:
        print(result.layers().to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
