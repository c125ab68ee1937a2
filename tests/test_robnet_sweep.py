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


def test_supernet_then_finetunes_through_sweep_py(tmp_path, capsys):
    common = ["--results-dir", str(tmp_path), "-q"]
    assert main(["robnet_supernet", *common]) == 0, capsys.readouterr().err
    supernet = pd.read_parquet(tmp_path / "robnet_supernet" / "trials.parquet")
    assert (supernet["status"] == "TERMINATED").all() and "arch" not in supernet  # not one architecture
    assert main(["robnet_finetune", *common]) == 0, capsys.readouterr().err
    df = pd.read_parquet(tmp_path / "robnet_finetune" / "trials.parquet")
    assert len(df) == 3 and (df["status"] == "TERMINATED").all()
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


@pytest.mark.slow
def test_killed_supernet_and_finetune_sweeps_resume(tmp_path):
    """SIGKILL the driver mid-supernet (its sampler state is in the checkpoint) and mid-finetune, then
    --resume each: nothing lost, nothing twice, the supernet continued from its epoch checkpoint."""
    root = Path(__file__).resolve().parents[1]

    def cmd(name: str, *extra: str) -> list[str]:
        return [sys.executable, str(root / "sweep.py"), name, "--results-dir", str(tmp_path), "-q", *extra]

    sup = tmp_path / "robnet_supernet"
    supernet = cmd("robnet_supernet", "--set", "train.epochs=5")
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
