"""Search efficiency on the embedded-default depth grid: full grid vs ASHA vs TPE (vs TPE + ASHA).

Every strategy runs ``wrn_depth_grid`` at the smoke fidelity (digits, 5 epochs of PGD-3 AT, 125
configs) through the runner, one CPU per trial. The full grid's top-5 configs by test robust accuracy
(best_robust_acc, the summary's ranking) are the targets. For each strategy the report gives the compute
spent until a target config *completed* its full training (a config ASHA stopped was not found), as a
share of the full grid's compute, in two units:

* MAC-epochs: sum over every epoch trained before that moment of the model's MACs per image (all configs
  share data, batch size and attack, so this is proportional to training FLOPs and immune to CPU noise);
* seconds: measured train + validation seconds of those epochs.

"Before that moment" orders all epochs of the run by their end time (``epoch_end_time``), so epochs of
trials running concurrently are counted when they happened. Trials are deterministic per config (seeded),
so a config completed by ASHA/TPE has the grid's numbers; the report checks that.

The full grid's recorded epochs also give expectations over many random orders: the full grid run
serially in random order, and Ray's ASHA rule replayed serially on the recorded per-epoch validation
accuracies (exact, since trials are deterministic per config: replaying the real ASHA run's order gives
its measured numbers).

Run: python bench/search_efficiency.py [--out DIR] [--seeds 0 1] (about 40 min per seed on 2 cores;
runs in --out are resumed / reused).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tune_robust.api import RunOptions, plan, run_plan

SWEEP = "wrn_depth_grid"
TOP = 5


def run(out: Path, name: str, **options: Any) -> Path:
    d = out / name
    resume = (d / SWEEP / "sweep.json").exists()  # finished runs return at once, interrupted ones go on
    p = plan(SWEEP, RunOptions(results_dir=str(d), verbose=0, resume=resume, **options))
    run_plan(p, command=f"bench/search_efficiency.py {name}")
    return d / SWEEP


def load(d: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    trials = pd.read_parquet(d / "trials.parquet")
    epochs = pd.read_parquet(d / "epochs.parquet")
    epochs = epochs.merge(trials[["trial_id", "model.depths", "macs"]], on="trial_id")
    epochs["seconds"] = epochs["train_seconds"].fillna(0) + epochs["eval_seconds"].fillna(0)
    return trials, epochs.sort_values("epoch_end_time")


def completed(trials: pd.DataFrame) -> pd.DataFrame:
    ok = trials[(trials["status"] == "TERMINATED") & ~trials["stopped_by_scheduler"].astype(bool)]
    return ok.dropna(subset=["best_robust_acc"])


def measure(d: Path, grid: pd.DataFrame, totals: dict[str, float]) -> dict[str, Any]:
    trials, epochs = load(d)
    done = completed(trials)
    top = set(grid.nlargest(TOP, "best_robust_acc")["model.depths"])
    rank = grid["best_robust_acc"].rank(ascending=False, method="min")
    grid_rank = dict(zip(grid["model.depths"], rank, strict=True))
    hits = done[done["model.depths"].isin(top)]
    row: dict[str, Any] = {
        "trials": len(trials),
        "completed": len(done),
        "distinct configs": trials["model.depths"].nunique(),
        "MAC-epochs %": 100 * float(epochs["macs"].sum()) / totals["macs"],
        "seconds %": 100 * float(epochs["seconds"].sum()) / totals["seconds"],
    }
    if len(hits):
        first = hits.sort_values("finished_at").iloc[0]
        end = epochs[(epochs["trial_id"] == first["trial_id"])]["epoch_end_time"].max()
        before = epochs[epochs["epoch_end_time"] <= end]
        row["found"] = f"{first['model.depths']} (grid rank {int(grid_rank[first['model.depths']])})"
        row["MAC-epochs to top-5 %"] = 100 * float(before["macs"].sum()) / totals["macs"]
        row["seconds to top-5 %"] = 100 * float(before["seconds"].sum()) / totals["seconds"]
    else:
        row["found"] = "no top-5 config completed"
        row["MAC-epochs to top-5 %"] = row["seconds to top-5 %"] = float("nan")
    # What the strategy itself would return: its best completed trial by validation robust accuracy.
    pick = done.sort_values("best_val_robust_acc", ascending=False).iloc[0]
    row["returns"] = f"{pick['model.depths']} (grid rank {int(grid_rank[pick['model.depths']])})"
    # Determinism check: completed configs must reproduce the grid's test numbers.
    merged = done.merge(grid[["model.depths", "best_robust_acc"]], on="model.depths", suffixes=("", "_grid"))
    row["differs from grid"] = int(
        (merged["best_robust_acc"] - merged["best_robust_acc_grid"]).abs().gt(1e-9).sum()
    )
    return row


def random_order_expectation(grid: pd.DataFrame, epochs: pd.DataFrame, draws: int = 10_000) -> dict[str, Any]:
    """The full grid run one trial at a time in a uniformly random order: expected share of its
    compute spent until the first top-5 config completes (Monte Carlo over orders, seed 0)."""
    rng = np.random.default_rng(0)
    cost = epochs.groupby("model.depths")[["macs", "seconds"]].sum()
    cost = cost.loc[grid["model.depths"]]
    is_top = grid["model.depths"].isin(set(grid.nlargest(TOP, "best_robust_acc")["model.depths"])).to_numpy()
    shares: dict[str, list[float]] = {"macs": [], "seconds": []}
    for _ in range(draws):
        order = rng.permutation(len(grid))
        first = int(np.argmax(is_top[order]))
        for unit in shares:
            c = cost[unit].to_numpy()[order]
            shares[unit].append(c[: first + 1].sum() / c.sum())
    return {
        "trials": len(grid),
        "found": f"mean over {draws} orders (median, 90th percentile)",
        "MAC-epochs to top-5 %": 100 * float(np.mean(shares["macs"])),
        "MAC-epochs median / p90 %": "{:.1f} / {:.1f}".format(
            *(100 * np.percentile(shares["macs"], [50, 90]))
        ),
        "seconds to top-5 %": 100 * float(np.mean(shares["seconds"])),
        "MAC-epochs %": 100.0,
        "seconds %": 100.0,
    }


def simulate_asha(
    val: np.ndarray, cost: np.ndarray, order: np.ndarray, is_top: np.ndarray, rf: float = 3.0, grace: int = 1
) -> tuple[float, float]:
    """Ray's ASHA rule replayed serially on the grid's recorded epochs (trials are deterministic, so
    a trial's epoch-k validation accuracy is the same in any run): ``val[i, k]`` and ``cost[i, k]`` of
    config i's epoch k+1. Returns (cost until the first top-5 config completes, total cost), or NaN
    for the first when none completes."""
    max_t = val.shape[1]
    n_rungs = int(np.log(max_t / grace) / np.log(rf) + 1)
    milestones = [grace * rf**k for k in range(n_rungs)]
    recorded: dict[float, list[float]] = {m: [] for m in milestones}
    spent, found = 0.0, float("nan")
    for i in order:
        for epoch in range(1, max_t + 1):
            spent += cost[i, epoch - 1]
            if epoch in recorded:
                rung = recorded[epoch]
                stop = bool(rung) and val[i, epoch - 1] < np.nanpercentile(rung, (1 - 1 / rf) * 100)
                rung.append(val[i, epoch - 1])
                if stop:
                    break
        else:
            if is_top[i] and np.isnan(found):
                found = spent
    return found, spent


def asha_expectation(grid: pd.DataFrame, epochs: pd.DataFrame, draws: int = 10_000) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    e = epochs.set_index(["model.depths", "epoch"]).sort_index()
    configs = list(grid["model.depths"])
    val = np.array([[e.loc[(c, k), "val_robust_acc"] for k in range(1, 6)] for c in configs])
    macs = np.array([[e.loc[(c, k), "macs"] for k in range(1, 6)] for c in configs])
    is_top = grid["model.depths"].isin(set(grid.nlargest(TOP, "best_robust_acc")["model.depths"])).to_numpy()
    total = macs.sum()
    runs = np.array([simulate_asha(val, macs, rng.permutation(len(configs)), is_top) for _ in range(draws)])
    found, spent = runs[:, 0], runs[:, 1]
    f = np.array(found) / total
    return {
        "trials": len(configs),
        "found": f"top-5 completed in {100 * np.mean(~np.isnan(f)):.1f}% of {draws} orders",
        "MAC-epochs to top-5 %": 100 * float(np.nanmean(f)),
        "MAC-epochs median / p90 %": "{:.1f} / {:.1f}".format(*(100 * np.nanpercentile(f, [50, 90]))),
        "MAC-epochs %": 100 * float(np.mean(spent) / total),
    }


def tpe_expectation(
    grid: pd.DataFrame, epochs: pd.DataFrame, samples: int, seeds: range = range(100)
) -> dict[str, Any]:
    """TPE replayed serially with Optuna's ask/tell on the recorded results (the runner's encoding of
    the grid, objective = last-epoch validation robust accuracy, as the live searcher tells Optuna): compute
    until a top-5 config completes, over ``seeds``. Ray runs 2 trials at a time, so after the random
    start-up trials a real run may ask in a different order than this serial replay."""
    import optuna

    from tune_robust.searchers._encoding import GridEncoding
    from tune_robust.sweeps import get_sweep

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = get_sweep(SWEEP)
    encoding = GridEncoding.from_space(spec.space_for("smoke"), {})
    labels = ["-".join(map(str, p["model.depths"])) for p in spec.points({}, "smoke")]
    last = epochs[epochs["epoch"] == epochs["epoch"].max()].set_index("model.depths")
    macs = epochs.groupby("model.depths")["macs"].sum()
    top = set(grid.nlargest(TOP, "best_robust_acc")["model.depths"])
    total = float(macs.sum())
    found, spent = [], []
    for seed in seeds:
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        cost, hit = 0.0, float("nan")
        for _ in range(samples):
            trial = study.ask(encoding.distributions())
            config = labels[encoding.decode(trial.params)]
            cost += float(macs[config])
            study.tell(trial, float(last.loc[config, "val_robust_acc"]))
            if config in top and np.isnan(hit):
                hit = cost
        found.append(hit / total)
        spent.append(cost / total)
    f = np.array(found)
    return {
        "trials": samples,
        "found": f"top-5 completed in {100 * np.mean(~np.isnan(f)):.0f}% of {len(seeds)} seeds",
        "MAC-epochs to top-5 %": 100 * float(np.nanmean(f)) if np.any(~np.isnan(f)) else float("nan"),
        "MAC-epochs median / p90 %": "{:.1f} / {:.1f}".format(*(100 * np.nanpercentile(f, [50, 90])))
        if np.any(~np.isnan(f))
        else "",
        "MAC-epochs %": 100 * float(np.mean(spent)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="results/bench_search", help="where the runs go (reused if present)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--tpe-samples", type=int, default=32)
    ap.add_argument("--tpe-asha-samples", type=int, default=60)
    args = ap.parse_args()
    out = Path(args.out)
    grid_dir = run(out, "grid")
    grid_trials, grid_epochs = load(grid_dir)
    grid = completed(grid_trials)
    if len(grid) != 125:
        raise SystemExit(f"the full grid has {len(grid)} completed trials, expected 125; rerun it")
    totals = {"macs": float(grid_epochs["macs"].sum()), "seconds": float(grid_epochs["seconds"].sum())}
    rows = {
        "full grid (grid order)": measure(grid_dir, grid, totals),
        "full grid (random order, expected)": random_order_expectation(grid, grid_epochs),
        "ASHA replayed serially (random order, expected)": asha_expectation(grid, grid_epochs),
        f"TPE {args.tpe_samples} replayed serially (100 seeds)": tpe_expectation(
            grid, grid_epochs, args.tpe_samples
        ),
        "TPE 60 replayed serially (100 seeds)": tpe_expectation(grid, grid_epochs, 60),
    }
    for seed in args.seeds:
        runs = {
            f"ASHA (random order, seed {seed})": run(
                out, f"asha_s{seed}", search="random", scheduler="asha", search_seed=seed
            ),
            f"TPE {args.tpe_samples} (seed {seed})": run(
                out, f"tpe_s{seed}", search="tpe", num_samples=args.tpe_samples, search_seed=seed
            ),
            f"TPE {args.tpe_asha_samples} + ASHA (seed {seed})": run(
                out,
                f"tpe_asha_s{seed}",
                search="tpe",
                scheduler="asha",
                num_samples=args.tpe_asha_samples,
                search_seed=seed,
            ),
        }
        rows.update({name: measure(d, grid, totals) for name, d in runs.items()})
    table = pd.DataFrame(rows).T
    top = grid.nlargest(TOP, "best_robust_acc")[["model.depths", "params", "best_robust_acc"]]
    print(f"full grid top-{TOP} by test robust accuracy:\n{top.to_string(index=False)}\n")
    print(f"full grid compute: {totals['macs']:.4g} MAC-epochs, {totals['seconds']:.0f} s train+val\n")
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(table.to_string(float_format=lambda v: f"{v:.1f}"))
    (out / "search_efficiency.json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
