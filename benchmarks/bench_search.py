"""How close the guided mixed-precision search gets to the true front, and at what cost (issue 14).

On the sample digits CNN (`sample_data/digits-snn-3bit`: conv1, conv2, fc3 and the readout; three IF layers;
T = 7), the space is 3 weight layers x {float, 8, 4, 2} bits (the readout pinned at 8) x 3 membrane layers x
{float, 8, 6} bits: 1,728 configurations. The exhaustive search evaluates all of them (the true fronts); the
guided search (`qnoise.search.strategy`) walks the same space. Reported: evaluations each took, and for each
point of the true accuracy/memory (and accuracy/energy) front, how far the guided front's best accuracy at that
cost falls below it (0 = the point was reached).

Run: ``.venv/bin/python benchmarks/bench_search.py [--limit 256] [--workers 2] [--out runs/bench-search]``
(the exhaustive search reuses the guided one's evaluations: a configuration is never evaluated twice).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from qnoise.insights import pareto_front
from qnoise.search import search

REPO = Path(__file__).resolve().parents[1]
SPACE = {"weight_bits": (32, 8, 4, 2), "state_bits": (32, 8, 6), "fixed": {"readout.body.0": 8}}


def shortfall(truth: pd.DataFrame, found: pd.DataFrame, cost: str) -> np.ndarray:
    """For each true front point, its accuracy minus the best accuracy the found configurations reach at no
    more cost (0: reached)."""
    out = []
    for _, p in truth.iterrows():
        ok = found[found[cost] <= p[cost] + 1e-9]
        out.append(p["accuracy"] - (ok["accuracy"].max() if len(ok) else 0.0))
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(REPO / "sample_data" / "digits-snn-3bit"))
    parser.add_argument("--limit", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="runs/bench-search")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    guided = search(args.checkpoint, "digits", space=SPACE, limit=args.limit, out=out / "guided",
                    workers=args.workers, max_evaluations=2000)
    t_guided = time.perf_counter() - start
    shutil.copytree(out / "guided", out / "exhaustive")
    start = time.perf_counter()
    full = search(args.checkpoint, "digits", space=SPACE, limit=args.limit, strategy="exhaustive",
                  out=out / "exhaustive", workers=args.workers, max_evaluations=2000)
    t_rest = time.perf_counter() - start
    n_guided, n_full = guided.extra["evaluations"], full.extra["evaluations"]
    print(f"space: {n_full} configurations; {args.limit} test samples; {args.workers} worker(s)")
    print(f"guided: {n_guided} evaluations ({100 * n_guided / n_full:.1f}% of the space, {t_guided:.0f} s); "
          f"exhaustive: {n_full} ({t_rest:.0f} s more for the {n_full - n_guided} the guided search skipped)")
    for cost, name in (("memory_bits", "memory"), ("energy_pj", "energy")):
        truth = pareto_front(full.table, cost)
        gaps = shortfall(truth, guided.table, cost)
        print(f"accuracy/{name} front: {len(truth)} true points; guided reached {int((gaps <= 1e-12).sum())}; "
              f"largest shortfall {100 * gaps.max():.2f} points, mean {100 * gaps.mean():.2f}")


if __name__ == "__main__":
    main()
