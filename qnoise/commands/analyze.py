"""``qnoise analyze``: the probe's table for one configuration, as parquet (+ JSON sidecar)."""

from __future__ import annotations

import argparse

from . import _args
from ._common import add_analysis_options, check_probe_memory, dataset_arg, int_list, probe_options, sample_checkpoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="quantization noise per layer and timestep for one configuration",
                       description="Run the probe (qnoise.analyze) on a checkpoint and write its long-form table.")
    add_analysis_options(p)
    p.add_argument("--weight-bits", default=None, type=_args.single(_args.bits, "--weight-bits"),
                   help="weight bits, one value (32 = float, 1 = binary; default: as saved)")
    p.add_argument("--state-bits", default=None, type=_args.single(_args.state_bits, "--state-bits"),
                   help="membrane bits, one value (32 = float; default: as saved)")
    p.add_argument("--timesteps", type=_args.timesteps, default=None, help="T (default: the checkpoint's)")
    p.add_argument("--rounding", default="nearest", choices=("nearest", "truncate", "stochastic"))
    p.add_argument("--neuron", default=None, choices=("if", "signed"), help="unsigned or signed IF (default: as saved)")
    p.add_argument("--out", default=None, help="output .parquet file (default: print a summary only); an existing "
                                                "file is replaced only if it is a qnoise table")
    p.add_argument("--force", action="store_true", help="let --out replace a file that is not a qnoise table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..probe import analyze
    from ..report import summary_text

    wb = int_list(args.weight_bits, "weight-bits")
    sb = int_list(args.state_bits, "state-bits")
    checkpoint = args.checkpoint or sample_checkpoint()
    if args.out:  # before any work: the analysis must not end in a refused or wrong write
        from ..table_files import check_table_output

        check_table_output(args.out, args.force)
    check_probe_memory(checkpoint, [args.timesteps], args.batch_size)
    df = analyze(checkpoint, dataset_arg(args), timesteps=args.timesteps, weight_bits=wb[0] if wb else None,
                 state_bits=sb[0] if sb else None, rounding=args.rounding, weight_method=args.weight_method,
                 neuron=args.neuron, weight_step=args.weight_step, ties=args.ties, **probe_options(args))
    if args.out:
        from ..table_files import write_parquet_atomic

        path = write_parquet_atomic(df, args.out, {"command": "analyze", "checkpoint": str(checkpoint),
                                                   "args": {k: v for k, v in vars(args).items() if k != "func"},
                                                   "probe": df.attrs.get("qnoise", {})})
        print(f"wrote {path} ({len(df)} rows)")
    print(summary_text(df))
    return 0
