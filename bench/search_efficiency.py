"""Search strategies on the default depth grid: live runs against their replays (``sweep.py replay``).

1. The full grid: ``wrn_depth_grid`` at its default (smoke) fidelity, every config (FIFO), 2 trials at
   a time on this 2-core machine. Reused from ``--out`` when it has finished.
2. Replay speed: the replay ``sweep.py replay`` runs by default (grid, random, tpe and random+asha; 2 at
   a time; 50 repeats) on that grid, timed in this process, with its summary.
3. Replay against live ASHA: ``--seeds`` live runs of ``--search random --scheduler asha`` (grace 1,
   rf 3, the defaults), each read back with ``run_log`` and measured in its own recorded seconds, against
   the replayed ASHA with the same settings (50 seeds, and the live runs' own seeds).

Compute shares are of the full grid's compute: its trials' wall seconds (set-up, epochs and test
suites), and its attack passes (deterministic, so immune to the machine's load, which moves seconds).

Run: python bench/search_efficiency.py [--out DIR] [--seeds 0 1 2] (the grid about 13 min on 2 idle
cores, each ASHA run about 5; runs in --out are reused or resumed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tune_robust.analysis import replay as rp
from tune_robust.api import REPLAYED, RunOptions, plan, replay, replay_source, run_plan

SWEEP = "wrn_depth_grid"


def run(out: Path, name: str, **options: Any) -> Path:
    d = out / name
    resume = (d / SWEEP / "sweep.json").exists()  # finished runs return at once, interrupted ones go on
    p = plan(SWEEP, RunOptions(results_dir=str(d), verbose=0, resume=resume, **options))
    run_plan(p, command=f"bench/search_efficiency.py {name}")
    return d / SWEEP


def replay_speed(source: rp.Source) -> dict[str, Any]:
    started = time.perf_counter()
    result = replay(source, REPLAYED, concurrency=[2], repeats=50)
    seconds = time.perf_counter() - started
    print(
        f"replay: {len(REPLAYED)} strategies x 50 repeats over {source.objective.size} configs "
        f"in {seconds:.1f} s"
    )
    print(rp.format_summary(rp.summary(result.runs)))
    return {"seconds": seconds, "summary": rp.summary(result.runs).to_dict("records")}


def live_vs_replay(source: rp.Source, live: dict[int, Path]) -> dict[str, Any]:
    """The live ASHA runs' numbers and their replays' (same settings, same trials at a time)."""
    rows = {}
    for seed, d in live.items():
        row, _ = rp.measure(rp.run_log(d, source), source.objective)
        rows[f"live, seed {seed}"] = row
    result = replay(source, ["random+asha"], concurrency=[2], repeats=50)
    runs = result.runs.set_index("search_seed")
    for seed in live:
        rows[f"replay, seed {seed}"] = runs.loc[seed].to_dict()
    replayed = runs.assign(
        top5_passes_share=runs["top5_attack_passes"] / source.objective.trial_passes().sum(),
        passes_share=runs["attack_passes"] / source.objective.trial_passes().sum(),
    )
    passes = source.objective.trial_passes().sum()  # deterministic: immune to the machine's load
    for row in rows.values():
        row["top5_passes_share"] = row["top5_attack_passes"] / passes
        row["passes_share"] = row["attack_passes"] / passes
    columns = ["trials", "completed", "compute_share", "passes_share", "top5_share", "top5_passes_share"]
    columns += ["top1_share", "returns"]
    table = pd.DataFrame(rows).T[columns]
    print("\nASHA (random order, grace 1, rf 3, 2 at a time): live runs and their replays")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    stats = {}
    for m in ("compute_share", "passes_share", "top5_share", "top5_passes_share", "top1_share"):
        values = replayed[m].to_numpy(float)
        live_values = [rows[f"live, seed {s}"][m] for s in live]
        found = values[~np.isnan(values)]
        stats[m] = {
            "replay mean": float(np.mean(found)),
            "replay median": float(np.median(found)),
            "replay 10-90%": [float(v) for v in np.percentile(found, [10, 90])],
            "replay found": f"{len(found)}/{len(values)}",
            "live": live_values,
            "live min-max": [float(np.nanmin(live_values)), float(np.nanmax(live_values))],
        }
        low, high = 100 * np.percentile(found, [10, 90])
        print(
            f"{m}: replay over 50 seeds mean {100 * np.mean(found):.1f}%, "
            f"median {100 * np.median(found):.1f}%, "
            f"10-90% {low:.1f}-{high:.1f}% (found in {len(found)}/50); "
            f"live {', '.join(f'{100 * v:.1f}%' for v in live_values)}"
        )
    return {"table": table.reset_index().to_dict("records"), "stats": stats}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="results/bench_search", help="where the runs go (reused if present)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the live ASHA runs")
    args = ap.parse_args()
    out = Path(args.out)
    grid = run(out, "grid")
    source = replay_source(grid)
    print(
        f"full grid: {source.objective.size} configs, "
        f"{source.objective.trial_seconds().sum():.0f} trial-seconds"
    )
    report: dict[str, Any] = {"speed": replay_speed(source)}
    live = {s: run(out, f"asha_s{s}", search="random", scheduler="asha", search_seed=s) for s in args.seeds}
    report["asha"] = live_vs_replay(source, live)
    (out / "search_efficiency.json").write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
