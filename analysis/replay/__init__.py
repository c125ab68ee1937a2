"""Replay: search strategies compared on a finished sweep (or a table a user brings) in seconds, without
training. The table's per-epoch metrics and seconds are the objective; the strategies are the very
searchers and schedulers a live sweep runs (registered search methods, plugins included, and ASHA),
driven through Ray Tune's public interfaces by a simulated clock with N workers (docs/replay.md).

Example:
    >>> from tune_robust.analysis.replay import replay, strategies, summary, sweep_source
    >>> source = sweep_source("results/wrn_depth_grid")  # doctest: +SKIP
    >>> result = replay(source, strategies(["grid", "random", "tpe", "random+asha"]))  # doctest: +SKIP
    >>> summary(result.runs)  # doctest: +SKIP
"""

from tune_robust.analysis.replay._measures import hypervolume, is_top, measure
from tune_robust.analysis.replay._results import (
    CURVES_FILE,
    RUNS_FILE,
    Replayed,
    display_table,
    format_summary,
    replay,
    resolve,
    strategies,
    summary,
    write_replay,
)
from tune_robust.analysis.replay._simulate import Log, simulate
from tune_robust.analysis.replay._source import Objective, Source, objective_from_frame, table_source
from tune_robust.analysis.replay._sweep import OUT_DIR, run_log, sweep_frame, sweep_source

__all__ = [
    "CURVES_FILE",
    "OUT_DIR",
    "RUNS_FILE",
    "Log",
    "Objective",
    "Replayed",
    "Source",
    "display_table",
    "format_summary",
    "hypervolume",
    "is_top",
    "measure",
    "objective_from_frame",
    "replay",
    "resolve",
    "run_log",
    "simulate",
    "strategies",
    "summary",
    "sweep_frame",
    "sweep_source",
    "table_source",
    "write_replay",
]
