"""A finished grid sweep as a replay source: its grid rebuilt from sweep.json (the configs and search
space a live run of any strategy would search), its trials.parquet + epochs.parquet as the objective."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tune_robust.analysis.load import finished_trials, numeric_column
from tune_robust.analysis.replay._simulate import Log
from tune_robust.analysis.replay._source import (
    EPOCH,
    FINAL_PASSES,
    FINAL_SECONDS,
    PASSES,
    SECONDS,
    Source,
    objective_from_frame,
    reorder,
)
from tune_robust.config import TrialConfig
from tune_robust.errors import ConfigError
from tune_robust.results.schema import OBJECTIVE_METRICS
from tune_robust.results.writer import config_columns

OUT_DIR = "replay"  # <sweep>/replay/: the replay's tables


def sweep_source(sweep_dir: str | Path, sets: Sequence[str] = ()) -> Source:
    """The finished sweep in ``sweep_dir`` as a replay source; ``sets`` (--set KEY=VALUE) narrow or
    change its grid. Every config of the grid must have a finished trial with all its epochs."""
    from tune_robust.run import RunOptions, grid_configs
    from tune_robust.run.resume import read_state
    from tune_robust.sweeps import get_sweep

    d = Path(sweep_dir)
    for name in ("trials.parquet", "epochs.parquet"):
        if not (d / name).is_file():
            raise ConfigError(
                f"{d} has no {name}: replay reads a sweep folder <results-dir>/<sweep> or a table"
            )
    state = read_state(d)
    if not state.get("fingerprint"):
        raise ConfigError(f"{d} has no sweep.json: replay rebuilds the grid from it (a table needs --config)")
    recorded = state.get("options", {})
    spec = get_sweep(state["fingerprint"]["sweep"])
    if spec.inputs != "grid":
        raise ConfigError(f"sweep {spec.name!r} runs one trial per checkpoint; replay applies to grid sweeps")
    options = RunOptions(
        fidelity=recorded.get("fidelity", "smoke"),
        dataset=recorded.get("dataset"),
        sets=(*recorded.get("sets", ()), *sets),
        seeds=tuple(recorded.get("seeds", ())),
    )
    configs = grid_configs(spec, options)
    if len(configs) < 2:
        raise ConfigError(
            f"sweep {spec.name!r} has {len(configs)} config under these options; nothing to search"
        )
    flat = [config_columns(c) for c in configs]
    trials = pd.read_parquet(d / "trials.parquet")
    _check_complete(trials)
    keys = _keys(flat, finished_trials(trials), [item.split("=", 1)[0].strip() for item in sets])
    frame = sweep_frame(trials, pd.read_parquet(d / "epochs.parquet"), keys)
    held, objective = objective_from_frame(frame, keys, spec.metric, spec.mode, spec.rank_by)
    where = {c: i for i, c in enumerate(held)}
    wanted = [tuple(cell(f.get(k)) for k in keys) for f in flat]
    if len(set(wanted)) < len(wanted):
        raise ConfigError(f"sweep {spec.name!r} holds a config twice under these options; nothing to replay")
    missing = [c for c in wanted if c not in where]
    if missing:
        example = ", ".join(f"{k}={v}" for k, v in zip(keys, missing[0], strict=True))
        raise ConfigError(
            f"{len(missing)} of the {len(configs)} configs of {spec.name} ({options.fidelity}"
            f"{', --set ' + ' '.join(options.sets) if options.sets else ''}) have no finished trial in "
            f"{d} (e.g. {example}); a replay runs only configs the table holds: finish the sweep "
            "(--resume) or narrow the grid with --set"
        )
    return Source(
        name=spec.name,
        keys=tuple(keys),
        metric=spec.metric,
        mode=spec.mode,
        configs=tuple(configs),
        space=spec.space_for(options.fidelity),
        pinned={item.split("=", 1)[0].strip(): True for item in options.sets},
        objective=reorder(objective, [where[c] for c in wanted]),
        out_dir=d / OUT_DIR,
        objectives=tuple(m for m in OBJECTIVE_METRICS if m in objective.metrics),
        max_t=max(TrialConfig.from_dict(c).train.epochs for c in configs),
        fidelity=options.fidelity,
    )


def cell(value: Any) -> str:
    """A config value as a key that reads the same from a rebuilt config and from trials.parquet (an
    empty cell, None and NaN alike; a whole float as an int, as a gap turns an int column float)."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value.item() if isinstance(value, np.generic) else value)


def _keys(flat: Sequence[dict[str, Any]], done: pd.DataFrame, given: Sequence[str]) -> list[str]:
    """The config columns that tell configs apart: those varying across the grid or the table's trials,
    and those a replay's --set names (so a value the table never ran is not matched to another)."""
    keys = []
    for k in dict.fromkeys(k for f in flat for k in f):
        varies = len({cell(f.get(k)) for f in flat}) > 1 or (k in done and done[k].map(cell).nunique() > 1)
        if varies or k in given:
            if k not in done:
                raise ConfigError(f"the sweep's trials.parquet has no column {k}; it cannot be replayed")
            keys.append(k)
    return keys


def _check_complete(trials: pd.DataFrame) -> None:
    if "stopped_by_scheduler" in trials and trials["stopped_by_scheduler"].fillna(False).astype(bool).any():
        n = int(trials["stopped_by_scheduler"].fillna(False).astype(bool).sum())
        raise ConfigError(
            f"{n} trials of this sweep were stopped early by its scheduler, so their later epochs were "
            "never run; a replay needs every epoch of every config: replay a sweep run with --scheduler fifo"
        )


def sweep_frame(trials: pd.DataFrame, epochs: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The finished trials' epochs in the replay table format: config columns, ``epoch``, the metrics
    every epoch reports, ``seconds`` and ``attack_passes`` per epoch, and per trial params, macs, the
    ranking column and its ``final_seconds`` / ``final_attack_passes``: the test suite and the trial's
    other wall seconds (state saves, the final test evaluation, set-up). Those come mostly at the end of
    a trial that completes (a trial ASHA stops after one epoch spends about a tenth of them), so they are
    charged when it completes."""
    done = finished_trials(trials)
    per_trial = [c for c in ("params", "macs", "best_robust_acc") if c in done]
    rows = _epoch_costs(epochs[epochs["trial_id"].isin(done["trial_id"])])
    t = done.set_index("trial_id")
    t = t.assign(**{k: t[k].map(cell) for k in keys})
    metrics = [c for c in OBJECTIVE_METRICS if c in rows and c not in per_trial]
    columns = ["trial_id", EPOCH, *metrics, SECONDS, PASSES]
    costs = _trial_costs(t, rows)
    extra = pd.DataFrame(
        {FINAL_SECONDS: costs[FINAL_SECONDS] + costs[OTHER], FINAL_PASSES: costs[FINAL_PASSES]}
    )
    out = rows[columns].merge(t[[*keys, *per_trial]].join(extra), left_on="trial_id", right_index=True)
    return out.drop(columns="trial_id").sort_values([*keys, EPOCH], kind="stable").reset_index(drop=True)


def _epoch_costs(epochs: pd.DataFrame) -> pd.DataFrame:
    rows = epochs.copy()
    rows[SECONDS] = numeric_column(rows, "train_seconds") + numeric_column(rows, "eval_seconds")
    rows[PASSES] = numeric_column(rows, "train_attack_passes") + numeric_column(rows, "val_attack_passes")
    return rows


OTHER = "other_seconds"


def _trial_costs(t: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Per trial (``t`` indexed by trial_id): its test suite's seconds and attack passes, and its other
    wall seconds (outside its epochs and suite)."""
    spent = rows.groupby("trial_id")[SECONDS].sum().reindex(t.index).fillna(0.0)
    costs = pd.DataFrame(index=t.index)
    costs[FINAL_SECONDS] = numeric_column(t, "eval_suite_seconds")
    costs[FINAL_PASSES] = numeric_column(t, "attack_grad_passes")
    wall = numeric_column(t, "wall_seconds")
    costs[OTHER] = np.where(wall > 0, np.clip(wall - spent - costs[FINAL_SECONDS], 0, None), 0.0)
    return costs


def run_log(sweep_dir: str | Path, source: Source) -> Log:
    """A live run over ``source``'s configs (any strategy, e.g. ASHA) read as a replay's log: its epochs
    in the order they ended, with the run's own recorded seconds, so ``measure`` compares it with
    replays of the same strategy."""
    d = Path(sweep_dir)
    trials = pd.read_parquet(d / "trials.parquet").set_index("trial_id")
    epochs = pd.read_parquet(d / "epochs.parquet")
    absent = [c for c in ("epoch_end_time", *source.keys) if c not in epochs and c not in trials]
    if absent:
        raise ConfigError(f"{d} has no column {', '.join(absent)}: it cannot be read as a run of this grid")
    epochs = epochs[epochs["trial_id"].isin(trials.index)]  # epochs of a trial that never ended: left out
    rows = _epoch_costs(epochs).sort_values("epoch_end_time", kind="stable")
    index = {label: i for i, label in enumerate(source.objective.labels)}
    keyed = trials[list(source.keys)].map(cell)
    labels = keyed.apply(lambda r: ", ".join(f"{k}={v}" for k, v in r.items()), axis=1)
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ConfigError(f"{d} ran configs the source does not hold, e.g. {unknown[0]}")
    costs = _trial_costs(trials, rows)
    last = rows.groupby("trial_id")[EPOCH].transform("max")
    stopped = trials.get("stopped_by_scheduler", pd.Series(False, index=trials.index)).fillna(False)
    completed = (rows[EPOCH] == last) & ~rows["trial_id"].map(stopped).astype(bool)
    completed &= rows["trial_id"].map(trials["status"]).eq("TERMINATED")
    tid = rows["trial_id"]
    seconds = rows[SECONDS] + np.where(rows[EPOCH] == last, tid.map(costs[OTHER]), 0.0)
    seconds += np.where(completed, tid.map(costs[FINAL_SECONDS]), 0.0)
    passes = rows[PASSES] + np.where(completed, tid.map(costs[FINAL_PASSES]), 0.0)
    end = rows["epoch_end_time"].to_numpy(float)
    start = float(np.min(end - seconds.to_numpy(float)))
    order = {t: n for n, t in enumerate(dict.fromkeys(tid))}
    return Log(
        end=end - start,
        config=tid.map(labels).map(index).to_numpy(int),
        trial=tid.map(order).to_numpy(int),
        epoch=rows[EPOCH].to_numpy(int),
        seconds=seconds.to_numpy(float),
        passes=passes.to_numpy(float),
        completed=completed.to_numpy(bool),
        suggested=len(trials),
    )
