"""--track mlflow / tensorboard: one run per trial, read back with MLflow's client and TensorBoard's event
reader, carrying the trial's config, every epoch's metrics and the final evaluation suite.

The sweep these read is the one of tests/test_sweep_cli.py's end-to-end test (run there once, with
``--track mlflow --track tensorboard``, to keep the default run short); an unknown tracker is among its
bad-input cases.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest


def check_mlflow_runs(results: Path, trials: pd.DataFrame, epochs: int) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(str(trials["sweep"].iloc[0]))
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(trials)
    assert {r.info.status for r in runs} == {"FINISHED"}
    by_depths = {r.data.params["model/depths"]: r for r in runs}  # (Ray flattens the config with /)
    for _, row in trials.iterrows():
        run = by_depths[str(tuple(int(d) for d in row["model.depths"].split("-")))]
        history = client.get_metric_history(run.info.run_id, "val_robust_acc")
        assert len(history) >= epochs  # every epoch (the last report repeats the last epoch)
        assert run.data.metrics["test_pgd20_acc"] == pytest.approx(row["test_pgd20_acc"])
        assert run.data.params["train/epochs"] == str(epochs)


def check_tensorboard_files(results: Path, trials: pd.DataFrame, epochs: int) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sweep = str(trials["sweep"].iloc[0])
    files = sorted((results / sweep / "tune").glob("*/events.out.tfevents.*"))
    assert len(files) == len(trials)
    for f in files:
        acc = EventAccumulator(str(f))
        acc.Reload()
        tags = acc.Tags()["scalars"]
        seen = [e.value for e in acc.Scalars("ray/tune/epoch")]
        assert seen[:epochs] == [float(e) for e in range(1, epochs + 1)]
        assert "ray/tune/val_robust_acc" in tags and "ray/tune/test_pgd20_acc" in tags
