"""analysis: typed loading across sweeps, Pareto / rank-correlation helpers against hand-computed cases,
every figure rendered from a small fixture Parquet, and the report."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tune_robust.analysis import (
    fidelity_correlation,
    load_sweep,
    pareto_front,
    plots,
    rank_correlation,
    top_k,
)
from tune_robust.analysis.report import write_report
from tune_robust.analysis.stats import cost_totals
from tune_robust.results.writer import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]
DEPTHS = (1, 3, 5)


def robust_of(d1: int, d2: int, d3: int) -> float:
    return round(0.3 + 0.01 * d1 + 0.02 * d2 - 0.01 * d3, 6)  # rounded: equal configs tie exactly


def write_fixture(directory: Path, sweep: str = "wrn_depth_grid", fidelity: str = "smoke") -> None:
    """A 27-config depth grid with known metrics (test data for the plotting and report code)."""
    directory.mkdir(parents=True)
    rows, epochs, eps_rows, step_rows = [], [], [], []
    for i, (d1, d2, d3) in enumerate(itertools.product(DEPTHS, repeat=3)):
        tid = f"t{i:02d}"
        robust = robust_of(d1, d2, d3)
        stopped = i == 0  # one trial ASHA stopped (1-1-1): no test numbers
        rows.append(
            {
                "schema_version": SCHEMA_VERSION,
                "sweep": sweep,
                "fidelity": fidelity,
                "trial_id": tid,
                "status": "TERMINATED",
                "error": None,
                "model.arch": "wrn",
                "model.depths": f"{d1}-{d2}-{d3}",
                "train.epochs": 3,
                "params": 1000 * (d1 + 2 * d2 + 4 * d3),
                "best_clean_acc": None if stopped else robust + 0.3,
                "best_robust_acc": None if stopped else robust,
                "best_val_robust_acc": robust,
                "test_pgd20_acc": None if stopped else robust,
                "epochs_run": 1 if stopped else 3,
                "stopped_by_scheduler": stopped,
                "suspect_gradient_masking": False,
                "sanity_messages": "sanity_x failed: demo" if i == 1 else None,
                "wall_seconds": 10.0,
                "cpus": 1.0,
                "gpus": 1.0,
                "attack_passes_total": 100,
                "search": "grid",
                "scheduler": "fifo",
                "finished_at": "2026-11-22T00:00:00+00:00",
            }
        )
        for e in range(1, (1 if stopped else 3) + 1):
            epochs.append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "sweep": sweep,
                    "trial_id": tid,
                    "epoch": e,
                    "val_robust_acc": round(robust * e / 3, 6),
                    "val_clean_acc": robust + 0.3,
                }
            )
        if i < 3:
            for attack in ("pgd", "fgsm"):
                for x in (0.0, 0.1, 0.2):
                    eps_rows.append(
                        {
                            "schema_version": SCHEMA_VERSION,
                            "sweep": sweep,
                            "trial_id": tid,
                            "table": "acc_vs_eps",
                            "attack": attack,
                            "x": x,
                            "label": f"{attack}-10",
                            "value": robust - x,
                        }
                    )
            for k in (1, 10, 100):
                step_rows.append(
                    {
                        "schema_version": SCHEMA_VERSION,
                        "sweep": sweep,
                        "trial_id": tid,
                        "table": "acc_vs_steps",
                        "attack": "pgd",
                        "x": k,
                        "label": "pgd",
                        "value": robust - 0.01 * np.log10(k),
                    }
                )
    pd.DataFrame(rows).to_parquet(directory / "trials.parquet")
    pd.DataFrame(epochs).to_parquet(directory / "epochs.parquet")
    pd.DataFrame(eps_rows).to_parquet(directory / "acc_vs_eps.parquet")
    pd.DataFrame(step_rows).to_parquet(directory / "acc_vs_steps.parquet")
    transfer = [
        {
            "schema_version": SCHEMA_VERSION,
            "sweep": sweep,
            "trial_id": "t00",
            "source": s,
            "target": t,
            "attack": "pgd7",
            "accuracy": 0.5 if s == t else 0.7,
        }
        for s in ("a", "b")
        for t in ("a", "b")
    ]
    pd.DataFrame(transfer).to_parquet(directory / "transfer.parquet")
    state = {"fingerprint": {"fidelity": fidelity, "configs": [{}] * 30, "strategy": {"num_samples": 30}}}
    (directory / "sweep.json").write_text(json.dumps(state))


@pytest.fixture
def fixture_dir(tmp_path: Path) -> Path:
    write_fixture(tmp_path / "results" / "wrn_depth_grid")
    return tmp_path / "results" / "wrn_depth_grid"


def test_load_sweep_types_tables_and_several_sweeps(tmp_path):
    write_fixture(tmp_path / "r" / "a", sweep="wrn_depth_grid", fidelity="smoke")
    write_fixture(tmp_path / "r" / "b", sweep="wrn_depth_grid", fidelity="paper")
    res = load_sweep(tmp_path / "r")  # a results dir: every sweep under it
    assert len(res.trials) == 54 and res.trials["sweep_path"].nunique() == 2
    assert set(res.trials["fidelity"]) == {"smoke", "paper"}
    assert isinstance(res.trials["status"].dtype, pd.CategoricalDtype)
    assert str(res.trials["stopped_by_scheduler"].dtype) == "boolean"
    assert str(res.trials["finished_at"].dtype).startswith("datetime64")
    assert len(res.table("acc_vs_eps")) == 2 * 3 * 2 * 3 and len(res.table("transfer")) == 8
    assert res.table("lipschitz").empty
    trials, epochs = load_sweep([tmp_path / "r" / "a"])  # unpacks like before
    assert len(trials) == 27 and len(epochs) == 26 * 3 + 1
    with pytest.raises(FileNotFoundError, match=r"holds no trials\.parquet"):
        load_sweep(tmp_path / "nothing")


def test_load_sweep_reads_old_schema_and_refuses_newer(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    pd.DataFrame(
        [
            {
                "schema_version": 1,
                "sweep": "s",
                "trial_id": "x",
                "status": "TERMINATED",
                "train.method": "trades",
            }
        ]
    ).to_parquet(d / "trials.parquet")
    trials = load_sweep(d).trials
    assert trials.loc[0, "method.name"] == "trades" and "train.method" not in trials
    pd.DataFrame([{"schema_version": SCHEMA_VERSION + 1, "sweep": "s", "trial_id": "x"}]).to_parquet(
        d / "trials.parquet"
    )
    with pytest.raises(ValueError, match="newer than this tune_robust reads"):
        load_sweep(d)


def test_pareto_front_hand_computed():
    df = pd.DataFrame(
        {
            "name": ["A", "B", "C", "D", "E", "F"],
            "robust": [0.50, 0.60, 0.40, 0.45, 0.60, None],
            "params": [10, 20, 5, 15, 20, 1],
            "clean": [0.80, 0.70, 0.90, 0.95, 0.70, 0.99],
        }
    )
    # Two objectives: D (0.45, 15) is dominated by A (0.50, 10); B and E are equal, both kept; F lacks
    # a value.
    front = pareto_front(df, {"robust": "max", "params": "min"})
    assert list(front["name"]) == ["B", "E", "A", "C"]
    # Adding clean accuracy rescues D (best clean).
    front3 = pareto_front(df, ["robust", "params:min", "clean"])
    assert set(front3["name"]) == {"A", "B", "C", "D", "E"}
    # A single objective: the best rows only.
    assert list(pareto_front(df, ["params:min"])["name"]) == ["F"]
    with pytest.raises(KeyError, match="nope"):
        pareto_front(df, ["nope"])
    with pytest.raises(ValueError, match="'max' or 'min'"):
        pareto_front(df, {"robust": "up"})


def test_rank_correlation_hand_computed():
    # One swapped pair among 4: 5 concordant, 1 discordant -> tau = 4/6; sum d^2 = 2 -> rho = 1 - 12/60.
    rc = rank_correlation([1, 2, 3, 4], [1, 3, 2, 4])
    assert rc["kendall_tau"] == pytest.approx(2 / 3) and rc["spearman_rho"] == pytest.approx(0.8)
    assert rc["n"] == 4
    assert rank_correlation([1, 2, 3], [30, 20, 10])["kendall_tau"] == pytest.approx(-1.0)
    # Series align on the config, not on position; configs missing on one side are dropped.
    a = pd.Series({"x": 0.1, "y": 0.2, "z": 0.3, "w": 0.4, "only_a": 0.9})
    b = pd.Series({"w": 4.0, "z": 2.0, "y": 3.0, "x": 1.0})
    rc = rank_correlation(a, b)
    assert rc["n"] == 4 and rc["kendall_tau"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="at least 2"):
        rank_correlation([1.0], [2.0])


def test_fidelity_correlation_and_top_k():
    configs = [f"{d}-1-1" for d in (1, 3, 5, 7, 9)]
    expensive = pd.DataFrame({"model.depths": configs, "best_robust_acc": [0.1, 0.2, 0.3, 0.4, 0.5]})
    cheap = pd.DataFrame({"model.depths": configs[::-1], "best_robust_acc": [0.5, 0.3, 0.4, 0.2, 0.1]})
    fc = fidelity_correlation(cheap, expensive, k=2)
    # cheap ranks 9-1-1 > 5-1-1 > 7-1-1 > 3-1-1 > 1-1-1: one swap among 5 -> tau = (9 - 1) / 10.
    assert fc["kendall_tau"] == pytest.approx(0.8) and fc["n"] == 5
    assert fc["top2_overlap"] == 1
    with_nan = expensive.assign(best_robust_acc=[0.1, None, 0.3, 0.4, 0.5])
    assert list(top_k(with_nan, 2)["model.depths"]) == ["9-1-1", "7-1-1"]
    assert list(top_k(with_nan, 1, mode="min")["model.depths"]) == ["1-1-1"]


def test_cost_totals():
    df = pd.DataFrame(
        {
            "wall_seconds": [3600.0, 1800.0],
            "cpus": [2.0, 1.0],
            "gpus": [0.5, 0.0],
            "epochs_run": [3, 1],
            "attack_passes_total": [10, None],
        }
    )
    t = cost_totals(df)
    assert t["trial_hours"] == pytest.approx(1.5) and t["cpu_hours"] == pytest.approx(2.5)
    assert t["gpu_hours"] == pytest.approx(0.5) and t["epochs"] == 4 and t["attack_passes"] == 10


def test_every_figure_renders_from_fixture_parquet(fixture_dir, tmp_path):
    res = load_sweep(fixture_dir)
    done = res.trials.dropna(subset=["best_robust_acc"])
    fig = plots.robustness_vs_params(done, tmp_path / "f1.png")
    offsets = fig.axes[0].collections[0].get_offsets()
    assert len(offsets) == 26 and len(fig.axes[0].texts) == 10  # 5 most + 5 least robust labelled
    fig = plots.stage_effect(done, "model.depths", tmp_path / "f2.png")
    # Panel 1: D1 varies, D2 = D3 = 3 (every full cross is there; 3-3-3 is nearest the medians).
    line = fig.axes[0].lines[0]
    assert list(line.get_xdata()) == [1, 3, 5]
    assert np.allclose(line.get_ydata(), [100 * robust_of(d, 3, 3) for d in DEPTHS])
    assert "stage 1" in fig.axes[0].get_title()
    fig = plots.stage_effect(done, "model.depths", base=(5, 5, 5))
    assert np.allclose(fig.axes[0].lines[0].get_ydata(), [100 * robust_of(d, 5, 5) for d in DEPTHS])
    plots.clean_vs_robust(done, tmp_path / "f3.png", label="model.arch")
    fig = plots.accuracy_curves(res.table("acc_vs_eps"), res.trials, tmp_path / "f4.png")
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 3  # pgd and fgsm panels, 3 trials each
    fig = plots.accuracy_curves(res.table("acc_vs_steps"), res.trials, tmp_path / "f5.png")
    assert fig.axes[0].get_xscale() == "log"
    plots.learning_curves(res.epochs, res.trials, tmp_path / "f6.png")
    plots.transfer_heatmap(res.table("transfer"), tmp_path / "f7.png")
    for i in range(1, 8):
        png = tmp_path / f"f{i}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_report_writes_figures_markdown_and_html(fixture_dir):
    files = write_report(fixture_dir)
    md = files["markdown"].read_text()
    assert "26 trials finished, 1 stopped early by the scheduler, 0 failed; 30 planned (partial sweep)" in md
    for heading in (
        "Top 10",
        "Pareto front",
        "Per-stage effect of model.depths",
        "Accuracy vs eps",
        "Accuracy vs PGD iterations",
        "Transfer attacks",
        "Sanity warnings",
        "Proxy fidelity",
        "Cost",
    ):
        assert heading in md, heading
    assert "0.075 GPU-hours" in md  # 27 trials x 10 s x 1 GPU
    assert "Kendall tau 1.000" in md  # epoch-1 validation accuracy is proportional to the final here
    html = files["html"].read_text()
    assert html.count("<img") == sum(1 for k in files if k not in ("markdown", "html"))
    for name, path in files.items():
        assert path.exists(), name
    assert (fixture_dir / "report" / "stage_effect_depths.png").exists()


def test_report_cli_compares_two_fidelities(fixture_dir, tmp_path):
    write_fixture(tmp_path / "cheap" / "wrn_depth_grid", fidelity="cheap")
    out = subprocess.run(
        [
            sys.executable,
            "sweep.py",
            "report",
            "wrn_depth_grid",
            "--results-dir",
            str(fixture_dir.parent),
            "--compare",
            str(tmp_path / "cheap" / "wrn_depth_grid"),
            "--out",
            str(tmp_path / "rep"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    md = (tmp_path / "rep" / "summary.md").read_text()
    assert "vs this sweep over 26 shared configs: Kendall tau 1.000" in md and "top-5 overlap 5/5" in md
    bad = subprocess.run(
        [sys.executable, "sweep.py", "report", "no_such_sweep", "--results-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        bad.returncode == 2 and bad.stderr.startswith("error: ") and "holds no trials.parquet" in bad.stderr
    )
