"""``qnoise search``: per-layer weight and membrane bits (and T) for the most accurate SNN within a memory and/or
energy budget; the fronts and the evaluations as parquet tables, the choice as a checkpoint."""

from __future__ import annotations

import argparse

from . import _args
from ._common import energy_model, sample_checkpoint


def _list(kind, flag: str):
    parse = _args.grid(kind, flag, keep=())

    def run(text: str) -> list[int]:
        return [int(v) for v in parse(text).split(",")]
    return run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="mixed precision under a budget: per-layer bits chosen by a guided search",
                       description="Run qnoise.search: evaluate per-layer weight bits, membrane bits and T (guided by "
                                   "the probe, or exhaustively), report the accuracy/memory and accuracy/energy fronts "
                                   "and save the most accurate configuration within the budget as a checkpoint.")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the bundled sample model)")
    p.add_argument("--dataset", default=None, help="dataset name (default: the checkpoint's dataset)")
    p.add_argument("--split", default="test", help="dataset split to evaluate on (default: test)")
    p.add_argument("--limit", type=_args.samples, default=None, help="evaluate on at most this many samples")
    p.add_argument("--batch-size", type=_args.batch_size, default=64)
    p.add_argument("--memory-kib", type=_args.float_positive("a memory budget in KiB"), default=None,
                   help="budget: at most this much memory (weights, scales, thresholds, membranes) in KiB")
    p.add_argument("--energy-nj", type=_args.float_positive("an energy budget in nJ"), default=None,
                   help="budget: at most this much energy per inference in nJ")
    p.add_argument("--tolerance", type=float, default=1.0,
                   help="accuracy points the choice may lose against the highest precision (default 1)")
    p.add_argument("--weight-bits", type=_list(_args.bits, "weight-bits"), default=[32, 8, 4, 2],
                   help="weight bits each layer may take (32 = float, 1 = binary; default 32,8,4,2)")
    p.add_argument("--state-bits", type=_list(_args.state_bits, "state-bits"), default=[32, 8, 6],
                   help="membrane bits each neuron layer may take (32 = float; default 32,8,6)")
    p.add_argument("--timesteps", type=_list(_args.timesteps, "timesteps"), default=None,
                   help="the T values to choose from (default: the checkpoint's T)")
    p.add_argument("--fixed", action="append", default=[], metavar="LAYER=BITS",
                   help="pin a weight layer or neuron layer at these bits (e.g. readout.body.0=8); repeatable")
    p.add_argument("--strategy", choices=("guided", "exhaustive"), default="guided")
    p.add_argument("--max-evaluations", type=_args.int_in(1, None, "a number of evaluations"), default=400)
    p.add_argument("--workers", type=_args.workers, default=1, help="evaluate in this many processes")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--energy", action="append", default=[], metavar="KEY=PJ",
                   help="override a per-operation energy of qnoise.metrics.EnergyModel; repeatable")
    p.add_argument("--memory-access", action="store_true", help="add the energy of moving operands")
    p.add_argument("--out", required=True, help="run folder: evaluations (resumable), fronts, chosen_layers")
    p.add_argument("--save-checkpoint", default=None, help="save the chosen configuration as a checkpoint here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: on a terminal)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, ...")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _fixed(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, sep, bits = item.partition("=")
        if not sep or not bits.strip().isdigit() or not 1 <= int(bits) <= 32:
            raise ValueError(f"--fixed {item!r}: expected LAYER=BITS with BITS in 1..32")
        out[name.strip()] = int(bits)
    return out


def run(args: argparse.Namespace) -> int:
    from ..files import check_folder_output
    from ..io import check_output_folder, load_checkpoint
    from ..search import search

    if not 0 <= args.tolerance <= 100:
        raise ValueError(f"--tolerance {args.tolerance}: expected accuracy points in 0..100")
    checkpoint = args.checkpoint or sample_checkpoint()
    check_folder_output(args.out)
    if args.save_checkpoint:  # checked now, not after the whole search
        check_output_folder(args.save_checkpoint, "--save-checkpoint", source=checkpoint)
    space = {"weight_bits": args.weight_bits, "state_bits": args.state_bits, "fixed": _fixed(args.fixed)}
    if args.timesteps:
        space["timesteps"] = args.timesteps
    result = search(checkpoint, args.dataset, budget={"memory_kib": args.memory_kib, "energy_nj": args.energy_nj},
                    space=space, tolerance=args.tolerance / 100, strategy=args.strategy, out=args.out,
                    max_evaluations=args.max_evaluations, workers=args.workers, executor=args.executor,
                    split=args.split, limit=args.limit, batch_size=args.batch_size, device=args.device,
                    seed=args.seed, energy=energy_model(args.energy, args.memory_access),
                    progress=False if args.no_progress else None)
    paths = result.save_tables(args.out, {"command": "search", "checkpoint": str(checkpoint)})
    print(f"{result.extra['evaluations']} configurations evaluated ({result.loaded} from earlier runs); tables: "
          f"{', '.join(p.name for p in paths)} in {args.out}")
    cols = ["label", "accuracy", "ci_low", "ci_high", "memory_kib", "energy_nj"]
    print("accuracy / memory front:")
    print(result.front_memory[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(result.message)
    if result.chosen is not None:
        print(result.layers().to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        if args.save_checkpoint:
            path = result.save_checkpoint(load_checkpoint(checkpoint), args.save_checkpoint)
            print(f"saved the chosen configuration to {path}")
    return 0
