"""A sweep's own state on disk and whether a run starts it or continues it.

- ``<sweep>/sweep.json``: the plan's fingerprint, options and command, written when the sweep first
  starts. ``--resume`` continues only a sweep whose fingerprint equals the new plan's.
- ``<results>/.<sweep>.lock``: one driver per sweep (``driver_lock``).
- ``<sweep>/tune``: Ray Tune's experiment snapshot, with a whole copy kept in ``<sweep>/snapshot``
  (``tune_robust.snapshot``, which sets aside damaged files before a resume).

What a kill leaves, and what the next run does (docs/reliability.md has the full contract):
a kill before sweep.json exists leaves nothing to resume; a kill before Ray's first experiment snapshot
lets ``--resume`` start over when no trial has finished (and refuse otherwise); a later kill resumes
from the newest whole snapshot, each trial from its own last saved epoch.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tune_robust import atomic, snapshot
from tune_robust.errors import ConfigError
from tune_robust.run.options import SWEEP_FILE, TUNE_DIR, Plan

# The format of what a sweep keeps on disk for a resume (sweep.json, Ray's pickled search state and
# scheduler, the kept snapshot). A sweep whose sweep.json records another format (or none: written by a
# development version before this one) cannot be resumed by this version.
STATE_FORMAT = 2


def read_state(sweep_dir: Path) -> dict[str, Any]:
    """``sweep.json`` of a sweep folder ({} when there is none)."""
    path = sweep_dir / SWEEP_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def write_state(p: Plan, command: str) -> None:
    p.sweep_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "format": STATE_FORMAT,
        "fingerprint": p.fingerprint(),
        "options": {**asdict(p.options), "plugins": p.plugin_records()},
        "command": command,
    }
    atomic.write_text(p.sweep_dir / SWEEP_FILE, json.dumps(record, indent=1, default=str))


def check_results_dir(p: Plan) -> bool:
    """True when resuming. Refuses to touch a sweep's finished results without --resume, and to resume
    a sweep run with other options."""
    d = p.sweep_dir
    exists = (d / SWEEP_FILE).exists() or (d / "trials.parquet").exists() or (d / TUNE_DIR).exists()
    if exists and not p.options.resume:
        raise ConfigError(
            f"{d} already holds results of sweep {p.spec.name!r}; pass --resume to continue it, or "
            f"choose another --results-dir (finished results are never overwritten)"
        )
    if not (p.options.resume and exists):
        return False
    saved = read_state(d)
    if saved and saved.get("fingerprint", {}) != p.fingerprint():
        raise ConfigError(
            f"--resume: {d} holds sweep {p.spec.name!r} run with other options "
            f"(fidelity/--set/--dataset/--max-trials/resources/search strategy/plugins); resume with "
            f"the same options as the first run: {saved.get('command', '')}"
        )
    return True


def prepare(p: Plan) -> bool:
    """Before Ray starts: whether to restore Ray's experiment (True) or start it (False). On resume the
    newest whole snapshot is put in place (notes printed); a sweep killed before its first snapshot
    starts over when no trial finished, and is refused otherwise."""
    if not check_results_dir(p):
        return False
    _check_format(p)
    for line in snapshot.prepare_resume(p.sweep_dir, TUNE_DIR):
        print(f"note: {line}", flush=True)
    if snapshot.newest(p.sweep_dir / TUNE_DIR, snapshot.EXPERIMENT) is not None:
        return True
    return _restart_unsnapshotted(p)


def _check_format(p: Plan) -> None:
    saved = read_state(p.sweep_dir)
    if saved and saved.get("format") != STATE_FORMAT:
        raise ConfigError(
            f"--resume: {p.sweep_dir} was started by a development version of tune_robust whose Ray "
            f"state this version cannot restore (state format {saved.get('format', 1)}, this version "
            f"reads {STATE_FORMAT}); its finished trials are in trials.parquet: move the folder away to "
            "run the sweep again"
        )


def _restart_unsnapshotted(p: Plan) -> bool:
    import pandas as pd

    rows = p.sweep_dir / "trials.parquet"
    if rows.exists() and len(pd.read_parquet(rows)):
        raise ConfigError(
            f"--resume: {p.sweep_dir / TUNE_DIR} holds no Ray Tune experiment state to continue, but "
            f"{rows} holds finished trials; move {p.sweep_dir} away to start over"
        )
    print(f"note: {p.sweep_dir.name} stopped before its first experiment snapshot; starting it again")
    return False


@contextlib.contextmanager
def driver_lock(p: Plan, command: str) -> Iterator[None]:
    """One driver per sweep: an exclusive ``flock`` on ``<results-dir>/.<sweep>.lock`` while it runs.
    The kernel drops the lock with the process however it ends (kill -9 included), so a crashed
    driver never leaves it held; the file only says who holds it."""
    import datetime as dt
    import fcntl
    import os
    import socket

    p.sweep_dir.parent.mkdir(exist_ok=True)
    with open(p.sweep_dir.parent / f".{p.spec.name}.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise ConfigError(
                f"sweep {p.spec.name!r} in {p.sweep_dir.parent} is being run by another driver ({holder}); "
                "wait for it to finish, or stop it and continue with --resume"
            ) from None
        f.seek(0)
        f.truncate()
        started = dt.datetime.now().isoformat(timespec="seconds")
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {started}: {command or p.spec.name}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
