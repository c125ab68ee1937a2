"""The console's one live progress line (Ray Tune callback): trials done, running and left, the time
left, the best value so far and the failures.

On a terminal the line is rewritten in place (at most once a second); in a log (CI, a notebook, a
redirected file) it is printed as a new line when something changed, at most every ``every`` seconds,
and once at the end.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from ray import tune


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class ProgressLine(tune.Callback):
    """``planned`` trials in all (a resumed sweep's earlier trials count as done); ``metric``/``mode``:
    the value shown as best so far (the sweep's metric, from each trial's latest report)."""

    def __init__(self, planned: int, metric: str, mode: str, every: float = 30.0) -> None:
        self.planned, self.metric, self.mode, self.every = planned, metric, mode, every
        self._stream: TextIO | None = None
        self._started = 0.0
        self._done_at_start: int | None = None
        self._shown = ("", 0.0)

    def __getstate__(self) -> dict[str, Any]:  # pickled with the experiment state: no stream
        return self.__dict__ | {"_stream": None, "_done_at_start": None, "_shown": ("", 0.0)}

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def setup(self, **info: Any) -> None:  # type: ignore[override]
        self._started = time.monotonic()

    def line(self, trials: list, now: float) -> str:
        status = [t.status for t in trials]
        done, failed, running = status.count("TERMINATED"), status.count("ERROR"), status.count("RUNNING")
        if self._done_at_start is None:
            self._done_at_start = done + failed
        left = max(0, self.planned - done - failed - running)
        parts = [f"trials {done + failed}/{self.planned} done", f"{running} running", f"{left} left"]
        finished_here = done + failed - self._done_at_start
        if finished_here and left + running:
            per_trial = (now - self._started) / finished_here
            parts.append(f"ETA {_duration(per_trial * (left + running / 2))}")
        best = self.best(trials)
        if best is not None:
            parts.append(f"best {self.metric} {best:.4f}")
        if failed:
            parts.append(f"{failed} FAILED")
        parts.append(f"elapsed {_duration(now - self._started)}")
        return " | ".join(parts)

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
