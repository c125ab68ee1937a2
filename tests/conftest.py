"""Shared fixtures. Tests reading ../shared/data skip without it, but fail under CI (which has it)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


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


def read_parquet(path: Path) -> pd.DataFrame:
    """A results file as it is now (empty while missing or being replaced)."""
    try:
        return pd.read_parquet(path)
    except (FileNotFoundError, OSError, ValueError):
        return pd.DataFrame()


def kill_sweep_when(
    cmd: list[str], ready: Callable[[], bool], timeout: float, what: str, env: dict[str, str] | None = None
) -> None:
    """Start a sweep driver (with ``env`` added to the environment), SIGKILL it once ``ready()`` holds,
    then end whatever it had started (Ray's local processes) as a crash would."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a full pipe would stall the driver
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
        try:
            deadline = time.time() + timeout
            while not ready():
                if proc.poll() is not None:
                    err.seek(0)
                    tail = err.read().decode(errors="replace")[-2000:]
                    raise AssertionError(f"the sweep ended (exit {proc.returncode}) before {what}: {tail}")
                if time.time() > deadline:
                    raise AssertionError(f"the sweep never reached {what}")
                time.sleep(0.2)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def crash_sweep(cmd: list[str], point: str, timeout: float = 300) -> None:
    """Run a sweep driver that kills itself at crash point ``point`` (tune_robust.faults), then end
    whatever it had started (Ray's local processes) as a crash would. Experiment snapshots are taken
    at every step of Ray's loop, so the N-th arrival at a point is the same moment of the sweep on
    every run."""
    env = {**os.environ, "TUNE_ROBUST_CRASH": point, "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        _, err = proc.communicate(timeout=timeout)
        assert proc.returncode == -signal.SIGKILL, (
            f"the driver was not killed at {point} (exit {proc.returncode}): {err.decode()[-2000:]}"
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
