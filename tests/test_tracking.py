"""--track mlflow / tensorboard: one run per trial, read back with MLflow's client and TensorBoard's event
reader, carrying the trial's config, every epoch's metrics and the final evaluation suite."""

from __future__ import annotations

import pandas as pd
import pytest

from tune_robust.cli import main

EPOCHS = 2


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    results = tmp_path_factory.mktemp("tracked")
    code = main(
        [
            "wrn_depth_grid",
            "--max-trials",
            "2",
            "--set",
            f"train.epochs={EPOCHS}",
            "--results-dir",
            str(results),
            "--track",
            "mlflow",
            "--track",
            "tensorboard",
            "-q",
        ]
    )
    assert code == 0
    return results, pd.read_parquet(results / "wrn_depth_grid" / "trials.parquet")


def test_one_mlflow_run_per_trial_with_config_epochs_and_the_final_suite(tracked):
    from mlflow.tracking import MlflowClient

    results, trials = tracked
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("wrn_depth_grid")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(trials) == 2
    assert {r.info.status for r in runs} == {"FINISHED"}
    by_depths = {r.data.params["model/depths"]: r for r in runs}  # (Ray flattens the config with /)
    for _, row in trials.iterrows():
        run = by_depths[str(tuple(int(d) for d in row["model.depths"].split("-")))]
        history = client.get_metric_history(run.info.run_id, "val_robust_acc")
        assert len(history) >= EPOCHS  # one value per epoch (the last report repeats the last epoch)
        assert run.data.metrics["test_pgd20_acc"] == pytest.approx(row["test_pgd20_acc"])
        assert run.data.params["train/epochs"] == str(EPOCHS)


def test_one_tensorboard_event_file_per_trial_with_epochs_and_the_final_suite(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results, trials = tracked
    files = sorted((results / "wrn_depth_grid" / "tune").glob("*/events.out.tfevents.*"))
    assert len(files) == len(trials)
    for f in files:
        acc = EventAccumulator(str(f))
        acc.Reload()
        tags = acc.Tags()["scalars"]
        epochs = [e.value for e in acc.Scalars("ray/tune/epoch")]
        assert epochs[:EPOCHS] == [float(e) for e in range(1, EPOCHS + 1)]
        assert "ray/tune/val_robust_acc" in tags and "ray/tune/test_pgd20_acc" in tags


def test_an_unknown_tracker_is_one_clear_error_before_anything_starts(capsys, tmp_path):
    code = main(["wrn_depth_grid", "--track", "wandb", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --track: unknown tracker 'wandb'; choose from mlflow")
    assert not (tmp_path / "wrn_depth_grid").exists()
