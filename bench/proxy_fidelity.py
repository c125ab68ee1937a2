"""Proxy fidelity: does a cheap run of the depth grid rank configs like the full smoke run?

Runs ``wrn_depth_grid`` (smoke: digits, PGD-3 AT) with ``train.epochs`` = each of ``--epochs`` (the warm-up
epoch dropped for a 1-epoch run) and compares
each run's ranking by test robust accuracy (best_robust_acc) with the reference run (the 5-epoch full
grid, e.g. the one bench/search_efficiency.py made): Kendall tau, Spearman rho, top-5 overlap, and the
compute the proxy took. It also reports, from the reference run alone, how well validation robust
accuracy after epoch k of the 5-epoch schedule predicts the final ranking (what ASHA's rungs rely on).

Run: python bench/proxy_fidelity.py --reference results/bench_search/grid/wrn_depth_grid [--epochs 1 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from tune_robust.analysis import fidelity_correlation, load_sweep, rank_correlation
from tune_robust.api import RunOptions, plan, run_plan

SWEEP = "wrn_depth_grid"


def completed(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["status"] == "TERMINATED"].dropna(subset=["best_robust_acc"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", required=True, help="the full run's sweep dir (<results>/wrn_depth_grid)")
    ap.add_argument("--epochs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default="results/bench_proxy")
    args = ap.parse_args()
    ref = load_sweep(args.reference)
    ref_done = completed(ref.trials)
    ref_seconds = float(ref.epochs["train_seconds"].sum() + ref.epochs["eval_seconds"].sum())
    ref_suite = float(ref_done["eval_suite_seconds"].sum())
    rows = {}
    for n in args.epochs:
        d = Path(args.out) / f"epochs{n}"
        resume = (d / SWEEP / "sweep.json").exists()
        p = plan(
            SWEEP,
            RunOptions(
                results_dir=str(d),
                verbose=0,
                resume=resume,
                sets=(f"train.epochs={n}", f"train.warmup_epochs={min(1, n - 1)}"),
            ),
        )
        run_plan(p, command=f"bench/proxy_fidelity.py epochs={n}")
        run = load_sweep(d / SWEEP)
        done = completed(run.trials)
        fc = fidelity_correlation(done, ref_done, keys=["model.depths"])
        seconds = float(run.epochs["train_seconds"].sum() + run.epochs["eval_seconds"].sum())
        rows[f"separate run, train.epochs={n}"] = {
            **fc,
            "train+val seconds % of reference": 100 * seconds / ref_seconds,
            "test-suite seconds % of reference": 100 * float(done["eval_suite_seconds"].sum()) / ref_suite,
        }
    final = ref_done.set_index("trial_id")["best_robust_acc"]
    for k in sorted(set(ref.epochs["epoch"]))[:-1]:
        val = ref.epochs[ref.epochs["epoch"] == k].set_index("trial_id")["val_robust_acc"]
        rows[f"epoch {k} of the reference (val)"] = {
            **rank_correlation(val, final),
            "train+val seconds % of reference": 100 * k / int(ref.epochs["epoch"].max()),
        }
    table = pd.DataFrame(rows).T
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(f"reference: {args.reference} ({len(ref_done)} configs)")
        print(table.to_string(float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
