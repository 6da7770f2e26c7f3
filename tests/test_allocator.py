"""Every entry point that runs SNN forwards keeps freed memory for reuse (qnoise.allocator): the setting is
process-wide, so each check runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")

PRELUDE = """
import torch
from torch import nn
import qnoise.allocator as allocator
from qnoise import IF, MultiStep
model = nn.Sequential(MultiStep(nn.Linear(4, 3)), IF(), MultiStep(nn.Linear(3, 2))).eval()
assert allocator._applied is None, "importing qnoise must not change the process's allocator"
"""


@pytest.mark.parametrize("entry", [
    "from qnoise.probe import Probe\nProbe(model)",
    "from qnoise.probe import analyze\nanalyze(model, (torch.rand(6, 4, 4), torch.randint(0, 2, (6,))))",
])
def test_analyses_keep_freed_memory_for_reuse(entry):
    code = PRELUDE + entry + "\nprint(allocator._applied)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "True"


def test_the_command_line_applies_it():
    code = ("import qnoise.allocator as allocator\nfrom qnoise.cli import main\n"
            "import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['demo'])\n"
            "print(allocator._applied)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "True"
