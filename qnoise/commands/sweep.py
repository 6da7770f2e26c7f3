"""``qnoise sweep``: the probe over a grid of weight bits x timesteps (x rounding, state bits, neuron),
one parquet file per cell in a resumable run folder."""

from __future__ import annotations

import argparse

from . import _args
from ._common import (add_analysis_options, check_probe_memory, dataset_arg, int_list, probe_options,
                      sample_checkpoint, str_list)

ROUNDINGS = ("nearest", "truncate", "stochastic")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="analyse a grid of weight bits x timesteps (resumable, parallel)",
                       description="Run qnoise.sweep: one analysis per grid cell, stored in --out; rerun the "
                                   "same command to resume.")
    add_analysis_options(p)
    p.add_argument("--weight-bits", default="1,2,4,8,32", type=_args.grid(_args.bits, "--weight-bits"),
                   help="comma-separated (32 = float, 1 = binary)")
    p.add_argument("--timesteps", default="1,2,4,8,16,32", type=_args.grid(_args.timesteps, "--timesteps"),
                   help="comma-separated T values")
    p.add_argument("--rounding", default="nearest", type=_args.choice_grid(ROUNDINGS, "--rounding"),
                   help="comma-separated: nearest, truncate, stochastic")
    p.add_argument("--state-bits", default="model", type=_args.grid(_args.state_bits, "--state-bits"),
                   help="comma-separated membrane bits (32 = float; model = as saved)")
    p.add_argument("--neuron", default="model", type=_args.choice_grid(("if", "signed"), "--neuron", ("model",)),
                   help="comma-separated: if, signed (model = as saved)")
    p.add_argument("--out", required=True, help="run folder (manifest.json + cells/*.parquet)")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--workers", type=_args.workers, default=None, help="parallel workers (default: one per core)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..files import check_folder_output
    from ..report import accuracy_table
    from ..sweep import sweep

    check_folder_output(args.out)
    check_probe_memory(args.checkpoint or sample_checkpoint(), int_list(args.timesteps, "timesteps"),
                       args.batch_size)
    df = sweep(args.checkpoint, dataset_arg(args), weight_bits=int_list(args.weight_bits, "weight-bits"),
               timesteps=int_list(args.timesteps, "timesteps"), rounding=str_list(args.rounding),
               state_bits=int_list(args.state_bits, "state-bits"), neuron=str_list(args.neuron), out=args.out,
               executor=args.executor, workers=args.workers, weight_method=args.weight_method,
               weight_step=args.weight_step, ties=args.ties,
               **probe_options(args))
    table, what = accuracy_table(df), "Accuracy"
    if table.empty:  # unlabelled data
        table, what = accuracy_table(df, "agreement"), "Agreement with the reference"
    print(f"{args.out}: {df.groupby(['weight_bits', 'timesteps', 'rounding', 'state_bits', 'neuron']).ngroups} "
          f"cells, {len(df)} rows. {what} after T steps:")
    print(table.to_string())
    print(f"\nHTML report: qnoise report {args.out}")
    return 0
