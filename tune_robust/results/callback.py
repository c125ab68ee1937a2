"""Ray Tune callback that feeds the results writer from the driver as trials report and finish."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from ray import tune

from tune_robust.faults import crash_point
from tune_robust.results.writer import ORPHANS_FILE, ResultsWriter, trial_row

logger = logging.getLogger(__name__)

_ERROR_LINE = re.compile(r"^\s*([\w.]+(Error|Exception|Interrupt)\b.*)$")


def error_message(trace: str | None) -> str:
    """The last ``SomeError: message`` line of a Ray error trace (the cause a user needs)."""
    if not trace:
        return "unknown error (no trace recorded)"
    lines = [m.group(1) for m in map(_ERROR_LINE.match, trace.splitlines()) if m]
    return (lines[-1] if lines else trace.strip().splitlines()[-1])[:2000]


class ParquetCallback(tune.Callback):
    """Writes epoch rows on every result and a trial row when a trial ends (finished or failed).

    The callback is pickled with the experiment state (Tuner.restore brings it back), so it holds
    only paths and names; the writer is created on ``setup`` and re-reads existing files then.
    """

    def __init__(
        self, directory: Path, sweep: str, fidelity: str, strategy: dict[str, Any] | None = None
    ) -> None:
        self.directory = Path(directory)
        self.sweep = sweep
        self.fidelity = fidelity
        # Search strategy columns of every trial row (search, scheduler, search_seed).
        self.strategy = dict(strategy or {})
        self._writer: ResultsWriter | None = None
        # Trials already TERMINATED when this driver's first step began (a restored experiment's).
        self._ended_before: set[str] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_writer": None, "_ended_before": None}

    @property
    def writer(self) -> ResultsWriter:
        if self._writer is None:
            self._writer = ResultsWriter(self.directory, self.sweep)
        return self._writer

    def setup(self, **info: Any) -> None:  # type: ignore[override]
        self._writer = ResultsWriter(self.directory, self.sweep)
        self._ended_before = None

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self._ended_before is None:
            self._ended_before = {t.trial_id for t in trials if t.status == "TERMINATED"}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        # A restarted trial's first report carries its history: epochs a killed driver never wrote.
        for past in result.get("epoch_history", []):
            self.writer.add_epoch(trial.trial_id, past, only_if_missing=True)
        self.writer.add_epoch(trial.trial_id, result)

    def _row(self, trial: Any, status: str, error: str | None) -> dict[str, Any]:
        try:
            resources = dict(trial.placement_group_factory.required_resources)
        except Exception:
            resources = {}
        # The trial's state directory (best model, full state, config); see trainables/adversarial.py.
        ckpt = (trial.last_result or {}).get("state_dir")
        return trial_row(
            self.sweep,
            self.fidelity,
            trial.trial_id,
            status,
            trial.config,
            trial.last_result or {},
            error=error,
            resources=resources,
            checkpoint_path=ckpt,
            failures=int(getattr(trial, "num_failures", 0)),
            strategy=getattr(self, "strategy", {}),
        )

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        crash_point("trial_start")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        crash_point("row_write")
        self._finished(trial)

    def _finished(self, trial: Any) -> None:
        # Epoch rows whose report a killed driver never recorded come back from the trial's history.
        for past in (trial.last_result or {}).get("epoch_history", []):
            self.writer.add_epoch(trial.trial_id, past, only_if_missing=True)
        tables = (trial.last_result or {}).get("eval_tables")
        if tables:
            self.writer.add_tables(trial.trial_id, tables)
        self.writer.add_trial(self._row(trial, "TERMINATED", None))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # The rows agree with the experiment's trial list. A trial that ended in Ray's last snapshot
        # before its row was written (a driver killed in between) is not reported again on resume:
        # write its row from the snapshot's final result.
        # Only such trials: one Ctrl-C stopped in this run (running, or pending with an actor asked
        # for) is TERMINATED too, without having completed; the snapshot saved before the stop has
        # it RUNNING or PENDING, and --resume continues it.
        ended_before = self._ended_before
        if ended_before is None:  # no step ran in this driver: nothing ran, so nothing was stopped here
            ended_before = {t.trial_id for t in trials if t.status == "TERMINATED"}
        for trial in trials:
            if trial.trial_id in ended_before and trial.trial_id not in self.writer.trials:
                self._finished(trial)
        # A trial a killed driver suggested after Ray's last snapshot is missing from it; the resumed
        # run holds its config again under a new id, so the orphan's rows go.
        dropped = self.writer.keep_only({t.trial_id for t in trials})
        if dropped:
            logger.warning(
                "rows of %d trial(s) the experiment snapshot did not record (%s) were set aside in %s; "
                "their configs ran again in this run",
                len(dropped),
                ", ".join(dropped),
                ORPHANS_FILE,
            )
        self.writer.flush()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.writer.add_trial(self._row(trial, "ERROR", error_message(_error_trace(trial))))


def _error_trace(trial: Any) -> str | None:
    """Ray writes the trace to the trial's local staging dir first and copies it to storage later, so
    read the local file; fall back to storage."""
    local = trial.error_file
    if local and Path(local).exists():
        return Path(local).read_text()
    trace = trial.get_error()
    return str(trace) if trace else None
