"""The ``qnoise`` command line: ``qnoise <command> --help`` for each command.

Each command lives in ``qnoise/commands/<name>.py`` and defines ``register(subparsers)``, which adds its
parser and sets ``func`` (called with the parsed arguments, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .allocator import recycle_large_allocations

# one line per command module, in the order `qnoise --help` lists them
COMMAND_MODULES = [
    "qnoise.commands.demo",
    "qnoise.commands.train",
    "qnoise.commands.convert",
    "qnoise.commands.evaluate",
    "qnoise.commands.sample_data",
    "qnoise.commands.import_model",
    "qnoise.commands.analyze",
    "qnoise.commands.sweep",
    "qnoise.commands.search",
    "qnoise.commands.report",
    "qnoise.commands.dashboard",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qnoise",
        description="Quantization-noise analysis of spiking neural networks.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"qnoise {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    recycle_large_allocations()  # every command: large tensors reused, not page-faulted in anew (qnoise.allocator)
    from .files import FolderInUse

    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, FolderInUse, ImportError) as err:  # bad input, a place it cannot write, or an
        print(f"qnoise {args.command}: error: {err}", file=sys.stderr)  # optional package missing: no traceback
        return 2


if __name__ == "__main__":
    sys.exit(main())
