"""Shared test settings: deterministic torch, hypothesis profile, path to the team's shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile("qnoise", deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("qnoise")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]
NMNIST_1K = REPO.parent / "shared" / "data" / "nmnist-1k"


def require_shared_data(path: Path = NMNIST_1K) -> Path:
    """Skip when the shared data is absent, except under CI (env ``CI`` set), where absence is a failure."""
    if path.exists():
        return path
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but the shared data {path} is missing")
    pytest.skip(f"shared data not found at {path} (the team's ../shared/data); set CI to make this a failure")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
