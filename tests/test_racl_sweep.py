"""RACL's search end to end through sweep.py on the embedded default (search -> derive -> retrain ->
evaluate), and a search that resumes with its architecture state intact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import kill_sweep_when, read_parquet

from tune_robust.cli import main
from tune_robust.config import TrialConfig
from tune_robust.models.checkpoint import resolve_path
from tune_robust.models.darts import parse_genotype
from tune_robust.models.oneshot import read_record
from tune_robust.search_spaces.racl import SEARCH_SMOKE
from tune_robust.training.loop import Trainer

SHRINK = ["--set", "data.train_limit=320", "--set", "train.epochs=2"]


def test_search_derive_retrain_evaluate_through_sweep_py(tmp_path, capsys):
    common = ["--results-dir", str(tmp_path), "-q"]
    assert main(["racl_search", *common, *SHRINK]) == 0, capsys.readouterr().err
    search = pd.read_parquet(tmp_path / "racl_search" / "trials.parquet")
    assert len(search) == 1 and search["status"].iloc[0] == "TERMINATED"
    row = search.iloc[0]
    record = read_record(row["arch"])
    genotype = parse_genotype(record["model"]["genotype"])
    assert record["space"] == "darts" and record["model"]["arch"] == "darts"
    assert row["arch_normal_convs"] == sum("conv" in op for op, _ in genotype.normal)
    on_disk = json.loads((resolve_path(row["checkpoint_path"]).parent / "arch.json").read_text())
    assert on_disk == record
    epochs = pd.read_parquet(tmp_path / "racl_search" / "epochs.parquet").sort_values("epoch")
    assert epochs["search_arch_steps"].tolist() == [0, 5]  # one warm-up epoch, then 160/32 architecture steps
    assert epochs["search_constraint"].iloc[-1] == pytest.approx(float(epochs["search_constraint"].iloc[-1]))

    retrain = ["racl_retrain", *common, "--set", "train.epochs=1", "--set", "data.train_limit=320"]
    assert main(retrain) == 0, capsys.readouterr().err
    df = pd.read_parquet(tmp_path / "racl_retrain" / "trials.parquet").set_index("eval.label")
    assert len(df) == 2 and (df["status"] == "TERMINATED").all()
    searched = df.loc[f"racl_search:best ({row['trial_id']})"]
    assert searched["model.genotype"] == record["model"]["genotype"] and searched["model.channels"] == 8
    assert df.loc["published:RACL", "model.genotype"] == "RACL"
    for attack in ("fgsm", "mim", "pgd10"):
        assert df[f"test_{attack}_acc"].between(0, 1).all()
    assert (df["arch"].map(lambda a: read_record(a)["space"]) == "darts").all()  # retrained genotypes
    assert main(["report", str(tmp_path / "racl_retrain")]) == 0
    summary = (tmp_path / "racl_retrain" / "report" / "summary.md").read_text()
    assert "Genotypes (best first)" in summary
    assert record["model"]["genotype"].replace("|", "\\|") in summary  # markdown escapes the cell bars
    assert (tmp_path / "racl_retrain" / "report" / "best_genotype.png").stat().st_size > 0


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    net = trainer.model
    out = {k: v.clone() for k, v in net.state_dict().items() if isinstance(v, torch.Tensor)}
    out.update({f"power:{k}": v.clone() for k, v in net.power.items()})  # type: ignore[union-attr]
    return out


def test_a_restored_search_continues_exactly(tmp_path):
    """Save after an epoch with architecture steps, restore into a fresh trainer: mu, sigma, theta, the
    power-iteration vectors, the architecture optimiser and its batch generator come back, and the next
    epoch is the one the uninterrupted trainer runs."""
    torch.set_num_threads(1)
    cfg = {**SEARCH_SMOKE, "data": {**SEARCH_SMOKE["data"], "train_limit": 256}}
    cfg["model"] = {**cfg["model"], "layers": 4}
    cfg["arch_step"] = {**cfg["arch_step"], "warmup_epochs": 0}
    first = Trainer(TrialConfig.from_dict(cfg))
    first.run_epoch()
    first.save(tmp_path)
    saved = _state(first)
    assert float(first.model.theta) != 0.0 and len(first.model.power) > 0  # type: ignore[union-attr]
    second = Trainer(TrialConfig.from_dict(cfg))
    second.load(tmp_path)
    restored = _state(second)
    assert saved.keys() == restored.keys()
    assert all(torch.equal(saved[k], restored[k]) for k in saved)
    a, b = first.run_epoch(), second.run_epoch()
    for key in ("search_constraint", "search_theta", "train_loss"):
        assert a[key] == pytest.approx(b[key], rel=1e-6)
    assert torch.equal(first.model.mu_alpha, second.model.mu_alpha)


@pytest.mark.slow
def test_a_killed_search_resumes_from_its_epoch(tmp_path):
    """SIGKILL the driver after an epoch with architecture steps, then --resume: the trial continues
    from its checkpoint (no epoch twice) and ends with a derived genotype."""
    root = Path(__file__).resolve().parents[1]
    search = [sys.executable, str(root / "sweep.py"), "racl_search", "--results-dir", str(tmp_path), "-q"]
    search += ["--set", "train.epochs=8", "--set", "data.train_limit=320"]  # the kill lands mid-search
    epochs = tmp_path / "racl_search" / "epochs.parquet"
    kill_sweep_when(search, lambda: len(read_parquet(epochs)) >= 2, 600, "epoch 2")
    resumed = subprocess.run([*search, "--resume"], cwd=root, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "racl_search" / "trials.parquet")
    assert len(trials) == 1 and trials["resumed_from_epoch"].iloc[0] >= 2
    df = pd.read_parquet(epochs)
    assert sorted(df["epoch"]) == list(range(1, 9))
    assert read_record(trials["arch"].iloc[0])["space"] == "darts"
