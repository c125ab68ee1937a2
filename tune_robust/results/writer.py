"""Parquet writer for sweep results (schema documented in the package docstring)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from tune_robust import atomic
from tune_robust.config import TARGET_PREFIX, TrialConfig, flatten
from tune_robust.errors import ConfigError
from tune_robust.results.schema import (
    ARCH_STEP_PREFIX,
    EPOCH_COLUMNS,
    EVAL_KEYS,
    EVAL_PREFIXES,
    SCHEMA_VERSION,
    TRIAL_METRICS,
)

logger = logging.getLogger(__name__)

TRIALS_FILE = "trials.parquet"
ORPHANS_FILE = "orphaned_trials.parquet"
EPOCHS_FILE = "epochs.parquet"
# Extra tables a trial may report (``eval_tables`` in its final result), one file each, keyed by trial.
TABLES = ("lipschitz", "acc_vs_eps", "acc_vs_steps", "transfer")


def _cell(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return "-".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
    if isinstance(v, Mapping):
        return str(dict(v))
    return v


def config_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    """Flattened, resolved trial config (falls back to the raw config if it no longer validates)."""
    try:
        resolved = TrialConfig.from_dict(config).to_dict()
    except (ConfigError, TypeError):
        resolved = dict(config)
    flat = flatten(resolved)
    # A transfer trial names every target checkpoint; those live in transfer.parquet, not as columns.
    targets = [k for k in flat if k.startswith(f"upstream.{TARGET_PREFIX}")]
    for k in targets:
        del flat[k]
    if targets:
        flat["upstream.targets"] = len(targets)
    return {k: _cell(v) for k, v in flat.items()}


def trial_row(
    sweep: str,
    fidelity: str,
    trial_id: str,
    status: str,
    config: Mapping[str, Any],
    last: Mapping[str, Any],
    *,
    error: str | None = None,
    resources: Mapping[str, float] | None = None,
    checkpoint_path: str | None = None,
    failures: int = 0,
    strategy: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "sweep": sweep,
        "fidelity": fidelity,
        "trial_id": trial_id,
        "status": status,
        "error": error,
    }
    row.update(config_columns(config))
    for k in TRIAL_METRICS:
        row[k] = last.get(k)
    for k, v in last.items():
        if k.startswith(EVAL_PREFIXES) or k in EVAL_KEYS:
            row[k] = v
    row["epochs_run"] = last.get("epoch")
    # False only for a trial stopped before its final epoch by the scheduler (ASHA): it has validation
    # numbers (best_val_robust_acc) but no test suite.
    row["stopped_by_scheduler"] = status == "TERMINATED" and last.get("completed") is False
    passes = [
        last.get(k) for k in ("total_train_attack_passes", "total_val_attack_passes", "attack_grad_passes")
    ]
    known = [int(p) for p in passes if p is not None]
    row["attack_passes_total"] = sum(known) if known else None
    row["wall_seconds"] = last.get("trial_seconds")
    res = resources or {}
    row["cpus"] = float(res.get("CPU", res.get("cpu", 0.0)))
    row["gpus"] = float(res.get("GPU", res.get("gpu", 0.0)))
    row["failures"] = failures
    for k, v in (strategy or {}).items():
        row[k] = v
    row["checkpoint_path"] = checkpoint_path
    row["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return row


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def write_table(df: pd.DataFrame, path: Path) -> None:
    """A failed write (a full disk) leaves the previous file whole and readable, and no partial file."""
    atomic.write_with(path, lambda tmp: df.to_parquet(tmp, index=False))


class ResultsWriter:
    """Holds a sweep's rows in memory (seeded from existing files on resume) and rewrites the files."""

    def __init__(self, directory: Path, sweep: str, epoch_flush_seconds: float = 2.0) -> None:
        self.directory = directory
        self.sweep = sweep
        # Epoch rows arrive several times a second in a big sweep; rewriting the file for each one
        # takes driver CPU from the trials. They are written at most this often, and always when a
        # trial ends and when the sweep ends (a killed driver's lost rows return via trial histories).
        self.epoch_flush_seconds = epoch_flush_seconds
        self._epochs_dirty = False
        self._trials_dirty = False
        self._tables_dirty: set[str] = set()
        self._last_epoch_write = 0.0
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        trials = read_table(directory / TRIALS_FILE)
        epochs = read_table(directory / EPOCHS_FILE)
        self.trials: dict[str, dict[str, Any]] = {str(r["trial_id"]): r for r in trials.to_dict("records")}
        self.epochs: dict[tuple[str, int], dict[str, Any]] = {
            (str(r["trial_id"]), int(r["epoch"])): r for r in epochs.to_dict("records")
        }
        self.tables: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for name in TABLES:
            rows = read_table(directory / f"{name}.parquet").to_dict("records")
            by_trial: dict[str, list[dict[str, Any]]] = {}
            for r in rows:
                by_trial.setdefault(str(r["trial_id"]), []).append(r)
            self.tables[name] = by_trial

    @property
    def trials_path(self) -> Path:
        return self.directory / TRIALS_FILE

    @property
    def epochs_path(self) -> Path:
        return self.directory / EPOCHS_FILE

    def add_epoch(self, trial_id: str, result: Mapping[str, Any], only_if_missing: bool = False) -> None:
        if "epoch" not in result or "train_loss" not in result:
            return  # e.g. the final-only report of a trial restored after its last epoch
        epoch = int(result["epoch"])
        if only_if_missing and (trial_id, epoch) in self.epochs:
            return
        row: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "sweep": self.sweep, "trial_id": trial_id}
        row["epoch"] = epoch
        row.update({k: result.get(k) for k in EPOCH_COLUMNS})
        # a differentiable search's architecture-step numbers (tune_robust.training.arch_step)
        row.update({k: v for k, v in result.items() if k.startswith(ARCH_STEP_PREFIX)})
        with self._lock:
            self.epochs[(trial_id, epoch)] = row
            self._epochs_dirty = True
            if time.monotonic() - self._last_epoch_write >= self.epoch_flush_seconds:
                self._write_epochs()

    def flush(self) -> None:
        with self._lock:
            if self._trials_dirty:
                self._write_trials()
            if self._tables_dirty:
                self._write_tables()
            if self._epochs_dirty:
                self._write_epochs()

    def keep_only(self, trial_ids: set[str]) -> list[str]:
        """Drop every row of trials not in ``trial_ids`` (the experiment's final trial list); their
        trial rows move to ``orphaned_trials.parquet``. Returns the dropped trial ids.

        A trial missing from the experiment is one a killed driver suggested (and maybe finished)
        after Ray's last snapshot: the resumed run holds its config again under a new trial id, so its
        own rows would be a second copy of that config."""
        with self._lock:
            orphans = sorted(
                {k[0] for k in self.epochs}
                | set(self.trials)
                | {t for rows in self.tables.values() for t in rows}
            )
            orphans = [t for t in orphans if t not in trial_ids]
            if not orphans:
                return []
            dropped = [self.trials[t] for t in orphans if t in self.trials]
            if dropped:
                kept = read_table(self.directory / ORPHANS_FILE).to_dict("records")
                if not _kept_going(pd.DataFrame(kept + dropped), self.directory / ORPHANS_FILE):
                    return []  # nothing is dropped before it is kept; the next resume tries again
            for t in orphans:
                self.trials.pop(t, None)
            self._write_trials()
            for key in [k for k in self.epochs if k[0] in orphans]:
                del self.epochs[key]
            self._write_epochs()
            for name, by_trial in self.tables.items():
                if any(t in by_trial for t in orphans):
                    for t in orphans:
                        by_trial.pop(t, None)
                    self._tables_dirty.add(name)
            self._write_tables()
            return orphans

    def add_tables(self, trial_id: str, tables: Mapping[str, list[Mapping[str, Any]]]) -> None:
        """Replace this trial's rows in each named table file (``<name>.parquet``)."""
        with self._lock:
            for name, rows in tables.items():
                if name not in TABLES:
                    raise ValueError(f"unknown results table {name!r}; known: {', '.join(TABLES)}")
                self.tables[name][trial_id] = [
                    {"schema_version": SCHEMA_VERSION, "sweep": self.sweep, "trial_id": trial_id, **r}
                    for r in rows
                ]
                self._tables_dirty.add(name)
            self._write_tables()

    def _write_tables(self) -> None:
        for name in sorted(self._tables_dirty):
            df = pd.DataFrame([r for rs in self.tables[name].values() for r in rs])
            if _kept_going(df, self.directory / f"{name}.parquet"):
                self._tables_dirty.discard(name)

    def add_trial(self, row: dict[str, Any]) -> None:
        with self._lock:
            self.trials[str(row["trial_id"])] = row
            self._write_trials()
            if self._epochs_dirty:
                self._write_epochs()

    def _write_trials(self) -> None:
        df = pd.DataFrame(list(self.trials.values()))
        self._trials_dirty = not _kept_going(df, self.trials_path)

    def _write_epochs(self) -> None:
        df = pd.DataFrame(list(self.epochs.values()))
        if len(df):
            df = df.sort_values(["trial_id", "epoch"])
        self._epochs_dirty = not _kept_going(df, self.epochs_path)
        self._last_epoch_write = time.monotonic()


def _kept_going(df: pd.DataFrame, path: Path) -> bool:
    """Write ``df`` to ``path``; on an OS error (a full disk, a lost mount) warn and return False: the
    sweep goes on, the previous file stays whole, the rows stay in memory and the next write retries."""
    try:
        write_table(df, path)
    except OSError as e:
        logger.warning(
            "could not write %s (%s); the previous file is intact, the %d rows stay in memory and the "
            "next write tries again (after a crash, --resume rebuilds them from Ray's experiment state)",
            path,
            e.strerror or e,
            len(df),
        )
        return False
    return True
