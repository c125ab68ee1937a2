"""The console's one live progress line (Ray Tune callback): trials done, running and left, the time
left, the best value so far and the failures.

The time left is weighted by each trial's cost when the run layer knows it (``tune_robust.run.cost``:
MACs x passes over the data x forward-backward passes per example): a grid whose deep configurations
come last is not estimated from its shallow first trials' pace.

On a terminal the line is rewritten in place (at most once a second); in a log (CI, a notebook, a
redirected file) it is printed as a new line when something changed, at most every ``every`` seconds,
and once at the end.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from ray import tune


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def eta_seconds(elapsed: float, finished: float, running: float, left: float) -> float | None:
    """Seconds left: the wall time per unit of cost of the trials finished in ``elapsed`` seconds,
    times the cost still to run (a running trial counts half). Costs are trial counts when every trial
    costs the same. None before anything has finished."""
    if finished <= 0:
        return None
    return elapsed / finished * (left + running / 2)


# Seconds without a running trial while some are left before the line says so.
IDLE_WARNING = 60.0


def _unit_cost(_config: Mapping[str, Any]) -> float:
    return 1.0


class ProgressLine(tune.Callback):
    """``planned`` trials in all (a resumed sweep's earlier trials count as done); ``metric``/``mode``:
    the value shown as best so far (the sweep's metric, from each trial's latest report).

    ``cost``: a trial config's cost relative to the others, and ``total_cost`` the planned trials'
    together; without them every trial counts one."""

    def __init__(
        self,
        planned: int,
        metric: str,
        mode: str,
        every: float = 30.0,
        cost: Callable[[Mapping[str, Any]], float] | None = None,
        total_cost: float | None = None,
    ) -> None:
        self.planned, self.metric, self.mode, self.every = planned, metric, mode, every
        self.cost = cost or _unit_cost
        self.total_cost = float(planned) if total_cost is None or cost is None else total_cost
        self._stream: TextIO | None = None
        self._started = 0.0
        self._finished_at_start: set[str] | None = None
        self._costs: dict[str, float] = {}
        self._idle_since: float | None = None
        self._shown = ("", 0.0)

    def __getstate__(self) -> dict[str, Any]:  # pickled with the experiment state: no stream
        return self.__dict__ | {"_stream": None, "_finished_at_start": None, "_shown": ("", 0.0)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A resumed sweep's line, as pickled by this or an earlier version (which had no costs)."""
        defaults: dict[str, Any] = {"cost": _unit_cost, "_costs": {}, "_idle_since": None}
        self.__dict__.update(defaults | state | {"_stream": None, "_finished_at_start": None})
        self.__dict__.setdefault("total_cost", float(self.planned))

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def setup(self, **info: Any) -> None:  # type: ignore[override]
        self._started = time.monotonic()

    def trial_cost(self, trial: Any) -> float:
        if trial.trial_id not in self._costs:
            self._costs[trial.trial_id] = self.cost(trial.config)
        return self._costs[trial.trial_id]

    def eta(self, trials: list, now: float) -> float | None:
        """Seconds left by the cost of what finished since this driver started and what is left."""
        finished = [t for t in trials if t.status in ("TERMINATED", "ERROR")]
        if self._finished_at_start is None:
            self._finished_at_start = {t.trial_id for t in finished}
        running = sum(self.trial_cost(t) for t in trials if t.status == "RUNNING")
        spent = sum(self.trial_cost(t) for t in finished)
        here = sum(self.trial_cost(t) for t in finished if t.trial_id not in self._finished_at_start)
        left = max(0.0, self.total_cost - spent - running)
        return eta_seconds(now - self._started, here, running, left)

    def line(self, trials: list, now: float) -> str:
        status = [t.status for t in trials]
        done, failed, running = status.count("TERMINATED"), status.count("ERROR"), status.count("RUNNING")
        left = max(0, self.planned - done - failed - running)
        parts = [f"trials {done + failed}/{self.planned} done", f"{running} running", f"{left} left"]
        eta = self.eta(trials, now)
        if eta is not None and left + running:
            parts.append(f"ETA {_duration(eta)}")
        best = self.best(trials)
        if best is not None:
            parts.append(f"best {self.metric} {best:.4f}")
        if failed:
            parts.append(f"{failed} FAILED")
        waiting = self.waiting(running, left, now)
        if waiting:
            parts.append(waiting)
        parts.append(f"elapsed {_duration(now - self._started)}")
        return " | ".join(parts)

    def waiting(self, running: int, left: int, now: float) -> str:
        """What Ray Tune's own "no trial has started" warning says (hidden at the default verbosity), in
        the line: trials are left but none has run for a minute, so the cluster has nothing free."""
        if running or not left:
            self._idle_since = None
            return ""
        if self._idle_since is None:
            self._idle_since = now
        idle = now - self._idle_since
        if idle < IDLE_WARNING:
            return ""
        return f"no trial could start for {_duration(idle)}: no free CPUs/GPUs for one (see `ray status`)"

    def best(self, trials: list) -> float | None:
        values = [
            float(v)
            for t in trials
            if isinstance(v := (t.last_result or {}).get(self.metric), (int, float)) and not math.isnan(v)
        ]
        if not values:
            return None
        return max(values) if self.mode == "max" else min(values)

    def show(self, trials: list, final: bool = False) -> None:
        now = time.monotonic()
        text = self.line(trials, now)
        last_text, last_time = self._shown
        tty = self.stream.isatty()
        if tty and (final or now - last_time >= 1.0):
            self.stream.write("\r" + text.ljust(len(last_text)) + ("\n" if final else ""))
        elif not tty and (final or (text != last_text and now - last_time >= self.every)):
            self.stream.write(text + "\n")
        else:
            return
        self.stream.flush()
        self._shown = (text, now)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.show(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.show(trials, final=True)
