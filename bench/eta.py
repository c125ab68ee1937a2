"""The progress line's ETA against the real time left, on a finished grid's recorded timeline.

Each trial's wall interval is rebuilt from its rows: it ends when its test suite does (the last epoch's
``epoch_end_time`` plus ``eval_suite_seconds``) and began ``wall_seconds`` earlier. At the moment the
k-th trial finished, the ETA the progress line would have printed is worked out with its own estimator
(``tune_robust.results.progress.eta_seconds``): weighted by each trial's planned cost
(``tune_robust.run.cost.TrialCost``: MACs x passes x attack steps, from the trial's config.json) and,
side by side, unweighted (every trial counts one, the line before the weighting). Real time left = the
last trial's end minus that moment.

Run: python bench/eta.py [--sweep DIR] (a finished sweep folder; default: the default grid,
``wrn_depth_grid`` at smoke fidelity, run into --out first when it has not been: about 13 min on 2 idle
cores).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tune_robust.api import RunOptions, plan, run_plan
from tune_robust.results.progress import eta_seconds
from tune_robust.run.cost import TrialCost

SWEEP = "wrn_depth_grid"
POINTS = (0.1, 0.25, 0.5, 0.75)


def default_grid(out: Path) -> Path:
    resume = (out / SWEEP / "sweep.json").exists()
    run_plan(plan(SWEEP, RunOptions(results_dir=str(out), verbose=0, resume=resume)), command="bench/eta.py")
    return out / SWEEP


def trial_cost(configs: list[dict[str, Any]]) -> TrialCost:
    """The progress line's cost function for these configs (MACs counted as planning counts them)."""
    from tune_robust.run.validate import validate

    return TrialCost(validate(configs).macs)


def timeline(sweep: Path) -> pd.DataFrame:
    """One row per finished trial: start, end (unix seconds) and its planned cost."""
    trials = pd.read_parquet(sweep / "trials.parquet")
    trials = trials[trials["status"] == "TERMINATED"]
    epochs = pd.read_parquet(sweep / "epochs.parquet")
    last_epoch = epochs.groupby("trial_id")["epoch_end_time"].max()
    df = trials.set_index("trial_id")[["wall_seconds", "eval_suite_seconds", "checkpoint_path"]].copy()
    df["end"] = last_epoch.reindex(df.index) + df["eval_suite_seconds"].fillna(0)
    df["start"] = df["end"] - df["wall_seconds"]
    configs = [json.loads((Path(p) / "config.json").read_text()) for p in df["checkpoint_path"]]
    cost = trial_cost(configs)
    df["cost"] = [cost(c) for c in configs]
    return df.dropna(subset=["start", "end"]).sort_values("end")


def estimates(df: pd.DataFrame) -> pd.DataFrame:
    """At each trial's end: the weighted and unweighted ETA, and the real time left."""
    t0, t_end, total = df["start"].min(), df["end"].max(), df["cost"].sum()
    rows: list[dict[str, Any]] = []
    for k, now in enumerate(df["end"], start=1):
        done = df["end"] <= now
        running = (df["start"] <= now) & ~done
        left = ~done & ~running
        weighted = eta_seconds(
            now - t0,
            df.loc[done, "cost"].sum(),
            df.loc[running, "cost"].sum(),
            total - df.loc[done | running, "cost"].sum(),
        )
        unweighted = eta_seconds(now - t0, float(done.sum()), float(running.sum()), float(left.sum()))
        rows.append(
            {
                "finished": k,
                "share": k / len(df),
                "elapsed": now - t0,
                "real_left": t_end - now,
                "weighted": weighted,
                "unweighted": unweighted,
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", help="a finished sweep folder (<results-dir>/<sweep>)")
    ap.add_argument("--out", default="results/bench_eta", help="where the default grid runs without --sweep")
    args = ap.parse_args()
    sweep = Path(args.sweep) if args.sweep else default_grid(Path(args.out))
    df = timeline(sweep)
    est = estimates(df)
    span = df["end"].max() - df["start"].min()
    r = np.corrcoef(df["wall_seconds"], df["cost"])[0, 1]
    print(f"{sweep}: {len(df)} trials, {span:.0f} s from the first start to the last end")
    print(f"trial wall seconds vs planned cost: Pearson r = {r:.2f}")
    print("at share of trials finished | real time left | weighted ETA (error) | unweighted ETA (error)")
    for share in POINTS:
        row = est[est["share"] >= share].iloc[0]
        w, u, real = row["weighted"], row["unweighted"], row["real_left"]
        print(
            f"{share:>5.0%} ({row['finished']:.0f} trials, {row['elapsed']:.0f} s in) | {real:6.0f} s | "
            f"{w:6.0f} s ({100 * (w / real - 1):+.0f}%) | {u:6.0f} s ({100 * (u / real - 1):+.0f}%)"
        )
    late = est[(est["share"] >= 0.1) & (est["share"] <= 0.9)]
    for name in ("weighted", "unweighted"):
        err = 100 * (late[name] / late["real_left"] - 1).abs()
        print(f"{name}: median |error| {err.median():.0f}%, worst {err.max():.0f}% (10-90% of trials done)")


if __name__ == "__main__":
    main()
