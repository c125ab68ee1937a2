"""RobNet's search end to end through sweep.py on the embedded default: supernet, then finetunes of
sampled architectures that inherit its weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import kill_sweep_when, read_parquet

from tune_robust.cli import main
from tune_robust.models.checkpoint import resolve_path
from tune_robust.models.oneshot import read_record
from tune_robust.models.robnet_codes import arch_stats, parse_code
from tune_robust.run import RunOptions, plan


def test_supernet_then_finetunes_through_sweep_py(tmp_path, capsys):
    common = ["--results-dir", str(tmp_path), "-q"]
    # Before the supernet exists, the dry run stops with the run's own one-line error.
    assert main(["robnet_finetune", *common]) == 2
    missing = capsys.readouterr().err
    assert main(["robnet_finetune", "--dry-run", *common]) == 2
    assert capsys.readouterr().err == missing and "run `python sweep.py robnet_supernet` first" in missing
    assert main(["robnet_supernet", *common]) == 0, capsys.readouterr().err
    supernet = pd.read_parquet(tmp_path / "robnet_supernet" / "trials.parquet")
    assert (supernet["status"] == "TERMINATED").all() and "arch" not in supernet  # not one architecture
    assert sorted(supernet["model.share"]) == [False, True]  # cell-free and cell-based
    capsys.readouterr()
    assert main(["robnet_finetune", "--dry-run", *common]) == 0
    dry = capsys.readouterr().out
    planned = plan("robnet_finetune", RunOptions(results_dir=str(tmp_path)))
    assert main(["robnet_finetune", *common]) == 0, capsys.readouterr().err
    df = pd.read_parquet(tmp_path / "robnet_finetune" / "trials.parquet")
    assert len(df) == 3 and (df["status"] == "TERMINATED").all()
    # The dry run listed exactly the trials the run started: count, codes and the inherited supernet.
    assert dry.endswith("\n3 trials\n") and planned.num_trials == len(df)
    ran = sorted(zip(df["model.code"], df["upstream.init"], strict=True))
    assert ran == sorted((c["model"]["code"], c["upstream"]["init"]) for c in planned.configs)
    assert all(f"upstream.init = {init}" in dry for _, init in ran[:1])
    assert (df["upstream.init"].map(lambda p: Path(p).parents[1].name) != "").all()
    assert df["upstream.init"].str.contains("robnet_supernet").all()
    for _, row in df.iterrows():
        record = read_record(row["arch"])
        assert record["model"]["code"] == row["model.code"]
        stats = arch_stats(parse_code(row["model.code"]))
        assert row["arch_sep_convs"] == stats["arch_sep_convs"] and stats["arch_density"] >= 0.5
        on_disk = json.loads((resolve_path(row["checkpoint_path"]).parent / "arch.json").read_text())
        assert on_disk == record
    assert sorted(df["arch_sep_convs"]) == [7, 10, 13]  # one per budget
    assert df["best_robust_acc"].between(0, 1).all()
    assert "arch_sep_convs" in capsys.readouterr().out  # the closing table ranks per budget


@pytest.mark.slow
def test_the_whole_chain_supernet_finetune_free_search_retrain_transfer_report(tmp_path, capsys):
    """Supernets -> finetunes per budget and the FSP-screened cell-free search -> the winners and
    RobNet-large's code retrained from scratch -> their transfer matrix -> the report's figures."""
    common = ["--results-dir", str(tmp_path), "-q"]
    for name in (
        "robnet_supernet",
        "robnet_finetune",
        "robnet_free_search",
        "robnet_retrain",
        "robnet_transfer",
    ):
        assert main([name, *common]) == 0, capsys.readouterr().err
    free = pd.read_parquet(tmp_path / "robnet_free_search" / "trials.parquet")
    assert len(free) == 4 and (free["status"] == "TERMINATED").all()
    assert free["upstream.init"].str.contains("robnet_supernet").all()
    out = free["screened_out"].astype(bool)
    threshold = free["screen.fsp_threshold"].iloc[0]
    assert (free.loc[out, "fsp_distance"] > threshold).all() and free.loc[out, "best_robust_acc"].isna().all()
    assert (free.loc[~out, "fsp_distance"] <= threshold).all()
    assert free.loc[~out, "best_robust_acc"].between(0, 1).all() and (~out).any() and out.any()
    last3 = free[["fsp_cell_2", "fsp_cell_3", "fsp_cell_4"]].mean(axis=1)
    assert free["fsp_distance"].to_numpy() == pytest.approx(last3.to_numpy())
    assert (free.loc[out, "attack_passes_total"] > 0).all()  # the screen's cost is counted

    fin = pd.read_parquet(tmp_path / "robnet_finetune" / "trials.parquet")
    retrain = pd.read_parquet(tmp_path / "robnet_retrain" / "trials.parquet").set_index("eval.label")
    assert len(retrain) == 5 and (retrain["status"] == "TERMINATED").all()
    for _, row in fin.iterrows():  # one trial per budget: each is its budget's winner
        label = f"robnet_finetune:arch_sep_convs:{row['arch_sep_convs']:g} ({row['trial_id']})"
        assert retrain.loc[label, "model.code"] == row["model.code"]
    best_free = free.loc[free["best_robust_acc"].idxmax()]
    assert (
        retrain.loc[f"robnet_free_search:best ({best_free['trial_id']})", "model.code"]
        == best_free["model.code"]
    )
    assert retrain["upstream.init"].isna().all() if "upstream.init" in retrain else True  # from scratch
    assert (retrain["epochs_run"] == 4).all() and retrain["best_robust_acc"].between(0, 1).all()

    matrix = pd.read_parquet(tmp_path / "robnet_transfer" / "transfer.parquet")
    assert matrix.groupby("source")["target"].nunique().eq(5).all() and matrix["source"].nunique() == 5

    for name, figures in (
        ("robnet_finetune", ["density_vs_robust.png", "budget_direct.png", "best_cell.png"]),
        ("robnet_free_search", ["fsp_vs_gap.png", "best_cell.png"]),
    ):
        assert main(["report", str(tmp_path / name)]) == 0
        report = tmp_path / name / "report"
        assert all((report / f).stat().st_size > 0 for f in figures)
    assert (
        "passed the FSP-distance screen"
        in (tmp_path / "robnet_free_search" / "report" / "summary.md").read_text()
    )


@pytest.mark.slow
def test_killed_supernet_and_finetune_sweeps_resume(tmp_path):
    """SIGKILL the driver mid-supernet (its sampler state is in the checkpoint) and mid-finetune, then
    --resume each: nothing lost, nothing twice, the supernet continued from its epoch checkpoint."""
    root = Path(__file__).resolve().parents[1]

    def cmd(name: str, *extra: str) -> list[str]:
        return [sys.executable, str(root / "sweep.py"), name, "--results-dir", str(tmp_path), "-q", *extra]

    sup = tmp_path / "robnet_supernet"
    supernet = cmd("robnet_supernet", "--set", "train.epochs=5", "--set", "model.share=true")
    kill_sweep_when(supernet, lambda: len(read_parquet(sup / "epochs.parquet")) >= 2, 300, "epoch 2")
    resumed = subprocess.run([*supernet, "--resume"], cwd=root, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials, epochs = pd.read_parquet(sup / "trials.parquet"), pd.read_parquet(sup / "epochs.parquet")
    assert len(trials) == 1 and trials["resumed_from_epoch"].iloc[0] > 0
    assert sorted(epochs["epoch"]) == [1, 2, 3, 4, 5]

    fin = tmp_path / "robnet_finetune"
    finetune = cmd("robnet_finetune", "--set", "train.epochs=3")
    kill_sweep_when(finetune, lambda: len(read_parquet(fin / "trials.parquet")) >= 1, 400, "a finished trial")
    before = set(read_parquet(fin / "trials.parquet")["trial_id"])
    resumed = subprocess.run([*finetune, "--resume"], cwd=root, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    df = pd.read_parquet(fin / "trials.parquet")
    assert len(df) == 3 and df["trial_id"].is_unique and before <= set(df["trial_id"])
    assert (df["status"] == "TERMINATED").all()
    assert not pd.read_parquet(fin / "epochs.parquet").duplicated(["trial_id", "epoch"]).any()
