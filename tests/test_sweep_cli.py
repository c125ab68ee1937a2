"""sweep.py end to end: bad input, a small real sweep, Parquet validity, refusal to overwrite, failures."""

from __future__ import annotations

import pandas as pd
import pytest
from test_tracking import check_mlflow_runs, check_tensorboard_files, check_wandb_runs

from tune_robust.cli import main
from tune_robust.results import SCHEMA_VERSION


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args,message",
    [
        (["nope"], "unknown sweep 'nope'; known sweeps: arch_reconfig, arch_zoo_at, at_methods, evaluate"),
        (
            ["wrn_depth_grid", "--set", "train.epoch=3"],
            "unknown --set key 'train.epoch' (did you mean 'train.epochs'?)",
        ),
        (
            ["wrn_depth_gird"],
            "unknown sweep 'wrn_depth_gird' (did you mean 'wrn_depth_grid'?); known sweeps: ",
        ),
        (["wrn_depth_grid", "--set", "train.epochs=three"], "--set train.epochs expects int, got 'three'"),
        (["wrn_depth_grid", "--set", "attack.eps=-0.1"], "attack eps must be >= 0"),
        (["wrn_depth_grid", "--set", "model.depths=1,2"], "expects 3 comma-separated int values"),
        (["wrn_depth_grid", "--dataset", "cifar10", "--data-dir", "/nonexistent"], "cifar-10-batches-py"),
        (["wrn_depth_grid", "--fidelity", "huge"], "no fidelity 'huge'"),
        (["wrn_depth_grid", "--gpus-per-trial", "0.25"], "this machine has no CUDA GPU"),
        (["wrn_depth_grid", "--max-trials", "0"], "--max-trials must be >= 1"),
        (["wrn_depth_grid", "--track", "neptune"], "--track: unknown tracker 'neptune'; choose from mlflow"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(capsys, tmp_path, args, message):
    code, _out, err = run_cli(capsys, *args, "--results-dir", str(tmp_path))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert message in err
    assert not (tmp_path / "wrn_depth_grid").exists()  # nothing started, nothing written


def test_dry_run_lists_all_125_depth_configs(capsys):
    code, out, _ = run_cli(capsys, "wrn_depth_grid", "--dry-run")
    assert code == 0 and out.strip().endswith("125 trials")
    assert "model.depths=(9, 7, 1)" in out and "model.depths=(1, 1, 1)" in out


def test_max_trials_3_end_to_end_then_refuse_to_overwrite(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # (Ray starts after this: its workers inherit it)
    code, out, err = run_cli(
        capsys,
        "wrn_depth_grid",
        "--max-trials",
        "3",
        "--results-dir",
        str(tmp_path),
        *("--track", "mlflow", "--track", "tensorboard", "--track", "wandb"),
    )
    assert code == 0, err
    # The console by default: one progress line (in a log: its final state), the warnings and the
    # summary; none of Ray's per-trial tables, its experiment box, its start-up and token notices.
    final = [line for line in err.splitlines() if line.startswith("trials ")][-1]
    assert final.startswith("trials 3/3 done | 0 running | 0 left | best val_robust_acc 0."), final
    for ray_output in ("Trial status", "Trial name", "Configuration for experiment", "View detailed results"):
        assert ray_output not in out + err, ray_output
    assert "Token authentication" not in err and "Started a local Ray instance" not in err
    assert out.startswith("\n3 trials finished, 0 failed"), out[:200]
    d = tmp_path / "wrn_depth_grid"
    trials = pd.read_parquet(d / "trials.parquet")
    epochs = pd.read_parquet(d / "epochs.parquet")
    assert len(trials) == 3 and trials["trial_id"].is_unique
    assert (trials["status"] == "TERMINATED").all() and trials["error"].isna().all()
    assert (trials["schema_version"] == SCHEMA_VERSION).all()
    assert sorted(trials["model.depths"]) == ["1-1-1", "1-1-3", "1-1-5"]
    assert (trials["epochs_run"] == 5).all() and (trials["params"] > 0).all() and (trials["macs"] > 0).all()
    for col in ("final_clean_acc", "final_robust_acc", "best_clean_acc", "best_robust_acc"):
        assert trials[col].between(0, 1).all()
    assert (trials["best_robust_acc"] <= trials["best_clean_acc"]).all()
    assert trials["eval_attack"].str.startswith("pgd10-linf-eps0.1").all()
    assert trials["best_clean_acc"].max() > 0.9  # smoke results still mean something
    assert trials["best_robust_acc"].max() > 0.3
    assert all(__import__("os").path.exists(p) for p in trials["checkpoint_path"])
    assert len(epochs) == 15 and not epochs.duplicated(["trial_id", "epoch"]).any()
    # The evaluation suite's columns (smoke: FGSM + PGD-20 on the test set) and sanity flags
    for col in ("test_clean_acc", "test_fgsm_acc", "test_pgd20_acc", "test_worst_acc", "stability_pgd20"):
        assert trials[col].between(0, 1).all(), col
    assert (trials["test_worst_acc"] <= trials[["test_fgsm_acc", "test_pgd20_acc"]].min(axis=1)).all()
    assert (trials["test_clean_acc"] == trials["best_clean_acc"]).all()  # same (best) weights
    assert (trials["lipschitz_logits"] > 0).all()
    assert trials["sanity_eps0"].all() and trials["sanity_bn_unchanged"].all()
    assert trials["suspect_gradient_masking"].notna().all()
    lip = pd.read_parquet(d / "lipschitz.parquet")
    assert set(lip["trial_id"]) == set(trials["trial_id"]) and (lip["label"] == "logits").sum() == 3
    assert "top configs by best_robust_acc" in out and "trials.parquet" in out

    # --track: the same trials as MLflow runs and TensorBoard event files (tests/test_tracking.py)
    check_mlflow_runs(tmp_path, trials, epochs=5)
    check_tensorboard_files(tmp_path, trials, epochs=5)
    check_wandb_runs(tmp_path, trials, epochs=5)

    before = (d / "trials.parquet").read_bytes()
    code, _, err = run_cli(capsys, "wrn_depth_grid", "--max-trials", "3", "--results-dir", str(tmp_path))
    assert code == 2 and "pass --resume" in err
    assert (d / "trials.parquet").read_bytes() == before


@pytest.mark.slow  # default run under 10 minutes (CI runs it with the slow tests)
def test_failing_trials_are_retried_then_recorded(capsys, tmp_path):
    code, out, err = run_cli(
        capsys,
        "wrn_depth_grid",
        "--max-trials",
        "2",
        "--set",
        "train.lr=1e12",
        "--set",
        "train.epochs=2",
        "--max-failures",
        "1",
        "--results-dir",
        str(tmp_path),
        "-q",
    )
    assert code == 0, err
    trials = pd.read_parquet(tmp_path / "wrn_depth_grid" / "trials.parquet")
    assert len(trials) == 2 and (trials["status"] == "ERROR").all()
    assert trials["error"].str.contains("non-finite training loss").all()
    assert (trials["failures"] == 2).all()  # the first try plus one retry
    assert "0 trials finished, 2 failed" in out


def test_console_script_and_module_entry_point(tmp_path):
    """`tune-robust` and `python -m tune_robust` are sweep.py's interface, from any directory."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "tune-robust"
    for cmd in ([str(script)], [sys.executable, "-m", "tune_robust"]):
        out = subprocess.run([*cmd, "--list"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "wrn_depth_grid" in out.stdout and "arch_reconfig" in out.stdout
        bad = subprocess.run(
            [*cmd, "no_such_sweep"], capture_output=True, text=True, cwd=tmp_path, timeout=120
        )
        assert bad.returncode == 2 and bad.stderr.count("error:") == 1
