"""The claims framework: statistics, verdicts, what a claim needs before it is judged, the run order of
its sweeps, the printed table, claims.parquet, the report's Claims section, a plugin's claim, and the
`sweep.py claims` command end to end on a real 10-trial grid."""

from __future__ import annotations

import itertools
import json
import math
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sp

from tune_robust.analysis.claims import (
    CANNOT_JUDGE,
    CLAIMS,
    CONTRADICTED,
    HOLDS,
    INCONCLUSIVE,
    Claim,
    ClaimData,
    Finding,
    MissingData,
    SweepData,
    by_interval,
    claims_for,
    format_claims,
    judge,
    judge_all,
    run_order,
    write_claims,
)
from tune_robust.analysis.load import SweepResults
from tune_robust.analysis.stats import correlation, mean_difference
from tune_robust.cli import main
from tune_robust.results.writer import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]


def sweep_data(name: str, trials: pd.DataFrame, planned: int | None = None) -> SweepData:
    return SweepData(name, Path(name), SweepResults(trials, pd.DataFrame()), planned)


def rows(values: list[float], **columns: Any) -> pd.DataFrame:
    return pd.DataFrame(
        {"status": "TERMINATED", "best_robust_acc": values, "data.dataset": "digits", **columns}
    )


class Rising(Claim):
    """Robust accuracy rises with x (a test claim)."""

    paper = "Test et al."
    where = "Fig. 0"
    statement = "x helps."
    sweeps = ("toy",)
    columns = {"toy": ("x",)}
    thresholds = "holds: interval of Spearman rho above 0"
    min_trials = 5
    learned = {"toy": "best_robust_acc"}

    def test(self, data: ClaimData) -> Finding:
        t = data.trials("toy")
        if "needed" in t and not t["needed"].any():
            raise MissingData("no row is marked needed")
        return by_interval("Spearman rho(x, robust)", correlation(t["x"], t["best_robust_acc"]))


def test_correlation_matches_scipy_and_its_interval_covers_it():
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    y = x + rng.normal(scale=0.5, size=40)
    r = correlation(x, y, "kendall")
    expected = sp.kendalltau(x, y)
    assert r["value"] == pytest.approx(expected.statistic)
    assert r["p"] == pytest.approx(expected.pvalue)
    assert r["low"] < r["value"] < r["high"] and r["n"] == 40
    with pytest.raises(ValueError, match="at least 3 pairs"):
        correlation([1, 2], [3, 4])


def test_mean_difference_paired_is_exact_for_few_seeds():
    a, b = [0.8, 0.82, 0.85, 0.81], [0.7, 0.75, 0.74, 0.72]
    r = mean_difference(a, b, paired=True)
    assert r["value"] == pytest.approx(np.mean(np.subtract(a, b)))
    # Every sign flip of 4 positive differences: only the observed one and its mirror are as extreme.
    assert r["p"] == pytest.approx(2 / 16)
    unpaired = mean_difference(a, b)
    assert unpaired["value"] == pytest.approx(np.mean(a) - np.mean(b)) and unpaired["low"] > 0


@pytest.mark.parametrize(
    ("low", "high", "p", "expect", "verdict"),
    [
        (0.1, 0.3, 0.01, "above", HOLDS),
        (-0.3, -0.1, 0.01, "above", CONTRADICTED),
        (-0.1, 0.3, 0.4, "above", INCONCLUSIVE),
        (-0.3, -0.1, 0.01, "below", HOLDS),
        (0.1, 0.3, 0.01, "below", CONTRADICTED),
        # A bootstrap of 4 seeds whose differences share a sign excludes 0 while the exact p is 2/16.
        (0.1, 0.3, 0.125, "above", INCONCLUSIVE),
    ],
)
def test_by_interval_needs_the_interval_and_p_against_zero(low, high, p, expect, verdict):
    result = {"value": (low + high) / 2, "low": low, "high": high, "p": p, "n": 9}
    f = by_interval("s", result, expect=expect)
    assert f.verdict == verdict and f.n == 9 and f.p == p


def test_by_interval_against_another_bound_reads_the_interval_alone():
    # rho in [-0.2, 0.1] lies below 0.3 whatever its p against 0.
    f = by_interval(
        "s", {"value": -0.05, "low": -0.2, "high": 0.1, "p": 0.7, "n": 40}, expect="below", bound=0.3
    )
    assert f.verdict == HOLDS


def test_four_seeds_that_all_agree_cannot_hold():
    r = mean_difference([0.80, 0.81, 0.83, 0.82], [0.70, 0.72, 0.71, 0.73], paired=True)
    assert r["low"] > 0 and r["p"] == pytest.approx(2 / 16)
    assert by_interval("gain", r).verdict == INCONCLUSIVE
    six = mean_difference(
        [0.80, 0.81, 0.83, 0.82, 0.8, 0.79], [0.70, 0.72, 0.71, 0.73, 0.7, 0.74], paired=True
    )
    assert six["p"] == pytest.approx(2 / 64) and by_interval("gain", six).verdict == HOLDS


def test_a_small_correlation_gets_an_exact_permutation_p():
    r = correlation([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], "spearman")
    x, y = np.array([1, 2, 3, 4, 5]), np.array([2, 1, 4, 3, 5])
    rhos = [sp.spearmanr(x, np.array(perm)).statistic for perm in itertools.permutations(y)]
    assert r["p"] == pytest.approx(np.mean(np.abs(rhos) >= abs(r["value"]) - 1e-12))


def test_judge_says_what_is_missing_before_testing():
    grid = rows([0.5, 0.6, 0.7, 0.8, 0.9, 0.95], x=[1, 2, 3, 4, 5, 6])
    assert "needs toy" in judge(Rising, {}).reason
    few = judge(Rising, {"toy": sweep_data("toy", grid.iloc[:3])})
    assert few.verdict == CANNOT_JUDGE and "at least 5 finished trials of toy; it has 3" in few.reason
    no_column = judge(Rising, {"toy": sweep_data("toy", grid.drop(columns="x"))})
    assert no_column.verdict == CANNOT_JUDGE and "no column x" in no_column.reason
    marked = judge(Rising, {"toy": sweep_data("toy", grid.assign(needed=False))})
    assert marked.verdict == CANNOT_JUDGE and marked.reason == "no row is marked needed"
    ok = judge(Rising, {"toy": sweep_data("toy", grid)})
    assert ok.verdict == HOLDS and ok.finding is not None and ok.finding.value == pytest.approx(1.0)
    assert "median best_robust_acc 0.750, chance 0.10" in ok.learned
    from tune_robust.analysis.claims._base import TABLE_COLUMNS

    assert tuple(ok.row()) == TABLE_COLUMNS


def test_a_complete_claim_waits_for_every_planned_trial():
    class Whole(Rising):
        complete = True

    grid = rows([0.5, 0.6, 0.7, 0.8, 0.9, 0.95], x=[1, 2, 3, 4, 5, 6])
    partial = judge(Whole, {"toy": sweep_data("toy", grid, planned=10)})
    assert partial.verdict == CANNOT_JUDGE and "6 of 10 planned trials have ended" in partial.reason
    # Scheduler-stopped trials have ended: the sweep is whole and they are not judged.
    stopped = rows([0.1] * 4, x=[7, 8, 9, 10]).assign(stopped_by_scheduler=True)
    whole = pd.concat([grid.assign(stopped_by_scheduler=False), stopped], ignore_index=True)
    assert judge(Whole, {"toy": sweep_data("toy", whole, planned=10)}).verdict == HOLDS
    # A failed trial leaves a hole in the grid: the claim waits for it.
    failed = pd.concat([grid, rows([0.1] * 4, x=[7, 8, 9, 10]).assign(status="ERROR")], ignore_index=True)
    holed = judge(Whole, {"toy": sweep_data("toy", failed, planned=10)})
    assert holed.verdict == CANNOT_JUDGE and "4 of its trials failed" in holed.reason


def test_a_statistic_that_cannot_be_computed_is_cannot_judge():
    class Broken(Rising):
        def test(self, data: ClaimData) -> Finding:
            return by_interval("s", correlation([1.0, 2.0], [1.0, 2.0]))

    grid = rows([0.5, 0.6, 0.7, 0.8, 0.9, 0.95], x=[1, 2, 3, 4, 5, 6])
    j = judge(Broken, {"toy": sweep_data("toy", grid)})
    assert j.verdict == CANNOT_JUDGE and "at least 3 pairs" in j.reason
    sparse = grid.assign(x=[1.0, None, None, None, None, 6.0])
    assert (
        "fewer than 5 finished trials have a value of x"
        in judge(Rising, {"toy": sweep_data("toy", sparse)}).reason
    )


def test_networks_at_chance_make_the_claim_inconclusive():
    at_chance = rows([0.09, 0.1, 0.11, 0.12, 0.13, 0.14], x=[1, 2, 3, 4, 5, 6])
    j = judge(Rising, {"toy": sweep_data("toy", at_chance)})
    assert j.verdict == INCONCLUSIVE and j.finding is None
    assert "did not learn" in j.reason and "chance 0.10" in j.reason


def test_run_order_puts_every_upstream_first():
    class Reads(Claim):
        sweeps = ("rnascl_train", "rnascl_ablation")

    order = run_order([Reads])
    assert order == ["rnascl_teacher", "rnascl_ablation", "rnascl_train"]
    # Optional upstreams no claim reads (rnascl_search, rnascl_teachers) are not run.

    class Finetune(Claim):
        sweeps = ("robnet_finetune",)

    assert run_order([Finetune]) == ["robnet_supernet", "robnet_finetune"]


def test_every_builtin_claim_names_registered_sweeps_and_its_thresholds():
    from tune_robust.sweeps import SWEEPS

    names = CLAIMS.names()
    assert any(n.startswith("huang_") for n in names)
    for name in names:
        c = CLAIMS.get(name)
        assert c.paper and c.where and c.statement and c.thresholds, name
        assert all(s in SWEEPS for s in c.sweeps), name
        assert "mini" in SWEEPS.get(c.sweeps[0])().fidelities, name
    for paper in ("huang", "robnet", "racl", "rnascl"):
        found = claims_for([paper])
        assert len(found) >= 2 and all(c.name.startswith(paper + "_") for c in found)


def test_claims_table_prints_and_round_trips_through_parquet(tmp_path):
    grid = rows([0.5, 0.6, 0.7, 0.8, 0.9, 0.95], x=[1, 2, 3, 4, 5, 6])
    table = pd.DataFrame([judge(Rising, {"toy": sweep_data("toy", grid)}).row(), judge(Rising, {}).row()])
    text = format_claims(table)
    assert "HOLDS" in text and "CANNOT JUDGE" in text and "thresholds: holds: interval" in text
    assert text.endswith("2 claims: 1 holds, 1 cannot judge")
    path = write_claims(table, tmp_path)
    back = pd.read_parquet(path)
    assert list(back["verdict"]) == [HOLDS, CANNOT_JUDGE]
    assert back["value"].iloc[0] == pytest.approx(1.0) and math.isnan(back["value"].iloc[1])


PLUGIN = """
from tune_robust.analysis.claims import Claim, Finding, register_claim


@register_claim("lab_depth_hurts")
class DepthHurts(Claim):
    paper = "Our lab (2026)"
    where = "Fig. 7"
    statement = "Our own finding, checked on the depth grid."
    sweeps = ("wrn_depth_grid",)
    thresholds = "holds: always (a demonstration)"
    figure = "lab_figure.png"
    min_trials = 2

    def test(self, data):
        n = len(data.trials("wrn_depth_grid"))
        return Finding("finished trials", float(n), n=n, verdict="holds", reason=f"{n} trials")
"""


def write_grid(directory: Path, n: int, planned: int) -> None:
    directory.mkdir(parents=True)
    trials = pd.DataFrame(
        {
            "schema_version": SCHEMA_VERSION,
            "sweep": "wrn_depth_grid",
            "fidelity": "mini",
            "trial_id": [f"t{i}" for i in range(n)],
            "status": "TERMINATED",
            "data.dataset": "digits",
            "model.depths": [f"{1 + i % 5}-1-{1 + (i // 5) % 5}" for i in range(n)],
            "params": [1000.0 * (i + 1) for i in range(n)],
            "best_clean_acc": 0.9,
            "best_robust_acc": [0.5 + 0.01 * i for i in range(n)],
            "epochs_run": 3,
        }
    )
    trials.to_parquet(directory / "trials.parquet")
    state = {"fingerprint": {"fidelity": "mini", "configs": [{}] * planned}}
    (directory / "sweep.json").write_text(json.dumps(state))


def test_a_plugin_claim_appears_in_claims_and_in_the_report(tmp_path, capsys):
    import subprocess

    plugin = tmp_path / "lab_claims.py"
    plugin.write_text(textwrap.dedent(PLUGIN))
    results = tmp_path / "results"
    write_grid(results / "wrn_depth_grid", n=6, planned=125)
    try:
        assert main(["claims", "lab", "--plugin", str(plugin), "--results-dir", str(results)]) == 0
        out = capsys.readouterr().out
        assert "lab_depth_hurts  (Our lab (2026), Fig. 7)  HOLDS" in out and "6 trials" in out
    finally:
        CLAIMS.unregister("lab_depth_hurts")
    # The report, in a process of its own, imports the plugin it is given.
    report = [sys.executable, "sweep.py", "report", "wrn_depth_grid", "--results-dir", str(results)]
    done = subprocess.run([*report, "--plugin", str(plugin)], cwd=ROOT, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = (results / "wrn_depth_grid" / "report" / "summary.md").read_text()
    claims = summary.split("## Claims", 1)[1]
    assert "lab_depth_hurts" in claims and "lab_figure.png" in claims
    # The built-in depth-grid claims wait for the whole grid (6 of 125 planned trials).
    assert "6 of 125 planned trials have ended" in claims


def test_claims_command_refuses_bad_input_in_one_line(tmp_path, capsys):
    assert main(["claims", "nobody", "--results-dir", str(tmp_path)]) == 2
    assert "no registered claim matches nobody" in capsys.readouterr().err
    assert main(["claims", "huang", "--results-dir", str(tmp_path / "none")]) == 2
    assert "holds no trials.parquet" in capsys.readouterr().err
    assert main(["claims", "huang", "--seeds", "0,1", "--results-dir", str(tmp_path)]) == 2
    assert "--seeds apply to the sweeps --run runs" in capsys.readouterr().err
    # The same sweep twice in one results dir, then a damaged sweep.json.
    write_grid(tmp_path / "r" / "a", n=6, planned=125)
    write_grid(tmp_path / "r" / "b", n=6, planned=125)
    assert main(["claims", "huang", "--results-dir", str(tmp_path / "r")]) == 2
    assert "holds sweep wrn_depth_grid twice (a/ and b/)" in capsys.readouterr().err
    write_grid(tmp_path / "d" / "wrn_depth_grid", n=6, planned=125)
    (tmp_path / "d" / "wrn_depth_grid" / "sweep.json").write_text("{cut sho")
    assert main(["claims", "huang", "--results-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "sweep.json cannot be read" in err and "Traceback" not in err


def test_claims_on_a_real_10_trial_grid_say_what_they_cannot_judge_yet(tmp_path):
    import subprocess

    results = tmp_path / "results"
    run = [sys.executable, "sweep.py", "wrn_depth_grid", "--max-trials", "10", "--results-dir", str(results)]
    quick = ["--set", "train.epochs=2", "--set", "eval.sanity=false", "-q"]  # the claims only count trials
    assert subprocess.run([*run, *quick], cwd=ROOT, capture_output=True, timeout=600).returncode == 0
    out = subprocess.run(
        [sys.executable, "sweep.py", "claims", "huang", "--results-dir", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "huang_last_stage_depth" in out.stdout
    assert "needs at least 25 finished trials of wrn_depth_grid; it has 10" in out.stdout
    assert "needs wrn_width_grid (not in this results dir)" in out.stdout
    table = pd.read_parquet(results / "claims.parquet")
    assert set(table["verdict"]) == {CANNOT_JUDGE} and len(table) == len(claims_for(["huang"]))
    assert judge_all(results, claims_for(["huang"]))["reason"].equals(table["reason"])


def test_seeds_train_every_config_once_per_seed_and_refuse_a_second_seed_source():
    from tune_robust.api import RunOptions, plan
    from tune_robust.errors import ConfigError

    p = plan("wrn_width_grid", RunOptions(seeds=(0, 1, 2), max_trials=7))
    assert [c["train"]["seed"] for c in p.configs] == [0, 1, 2, 0, 1, 2, 0]
    assert p.configs[0]["model"] == p.configs[2]["model"] != p.configs[3]["model"]
    with pytest.raises(ConfigError, match=r"already searches train\.seed"):
        plan("arch_reconfig", RunOptions(fidelity="mini", seeds=(0, 1)))
    with pytest.raises(ConfigError, match="give one of them"):
        plan("wrn_width_grid", RunOptions(seeds=(0, 1), sets=("train.seed=3",)))
    with pytest.raises(SystemExit):  # argparse: "a seed is given twice"
        main(["wrn_depth_grid", "--seeds", "1,1", "--dry-run"])


def test_claims_run_seeds_only_the_sweeps_a_claim_compares_across_seeds():
    from tune_robust.api import searches_seeds

    seeded = {s for c in claims_for(["racl", "rnascl", "huang"]) for s in c.seeded}
    assert {"racl_table1", "racl_ablation", "rnascl_train", "arch_reconfig"} <= seeded
    assert "wrn_depth_grid" not in seeded
    # The mini fidelity has seeds of its own; the paper fidelity takes --seeds.
    assert searches_seeds("racl_table1", "mini") and not searches_seeds("racl_table1", "paper")


@pytest.mark.slow
def test_claims_run_runs_a_papers_sweeps_in_order_then_skips_them(tmp_path):
    import subprocess

    results = tmp_path / "robnet"
    cmd = [sys.executable, "sweep.py", "claims", "robnet", "--run", "--fidelity", "smoke", "-q"]
    cmd += ["--results-dir", str(results)]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stderr[-2000:]
    order = [line.split(":")[0] for line in first.stdout.splitlines() if ": running (smoke)" in line]
    assert order == ["robnet_supernet", "robnet_sample", "robnet_scratch", "robnet_free_search"]
    assert {d.name for d in results.iterdir() if d.is_dir()} == set(order)
    # Three codes per sweep at the smoke fidelity: the correlations cannot be judged yet.
    table = pd.read_parquet(results / "claims.parquet")
    assert set(table["claim"]) == {c.name for c in claims_for(["robnet"])}
    assert (table["verdict"] == CANNOT_JUDGE).all()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0
    assert again.stdout.count("planned trials have ended; skipped") == 4
    # Finished sweeps of another fidelity are not taken for this one's.
    mini = [*cmd[:6], "mini", *cmd[7:]]
    other = subprocess.run(mini, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert other.returncode == 2 and other.stderr.startswith("error: ") and "skipped" not in other.stdout
