"""RNAS-CL end to end through sweep.py on the embedded default: teachers -> search -> training of the
derived student with its tutors -> evaluation; and a killed search that resumes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import kill_sweep_when, read_parquet

from tune_robust.cli import main
from tune_robust.models.oneshot import read_record
from tune_robust.models.rnascl import parse_channels


def test_teacher_search_train_through_sweep_py(tmp_path, capsys):
    common = ["--results-dir", str(tmp_path), "-q"]
    small = ["--set", "train.epochs=2"]
    assert main(["rnascl_teacher", *common, *small]) == 0, capsys.readouterr().err
    teachers = pd.read_parquet(tmp_path / "rnascl_teacher" / "trials.parquet")
    assert sorted(teachers["eval.label"]) == ["R-18", "WRT-34"]
    assert main(["rnascl_search", *common, *small, "--set", "data.train_limit=320"]) == 0, (
        capsys.readouterr().err
    )
    search = pd.read_parquet(tmp_path / "rnascl_search" / "trials.parquet").iloc[0]
    wrt = teachers.set_index("eval.label").loc["WRT-34"]
    assert search["upstream.teacher"] == wrt["checkpoint_path"]
    record = read_record(search["arch"])
    channels = parse_channels(record["model"]["channels"])
    assert [len(s) for s in channels] == [3, 3, 3] and record["model"]["arch"] == "rnascl_student"
    tutors = [int(t) for t in record["method"]["tutors"].split(",")]
    assert len(tutors) == 9

    assert main(["rnascl_train", *common, *small]) == 0, capsys.readouterr().err
    df = pd.read_parquet(tmp_path / "rnascl_train" / "trials.parquet").set_index("eval.label")
    assert len(df) == 2 and (df["status"] == "TERMINATED").all()
    trained = df.loc[f"rnascl_search:best ({search['trial_id']})"]
    assert trained["model.channels"] == record["model"]["channels"]
    assert trained["method.tutors"] == record["method"]["tutors"] and bool(trained["method.kl"])
    assert not bool(trained["method.cost"])  # Eq. 3: no cost term when training
    baseline = df.loc["widest, CE only"]
    assert not bool(baseline["method.kl"]) and baseline["params"] >= trained["params"]
    for attack in ("fgsm", "pgd20", "mim"):
        assert df[f"test_{attack}_acc"].between(0, 1).all()
    assert main(["report", str(tmp_path / "rnascl_search")]) == 0
    summary = (tmp_path / "rnascl_search" / "report" / "summary.md").read_text()
    assert record["method"]["tutors"] in summary  # markdown escapes the block bars:
    assert record["model"]["channels"].replace("|", "\\|") in summary
    assert (tmp_path / "rnascl_search" / "report" / "tutor_counts.png").stat().st_size > 0


@pytest.mark.slow
def test_a_killed_rnascl_search_resumes(tmp_path):
    root = Path(__file__).resolve().parents[1]

    def cmd(name: str, *extra: str) -> list[str]:
        return [sys.executable, str(root / "sweep.py"), name, "--results-dir", str(tmp_path), "-q", *extra]

    done = subprocess.run(
        cmd("rnascl_teacher", "--set", "train.epochs=1"), cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    search = cmd("rnascl_search", "--set", "train.epochs=15")  # the kill lands mid-search
    epochs = tmp_path / "rnascl_search" / "epochs.parquet"
    kill_sweep_when(search, lambda: len(read_parquet(epochs)) >= 2, 600, "epoch 2")
    resumed = subprocess.run([*search, "--resume"], cwd=root, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "rnascl_search" / "trials.parquet")
    assert len(trials) == 1 and trials["resumed_from_epoch"].iloc[0] >= 2
    assert sorted(pd.read_parquet(epochs)["epoch"]) == list(range(1, 16))
    assert "tutors" in read_record(trials["arch"].iloc[0])["method"]
