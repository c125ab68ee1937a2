"""Run each paper's claim sweeps at the mini fidelity, one after another, timing each sweep, then judge
the paper's claims and print the table bench/RESULTS.md records (claim, statistic, interval, verdict,
trials, wall time of the sweeps it rests on, upstream stages included).

    python bench/claims_mini.py --out /tmp/bench/claims                  # all four papers (~1.5 h, 2 cores)
    python bench/claims_mini.py --out /tmp/bench/claims huang robnet     # some of them
    python bench/claims_mini.py --out /tmp/bench/claims --judge-only     # the table from finished runs

Each sweep runs as ``python sweep.py NAME --fidelity mini --results-dir OUT/PAPER -q`` (with --resume
when an earlier run left it unfinished); its wall time goes to ``OUT/PAPER/times.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ("huang", "robnet", "racl", "rnascl")


def run_sweeps(paper: str, out: Path, fidelity: str) -> dict[str, float]:
    from tune_robust.analysis.claims import read_results
    from tune_robust.api import claim_sweeps

    times_path = out / "times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    for name in claim_sweeps([paper]):
        present = read_results(out) if out.exists() and any(out.iterdir()) else {}
        done = present.get(name)
        if done is not None and done.planned and len(done.results.trials) >= done.planned:
            continue
        cmd = [sys.executable, "sweep.py", name, "--fidelity", fidelity, "--results-dir", str(out), "-q"]
        cmd += ["--resume"] if done is not None else []
        start = time.perf_counter()
        finished = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        times[name] = times.get(name, 0.0) + time.perf_counter() - start
        times_path.write_text(json.dumps(times, indent=1))
        print(f"{paper} {name}: {times[name]:.0f} s, exit {finished.returncode}", flush=True)
        if finished.returncode != 0:
            print(finished.stderr[-2000:], file=sys.stderr)
            break
    return times


def table(paper: str, out: Path) -> pd.DataFrame:
    from tune_robust.analysis.claims import claims_for, judge, read_results, run_order

    times_path = out / "times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    sweeps = read_results(out)
    rows = []
    for claim in claims_for([paper]):
        row = judge(claim, sweeps).row()
        needed = run_order([claim])
        wall = sum(times.get(s, math.nan) for s in needed)
        trials = sum(len(sweeps[s].results.trials) for s in needed if s in sweeps)
        rows.append({**row, "trials_run": trials, "wall_min": wall / 60})
    return pd.DataFrame(rows)


def markdown(df: pd.DataFrame) -> str:
    def num(v: float) -> str:
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"

    lines = [
        "| claim | statistic | value | 95% interval | p | n | verdict | trials run | wall (min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in df.itertuples(index=False):
        interval = f"[{num(r.low)}, {num(r.high)}]" if num(r.low) else ""
        lines.append(
            f"| `{r.claim}` | {r.statistic} | {num(r.value)} | {interval} | {num(r.p)} | {r.n} | "
            f"**{r.verdict}** | {r.trials_run} | {num(r.wall_min)} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("papers", nargs="*", default=list(PAPERS))
    p.add_argument("--out", required=True, help="one results dir per paper goes under it")
    p.add_argument("--fidelity", default="mini")
    p.add_argument("--judge-only", action="store_true", help="judge finished runs, run nothing")
    args = p.parse_args()
    frames = []
    for paper in args.papers:
        out = Path(args.out) / paper
        out.mkdir(parents=True, exist_ok=True)
        if not args.judge_only:
            run_sweeps(paper, out, args.fidelity)
        frames.append(table(paper, out))
    df = pd.concat(frames, ignore_index=True)
    print(markdown(df))
    print()
    for r in df.itertuples(index=False):
        print(f"{r.claim}: {r.reason} | learned: {r.learned}")


if __name__ == "__main__":
    main()
