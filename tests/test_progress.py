"""The console's progress line: counts, time left, best so far and failures, and how often it prints."""

from __future__ import annotations

import io
import itertools
from types import SimpleNamespace

from tune_robust.results.progress import ProgressLine, eta_seconds

_IDS = itertools.count()


def trial(status, value=None, trial_id=None, cost=1.0):
    return SimpleNamespace(
        status=status,
        last_result={} if value is None else {"val_robust_acc": value},
        trial_id=trial_id or f"t{next(_IDS)}",
        config={"cost": cost},
    )


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_the_line_counts_trials_estimates_the_time_left_and_shows_the_best_and_failures():
    bar = ProgressLine(planned=10, metric="val_robust_acc", mode="max")
    bar._started = 0.0
    start = [trial("TERMINATED", 0.5, "a"), trial("RUNNING", 0.2, "b"), trial("PENDING", None, "c")]
    assert bar.line(start, now=5.0) == (
        "trials 1/10 done | 1 running | 8 left | best val_robust_acc 0.5000 | elapsed 0m05s"
    )
    # ("a" finished before this driver started: a resumed sweep's trial does not set the pace)
    later = [
        trial("TERMINATED", 0.5, "a"),
        trial("TERMINATED", 0.7, "b"),
        trial("ERROR"),
        trial("RUNNING", 0.9),
    ]
    # 2 trials finished in this driver in 100 s: 50 s each, for 6 left and half of the running one
    assert bar.line(later, now=100.0) == (
        "trials 3/10 done | 1 running | 6 left | ETA 5m25s | best val_robust_acc 0.9000 | 1 FAILED | "
        "elapsed 1m40s"
    )
    low = ProgressLine(planned=2, metric="val_robust_acc", mode="min")
    assert low.best(later) == 0.5


def test_the_eta_weights_trials_by_their_cost():
    assert eta_seconds(100.0, finished=2.0, running=1.0, left=6.0) == 325.0
    assert eta_seconds(100.0, finished=0.0, running=1.0, left=6.0) is None
    # Two cheap trials (cost 1) took 100 s: 50 s per unit of cost, for the running trial's 4 (counted
    # half) and the pending one's 16, where counting trials says 50 s x (1/2 + 1).
    bar = ProgressLine(4, "val_robust_acc", "max", cost=lambda config: config["cost"], total_cost=22.0)
    bar._started = 0.0
    first = [trial("PENDING", trial_id=i) for i in "abcd"]
    bar.line(first, now=0.0)
    trials = [
        trial("TERMINATED", 0.5, "a", 1.0),
        trial("TERMINATED", 0.6, "b", 1.0),
        trial("RUNNING", None, "c", 4.0),
        trial("PENDING", None, "d", 16.0),
    ]
    assert bar.eta(trials, now=100.0) == 50.0 * (4 / 2 + 16)
    unweighted = ProgressLine(4, "val_robust_acc", "max")
    unweighted._started = 0.0
    unweighted.line(first, now=0.0)
    assert unweighted.eta(trials, now=100.0) == 50.0 * (1 / 2 + 1)


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


def test_the_line_says_when_no_trial_could_start_for_a_minute():
    bar = ProgressLine(planned=3, metric="val_robust_acc", mode="max")
    bar._started = 0.0
    waiting = [trial("TERMINATED", 0.5, "a"), trial("PENDING", None, "b"), trial("PENDING", None, "c")]
    assert "no trial could start" not in bar.line(waiting, now=10.0)
    assert bar.line(waiting, now=75.0).endswith(
        "| no trial could start for 1m05s: no free CPUs/GPUs for one (see `ray status`) | elapsed 1m15s"
    )
    running = [trial("TERMINATED", 0.5, "a"), trial("RUNNING", None, "b"), trial("PENDING", None, "c")]
    assert "no trial could start" not in bar.line(running, now=80.0)
    assert "no trial could start" not in bar.line(waiting, now=100.0)  # the clock starts again


def test_a_line_pickled_before_the_costs_existed_still_works_on_resume():
    import pickle

    bar = ProgressLine(planned=3, metric="val_robust_acc", mode="max")
    state = pickle.loads(pickle.dumps(bar)).__dict__  # what an experiment state holds
    for newer in ("cost", "total_cost", "_costs", "_idle_since"):  # absent from an older version's
        state.pop(newer)
    old = ProgressLine.__new__(ProgressLine)
    old.__setstate__(state)
    old._started = 0.0
    trials = [trial("TERMINATED", 0.5, "a"), trial("RUNNING", None, "b"), trial("PENDING", None, "c")]
    old.line(trials, now=1.0)  # (the finished trial was done before this driver: no pace yet)
    trials[1] = trial("TERMINATED", 0.6, "b")
    assert " | ETA 0m11s | " in old.line(trials, now=11.0)  # 11 s for the one finished here, one left


def test_planning_counts_each_model_macs_only_where_the_line_uses_them(tmp_path):
    from tune_robust.models import profile_model
    from tune_robust.run import RunOptions, plan
    from tune_robust.run.cost import TrialCost

    p = plan("wrn_depth_grid", RunOptions(max_trials=3, results_dir=str(tmp_path)))
    depths = [c["model"]["depths"] for c in p.configs]
    expected = [profile_model("wrn", (1, 8, 8), 10, depths=d, widths=(0.5, 0.5, 0.5))[1] for d in depths]
    assert sorted(p.macs.values()) == sorted(expected)  # the digits grid: 8x8 images, widths x0.5
    cost = TrialCost(p.macs)
    epochs, steps = p.configs[0]["train"]["epochs"], p.configs[0]["attack"]["steps"]
    assert [cost(c) for c in p.configs] == [m * epochs * (1 + steps) for m in expected]
    dry = plan("wrn_depth_grid", RunOptions(max_trials=3, results_dir=str(tmp_path), dry_run=True))
    assert set(dry.macs.values()) == {None} and TrialCost(dry.macs)(dry.configs[0]) == epochs * (1 + steps)
