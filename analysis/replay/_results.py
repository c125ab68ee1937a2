"""Replay strategies on a source, repeated over seeds: one row per replay and its curves, the summary
per strategy with intervals over repeats, and the Parquet files."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tune_robust.analysis.replay._measures import CURVE, FRACTIONS, TOPS, measure
from tune_robust.analysis.replay._simulate import simulate
from tune_robust.analysis.replay._source import Source
from tune_robust.analysis.stats import mean_interval
from tune_robust.errors import ConfigError
from tune_robust.run import Strategy
from tune_robust.run.strategy import SCHEDULERS, asha_settings, objective_list, search_method

RUNS_FILE = "replay.parquet"
CURVES_FILE = "replay_curves.parquet"


@dataclass(frozen=True)
class Replayed:
    runs: pd.DataFrame  # one row per strategy, concurrency and repeat
    curves: pd.DataFrame  # per replay: best-so-far, regret (and hypervolume) at each compute fraction


def strategies(search: Sequence[str], schedulers: Sequence[str] = ("fifo",)) -> list[tuple[str, str]]:
    """(search, scheduler) pairs: every search method under every scheduler; ``random+asha`` in
    ``search`` names its scheduler itself."""
    pairs: list[tuple[str, str]] = []
    for item in search:
        name, _, own = item.partition("+")
        pairs += [(name, own)] if own else [(name, s) for s in schedulers]
    for _, scheduler in pairs:
        if scheduler not in SCHEDULERS:
            raise ConfigError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")
    if len(set(pairs)) != len(pairs):
        raise ConfigError(f"a strategy is named twice: {', '.join(label(*p) for p in pairs)}")
    return pairs


def label(search: str, scheduler: str) -> str:
    return search if scheduler == "fifo" else f"{search}+{scheduler}"


def resolve(
    source: Source,
    search: str,
    scheduler: str,
    num_samples: int | None = None,
    objectives: Sequence[str] = (),
    grace_period: int = 1,
    reduction_factor: float = 3.0,
    seed: int = 0,
) -> Strategy:
    """The strategy a live sweep of ``source``'s grid would run with these options (the same checks)."""
    method = search_method(search)
    o = source.objective
    chosen: tuple[str, ...] = ()
    if method.objectives:
        given = objectives or method.default_objectives(source.metric, source.mode)
        absent = [g.split(":")[0] for g in given if g.split(":")[0] not in source.objectives]
        if absent:
            raise ConfigError(
                f"--search {search} optimises {', '.join(absent)}, which the table's trials do not report; "
                f"they report {', '.join(source.objectives)} (choose with --objective)"
            )
        chosen = objective_list(given, source.objectives)
    elif objectives:
        raise ConfigError(f"--objective applies to model-based searches (e.g. tpe, nsga2), not {search}")
    asha = None
    if scheduler == "asha":
        if int(o.epochs.max()) < 2:
            raise ConfigError(
                "--scheduler asha needs per-epoch results; the table holds one epoch per config"
            )
        asha = asha_settings(source.max_t, grace_period, reduction_factor)
    return Strategy(
        search=search,
        scheduler=scheduler,
        search_seed=seed,
        num_samples=method.num_samples(o.size, num_samples if method.samples else None),
        objectives=chosen,
        asha=asha,
    )


def replay(
    source: Source,
    pairs: Sequence[tuple[str, str]],
    concurrency: Sequence[int] = (2,),
    repeats: int = 50,
    seed: int = 0,
    num_samples: int | None = None,
    objectives: Sequence[str] = (),
    grace_period: int = 1,
    reduction_factor: float = 3.0,
) -> Replayed:
    """Replay each (search, scheduler) pair at each ``concurrency`` (trials at a time), ``repeats``
    times (search seeds ``seed``, ``seed + 1``, ...); the other options as :func:`resolve` takes them."""
    if repeats < 1 or any(w < 1 for w in concurrency):
        raise ConfigError(f"--repeats and --concurrency must be >= 1, got {repeats} and {list(concurrency)}")
    import optuna

    chosen = [
        resolve(source, search, scheduler, num_samples, objectives, grace_period, reduction_factor)
        for search, scheduler in pairs
    ]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not one "study created" line per replay
    try:
        return _replay_all(source, chosen, concurrency, repeats, seed)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _replay_all(
    source: Source, chosen: Sequence[Strategy], concurrency: Sequence[int], repeats: int, seed: int
) -> Replayed:
    runs, curves = [], []
    for strategy in chosen:
        for w in concurrency:
            for r in range(repeats):
                s = dataclasses.replace(strategy, search_seed=seed + r)
                row, curve = measure(simulate(source, s, w), source.objective)
                key = {"strategy": label(s.search, s.scheduler), "concurrency": w, "repeat": r}
                named = {"search": s.search, "scheduler": s.scheduler, "search_seed": seed + r}
                runs.append({**key, **named, "rank_by": source.objective.rank_by, **row})
                curves.append(pd.DataFrame({**key, "compute_share": CURVE, **curve}))
    return Replayed(pd.DataFrame(runs), pd.concat(curves, ignore_index=True))


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and concurrency, over repeats: the mean with a 95% bootstrap interval of each measure
    (columns ``<measure>``, ``<measure>_low``, ``<measure>_high``) and how often the top configs were
    found."""
    rows = []
    for (strategy, concurrency), g in runs.groupby(["strategy", "concurrency"], sort=False):
        row: dict[str, object] = {"strategy": strategy, "concurrency": concurrency, "repeats": len(g)}
        row["trials"] = float(g["trials"].mean())
        measures = ["compute_share", *[f"top{k}_share" for k in TOPS], "top5_trial_hours"]
        measures += ["top5_wall_hours", *[f"regret_{round(f * 100)}" for f in FRACTIONS]]
        measures += [
            f"hypervolume_{round(f * 100)}" for f in FRACTIONS if f"hypervolume_{round(f * 100)}" in g
        ]
        for k in TOPS:
            row[f"top{k}_found"] = int(g[f"top{k}_share"].notna().sum())
        for m in measures:
            stat = mean_interval(g[m].to_numpy(float))
            row[m], row[f"{m}_low"], row[f"{m}_high"] = stat["value"], stat["low"], stat["high"]
            row[f"{m}_n"] = stat["n"]  # repeats with a value (regret: those where a trial had completed)
        rows.append(row)
    return pd.DataFrame(rows)


def format_summary(table: pd.DataFrame) -> str:
    """The console table (:func:`display_table`) as text."""
    return display_table(table).to_string(index=False)


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`summary` as printed: shares of the grid's compute in %, regret in the ranking metric's
    units, each mean [95% interval]; "(k/n)": the mean is over the k repeats where a trial had completed
    by then."""

    def cell(row: pd.Series, m: str, scale: float = 1.0, digits: int = 1, count: bool = False) -> str:
        v, lo, hi = (row[m] * scale, row[f"{m}_low"] * scale, row[f"{m}_high"] * scale)
        if np.isnan(v):
            return "-"
        text = f"{v:.{digits}f}" if np.isnan(lo) else f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
        n = int(row.get(f"{m}_n", row["repeats"]))
        return f"{text} ({n}/{row['repeats']})" if count and n < row["repeats"] else text

    out = []
    for _, r in table.iterrows():
        line = {
            "strategy": r["strategy"],
            "concurrency": r["concurrency"],
            "trials": f"{r['trials']:.0f}",
            "compute %": cell(r, "compute_share", 100),
            "top-1 found": f"{r['top1_found']}/{r['repeats']}",
            "to top-1 %": cell(r, "top1_share", 100),
            "top-5 found": f"{r['top5_found']}/{r['repeats']}",
            "to top-5 %": cell(r, "top5_share", 100),
        }
        line.update(
            {f"regret@{round(f * 100)}%": cell(r, f"regret_{round(f * 100)}", 1, 4, True) for f in FRACTIONS}
        )
        if "hypervolume_50" in r and not np.isnan(r["hypervolume_50"]):
            line["hypervolume@50%"] = cell(r, "hypervolume_50", 1, 3)
        out.append(line)
    return pd.DataFrame(out)


def write_replay(result: Replayed, out_dir: str | Path) -> dict[str, Path]:
    """``replay.parquet`` and ``replay_curves.parquet`` in ``out_dir`` (replacing an earlier replay's)."""
    from tune_robust.results.writer import write_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"runs": out / RUNS_FILE, "curves": out / CURVES_FILE}
    write_table(result.runs, files["runs"])
    write_table(result.curves, files["curves"])
    return files
