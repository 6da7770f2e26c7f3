"""``qnoise import``: a NIR graph (``.nir``) as a qnoise checkpoint folder (safetensors + JSON module graph).

NIR has no timestep and no reset by subtraction: ``--dt``, ``--reset``, ``--fire`` and ``--spike-value`` say
how to run it (`qnoise.interop.from_nir`) and are recorded in the checkpoint's ``model.source``.
"""

from __future__ import annotations

import argparse

from . import _args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="a NIR model (.nir) as a qnoise checkpoint the CLI and dashboard open",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", help="the .nir file (nir.write's HDF5)")
    p.add_argument("--out", required=True, help="checkpoint folder to write (new, empty, or a qnoise checkpoint)")
    p.add_argument("--dt", type=_args.float_positive("a timestep in seconds"), default=1e-4,
                   help="timestep in seconds (NIR's time constants are in seconds; SpikingJelly and nirtorch use "
                        "1e-4)")
    p.add_argument("--reset", choices=("zero", "subtract"), default="zero",
                   help="how neurons reset (NIR only says v_reset; it cannot say 'by subtraction')")
    p.add_argument("--fire", choices=(">", ">="), default=">", help="threshold test")
    p.add_argument("--spike-value", choices=("one", "theta"), default="one", help="what a spike carries")
    p.add_argument("--timesteps", type=_args.timesteps, default=None, help="T the model runs with (recorded)")
    p.add_argument("--dataset", default=None, help="dataset name to record (what analyze/evaluate use by default)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..interop import from_nir
    from ..io import check_output_folder, save_checkpoint

    check_output_folder(args.out)
    model = from_nir(args.model, dt=args.dt, reset=args.reset, fire=args.fire, spike_value=args.spike_value)
    record = None
    if args.dataset:
        record = {"name": args.dataset, **({"timesteps": args.timesteps} if args.timesteps else {})}
    path = save_checkpoint(model, args.out, dataset=record, timesteps=args.timesteps,
                           extra={"imported": {"from": "nir", "file": str(args.model)}})
    nodes = len(model.qnoise_config["graph"]["nodes"])
    print(f"wrote {path}: {nodes} nodes, input {tuple(model.qnoise_config['input_shape'])}, dt = {args.dt} s, "
          f"reset {args.reset}, fire '{args.fire}'")
    return 0
