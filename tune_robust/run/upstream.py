"""What a stage takes from earlier sweeps in the same results dir (``tune_robust.sweeps.Upstream``),
resolved at plan time: a checkpoint path in every trial's ``upstream`` section, or the searched
architectures of an upstream sweep as trials of this one. On --resume the architecture trials the sweep
started with are kept (sweep.json), whatever the upstream holds now."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tune_robust.errors import ConfigError
from tune_robust.models.checkpoint import canonical
from tune_robust.run.options import RunOptions
from tune_robust.run.resume import read_state
from tune_robust.sweeps import SweepSpec, Upstream

Config = dict[str, Any]


@dataclass(frozen=True)
class Resolved:
    """The trial configs with their upstream inputs filled in and upstream trials added."""

    configs: list[Config]
    notes: list[str]


def resolve(
    spec: SweepSpec, options: RunOptions, base: Mapping[str, Any], configs: Sequence[Config]
) -> Resolved:
    """``configs`` (not changed) with every upstream of ``spec`` resolved."""
    out = copy.deepcopy(list(configs))
    notes: list[str] = []
    recorded = recorded_configs(spec, options)
    added: list[Config] = []
    # An input given by hand (--set upstream.ROLE=...) replaces the sweep that would give it, and makes
    # that sweep's other roles optional (RNAS-CL's searches read teacher and teacher_r18 alike).
    given = {role: canonical(str(ref)) for role, ref in base.get("upstream", {}).items()}
    for cfg in out:  # trials start in their own directories: a path given by hand goes in absolute
        cfg.setdefault("upstream", {}).update(given)
    by_hand = {up.sweep for up in spec.upstream if up.name in given}
    for up in spec.upstream:
        if up.kind == "architectures" and recorded is not None:
            continue
        if up.kind == "checkpoint" and up.name in given:
            notes.append(f"upstream.{up.name} is given (--set): sweep {up.sweep!r} is not read for it")
            continue
        df = upstream_rows(spec, options, up, notes, optional=up.optional or up.sweep in by_hand)
        if df is None:
            continue
        if up.kind == "checkpoint":
            best = df.sort_values(up.metric, ascending=False).iloc[0]
            for cfg in out:
                cfg.setdefault("upstream", {})[up.name] = str(best["checkpoint_path"])
        else:
            added.extend(architecture_trials(up, df, base, out))
    if recorded is not None and len(recorded) > len(out):
        added = copy.deepcopy(recorded[len(out) :])
        notes.append(
            f"--resume keeps the {len(added)} upstream architecture trial(s) this sweep started with"
        )
    if added and options.search != "grid":
        raise ConfigError(
            f"sweep {spec.name!r} adds the architectures of earlier sweeps as fixed trials; run it "
            f"with --search grid (got --search {options.search})"
        )
    return Resolved(out + added, notes)


def recorded_configs(spec: SweepSpec, options: RunOptions) -> list[Config] | None:
    """On --resume of a sweep with architecture upstreams: the trial configs its sweep.json recorded."""
    if not options.resume or all(u.kind != "architectures" for u in spec.upstream):
        return None
    configs = read_state(options.results_path / spec.name).get("fingerprint", {}).get("configs")
    return list(configs) if isinstance(configs, list) else None


def _check_finished(spec: SweepSpec, up: Upstream, directory: Path, n_rows: int) -> None:
    """Refuse to take architectures from a sweep that has not run all its planned trials."""
    planned = read_state(directory).get("fingerprint", {}).get("strategy", {}).get("num_samples")
    if isinstance(planned, int) and n_rows < planned:
        raise ConfigError(
            f"sweep {spec.name!r} takes the best architectures of sweep {up.sweep!r}, which has "
            f"{n_rows} of its {planned} trials; finish it first (`python sweep.py {up.sweep} --resume`, "
            f"same --results-dir)"
        )


def upstream_rows(
    spec: SweepSpec, options: RunOptions, up: Upstream, notes: list[str], optional: bool = False
) -> Any:
    """The upstream sweep's finished rows with a checkpoint and ``up.metric`` (None, with a note: an
    ``optional`` one that has not been run)."""
    import pandas as pd

    table = options.results_path / up.sweep / "trials.parquet"
    if not table.exists():
        if optional:
            what = (
                "its architectures are not added"
                if up.kind == "architectures"
                else f"upstream.{up.name} is unset"
            )
            notes.append(f"sweep {up.sweep!r} has no results in {table.parent}: {what}")
            return None
        raise ConfigError(
            f"sweep {spec.name!r} starts from the best checkpoint of sweep {up.sweep!r}, "
            f"which has no results in {table.parent}; run `python sweep.py {up.sweep}` first "
            f"(with the same --results-dir)"
        )
    df = pd.read_parquet(table)
    if up.kind == "architectures":
        _check_finished(spec, up, table.parent, len(df))
    df = df[(df["status"] == "TERMINATED") & df["checkpoint_path"].notna()]
    for key, value in up.where.items():
        df = df[df[key] == value] if key in df else df.iloc[0:0]
    if up.metric in df:
        df = df[df[up.metric].notna()]
    wanted = f" with {dict(up.where)}" if up.where else ""
    if df.empty or up.metric not in df:
        raise ConfigError(
            f"sweep {up.sweep!r} has no finished trial{wanted} with a checkpoint and {up.metric!r}; "
            f"run `python sweep.py {up.sweep}` (with the same --results-dir) until one finishes"
        )
    if up.kind == "architectures" and ("arch" not in df or (up.per and up.per not in df)):
        raise ConfigError(f"sweep {up.sweep!r} has no architecture records (arch, {up.per}) to take")
    return df


def architecture_trials(
    up: Upstream, df: Any, base: Mapping[str, Any], configs: Sequence[Config]
) -> list[Config]:
    """One trial per (group winner, distinct non-model setting of the grid's trials)."""
    from tune_robust.models.oneshot import read_record

    groups = list(df.groupby(up.per, sort=True)) if up.per else [(None, df)]
    settings: dict[str, Config] = {}
    for cfg in configs:
        rest = {k: v for k, v in copy.deepcopy(cfg).items() if k != "model"}
        rest.get("eval", {}).pop("label", None)
        settings.setdefault(json.dumps(rest, sort_keys=True, default=str), rest)
    out = []
    for value, group in groups:
        best = group.sort_values(up.metric, ascending=False).iloc[0]
        record = read_record(str(best["arch"]))
        # (no "=" in a label: --checkpoint / --craft-on read LABEL=PATH)
        name = f"{value:g}" if isinstance(value, (int, float)) else str(value)
        label = f"{up.sweep}:{up.per}:{name}" if up.per else f"{up.sweep}:best"
        label += f" ({best['trial_id']})"
        for rest in settings.values():
            cfg = copy.deepcopy(rest)
            cfg["model"] = {**base.get("model", {}), **record["model"]}
            if "method" in record:  # what the search chose for the training (RNAS-CL's tutors)
                cfg["method"] = {**cfg.get("method", {}), **record["method"]}
            cfg.setdefault("eval", {})["label"] = label
            out.append(cfg)
    return out
