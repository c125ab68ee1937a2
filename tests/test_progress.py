"""The console's progress line: counts, time left, best so far and failures, and how often it prints."""

from __future__ import annotations

import io
from types import SimpleNamespace

from tune_robust.results.progress import ProgressLine


def trial(status, value=None):
    return SimpleNamespace(status=status, last_result={} if value is None else {"val_robust_acc": value})


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_the_line_counts_trials_estimates_the_time_left_and_shows_the_best_and_failures():
    bar = ProgressLine(planned=10, metric="val_robust_acc", mode="max")
    bar._started = 0.0
    start = [trial("TERMINATED", 0.5), trial("RUNNING", 0.2), trial("PENDING")]
    assert bar.line(start, now=5.0) == (
        "trials 1/10 done | 1 running | 8 left | best val_robust_acc 0.5000 | elapsed 0m05s"
    )
    later = [trial("TERMINATED", 0.5), trial("TERMINATED", 0.7), trial("ERROR"), trial("RUNNING", 0.9)]
    # 2 trials finished in this driver in 100 s: 50 s each, for 6 left and half of the running one
    assert bar.line(later, now=100.0) == (
        "trials 3/10 done | 1 running | 6 left | ETA 5m25s | best val_robust_acc 0.9000 | 1 FAILED | "
        "elapsed 1m40s"
    )
    low = ProgressLine(planned=2, metric="val_robust_acc", mode="min")
    assert low.best(later) == 0.5


def test_a_log_gets_a_line_when_something_changed_at_most_every_interval_a_terminal_one_line():
    log = io.StringIO()
    bar = ProgressLine(planned=2, metric="val_robust_acc", mode="max", every=30.0)
    bar._stream, bar._started = log, -1000.0
    trials = [trial("RUNNING"), trial("PENDING")]
    bar.show(trials)
    bar.show(trials)  # unchanged: nothing new
    trials[0] = trial("TERMINATED", 0.4)
    bar.show(trials)  # changed, but within 30 s of the last line
    bar.show([trial("TERMINATED", 0.4), trial("TERMINATED", 0.6)], final=True)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("trials 2/2 done | 0 running | 0 left")
    tty = Tty()
    bar = ProgressLine(planned=2, metric="val_robust_acc", mode="max")
    bar._stream, bar._started = tty, 0.0
    bar.show(trials, final=True)
    assert tty.getvalue().startswith("\rtrials 1/2 done") and tty.getvalue().count("\n") == 1
