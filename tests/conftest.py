"""Shared fixtures. Tests reading ../shared/data skip without it, but fail under CI (which has it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


def shared_data(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the real data at {path}")
        pytest.skip(f"real data not present at {path}")
    return path


@pytest.fixture
def mnist_dir() -> Path:
    return shared_data("mnist-subset")


@pytest.fixture
def cifar_dir() -> Path:
    return shared_data("cifar-10-subset")
