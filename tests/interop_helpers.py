"""Shared by the interop tests: the peer libraries must be importable under CI (the Makefile installs them)."""

from __future__ import annotations

import importlib
import os

import pytest


def need(module: str):
    """Import ``module``; skip when it is missing, except under CI, where it must be installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is not installed; the Makefile installs it for the tests")
        pytest.skip(f"{module} is not installed", allow_module_level=True)
