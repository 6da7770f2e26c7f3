"""Argument types for the command line: each refuses a bad value while the arguments are parsed (before any
work), naming the flag, the value and what is expected, e.g. ``--timesteps 0`` or ``--workers 0``.

argparse prints ``qnoise <command>: error: argument --flag: <message>`` and exits with status 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..limits import MAX_BATCH_SIZE, MAX_TIMESTEPS


def int_in(low: int, high: int | None = None, what: str = "an integer", hint: str = "") -> Callable[[str], int]:
    """An argparse type: an integer in ``low..high``."""
    bound = f"in {low}..{high}" if high is not None else f">= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; expected {what} {bound}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range; expected {what} {bound}{hint}")
        return value

    return parse


def float_positive(what: str = "a number") -> Callable[[str], float]:
    """An argparse type: a finite number > 0."""
    import math

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; expected {what} > 0") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"{text} is out of range; expected {what}, finite and > 0")
        return value

    return parse


timesteps = int_in(1, MAX_TIMESTEPS, "a number of timesteps", " (leave the flag out to use the checkpoint's T)")
batch_size = int_in(1, MAX_BATCH_SIZE, "a batch size")
samples = int_in(1, None, "a number of samples")
workers = int_in(1, 1024, "a number of worker processes")
epochs = int_in(1, 1_000_000, "a number of epochs", " (0 epochs would save an untrained model)")
bits = int_in(1, 32, "a bit width")
state_bits = int_in(2, 32, "a membrane bit width")


AS_SAVED = ("model", "none", "None")  # entries meaning "keep the model's own setting" (`_common.int_list`)


def grid(kind: Callable[[str], int], flag: str, keep: tuple[str, ...] = AS_SAVED) -> Callable[[str], str]:
    """An argparse type for a comma-separated grid: each entry parsed by ``kind`` (or one of ``keep``, e.g.
    ``model``: as saved); duplicates are named. Returns the text unchanged (the command parses it)."""

    def parse(text: str) -> str:
        seen: dict = {}
        for part in str(text).split(","):
            part = part.strip()
            if part == "":
                raise argparse.ArgumentTypeError(f"{text!r} has an empty entry; give a comma-separated list like 2,4,8")
            key = part if part in keep else kind(part)
            if key in seen:
                raise argparse.ArgumentTypeError(f"{key} is given twice in {text!r}; each {flag} value once")
            seen[key] = True
        return text

    return parse


def choice_grid(choices: tuple[str, ...], flag: str, keep: tuple[str, ...] = ()) -> Callable[[str], str]:
    """A comma-separated grid of names from ``choices`` (or ``keep``; duplicates named)."""

    def kind(part: str) -> str:
        if part not in choices:
            raise argparse.ArgumentTypeError(f"{part!r} is not one of {', '.join(choices + keep)}")
        return part

    return grid(kind, flag, keep=keep)


def single(kind: Callable[[str], int], flag: str, keep: tuple[str, ...] = AS_SAVED) -> Callable[[str], str]:
    """One value (``kind``, or one of ``keep``); a comma-separated list is refused with a pointer to sweep."""

    def parse(text: str) -> str:
        if "," in str(text):
            raise argparse.ArgumentTypeError(f"{text!r} is a list; this command takes one value (run `qnoise sweep` "
                                             f"for a grid of {flag} values)")
        part = str(text).strip()
        if part not in keep:
            kind(part)
        return part

    return parse
