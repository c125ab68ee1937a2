"""--track mlflow / tensorboard / wandb: one run per trial, read back with MLflow's client, TensorBoard's
event reader and (W&B offline) the run files' records, carrying the trial's config, every epoch's
metrics and the final evaluation suite.

The sweep these read is the one of tests/test_sweep_cli.py's end-to-end test (run there once, with
``--track mlflow --track tensorboard --track wandb``, to keep the default run short); an unknown tracker
is among its bad-input cases.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def read_wandb_records(path: Path) -> list[Any]:
    """The records of an offline W&B run file (``run-<id>.wandb``): a 7-byte header (``:W&B``, magic,
    version), then LevelDB-style log blocks of 32 KiB whose chunks (CRC, little-endian length, type:
    1 full, 2 first, 3 middle, 4 last) carry W&B's ``Record`` protocol buffers."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    pos, block, pending, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def check_wandb_runs(results: Path, trials: pd.DataFrame, epochs: int) -> None:
    """One offline run per trial under <results>/<sweep>/wandb/: its config, a history row per epoch
    report and the final suite's metrics in the last one."""
    sweep = str(trials["sweep"].iloc[0])
    files = sorted((results / sweep / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == len(trials)
    by_trial = {}
    for f in files:
        records = read_wandb_records(f)
        kinds = [r.WhichOneof("record_type") for r in records]
        config = {
            i.key: json.loads(i.value_json) for r in records if r.HasField("config") for i in r.config.update
        }
        history = [
            {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for r in records
            if r.HasField("history")
        ]
        assert "run" in kinds and "exit" in kinds, kinds  # started and finished
        by_trial[config["trial_id"]] = (config, history)
    for _, row in trials.iterrows():
        config, history = by_trial[row["trial_id"]]
        assert config["train"]["epochs"] == epochs
        assert config["model"]["depths"] == [int(d) for d in row["model.depths"].split("-")]
        seen = [h["val_robust_acc"] for h in history if "val_robust_acc" in h]
        assert len(seen) >= epochs  # every epoch (the last report repeats the last epoch)
        assert history[-1]["test_pgd20_acc"] == pytest.approx(row["test_pgd20_acc"])


def test_wandb_online_without_a_key_is_refused_before_anything_is_written(capsys, tmp_path, monkeypatch):
    from tune_robust.cli import main

    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.chdir(tmp_path)
    args = ["wrn_depth_grid", "--track", "wandb", "--results-dir", str(tmp_path / "results")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --track wandb: no W&B key") and err.count("\n") == 1
    assert not (tmp_path / "results" / "wrn_depth_grid").exists()
    # `wandb login` writes the key into the netrc file; then planning goes on (a dry run here)
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password x" + "0" * 39 + "\n")
    (tmp_path / "netrc").chmod(0o600)
    assert main([*args, "--dry-run"]) == 0
    capsys.readouterr()
