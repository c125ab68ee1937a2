"""Experiment tracking researchers already use, through Ray Tune's own logger callbacks: one MLflow run
and one TensorBoard event file per trial, with the trial's config, its per-epoch metrics and (in the
last report) the final evaluation suite.

- ``mlflow``: Ray's ``MLflowLoggerCallback``. The tracking URI defaults to a local SQLite store in the
  results directory (``sqlite:///<results-dir>/mlflow.db``; MLflow 3 keeps its file store in
  maintenance mode); ``--mlflow-uri`` names a server (``http://HOST:5000``) or another store. Needs the
  ``[tracking]`` extra (mlflow-skinny with SQLAlchemy). The experiment is the sweep's name.
- ``tensorboard``: Ray's ``TBXLoggerCallback``: ``events.out.tfevents.*`` in each trial's directory under
  ``<results-dir>/<sweep>/tune/`` (``tensorboard --logdir <results-dir>/<sweep>/tune``).

Parquet stays the record of results; these are views of the same reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tune_robust.errors import ConfigError

TRACKERS = ("mlflow", "tensorboard")


def default_mlflow_uri(results_dir: str | Path) -> str:
    return f"sqlite:///{(Path(results_dir).expanduser() / 'mlflow.db').resolve()}"


def check_tracking(track: tuple[str, ...]) -> None:
    """Known tracker names, and MLflow importable when asked for (before Ray starts)."""
    unknown = [t for t in track if t not in TRACKERS]
    if unknown:
        raise ConfigError(f"--track: unknown tracker {unknown[0]!r}; choose from {', '.join(TRACKERS)}")
    if "mlflow" in track:
        try:
            import mlflow  # noqa: F401
            import sqlalchemy  # noqa: F401
        except ImportError as e:
            raise ConfigError(
                f"--track mlflow needs the [tracking] extra ({e.name} is missing): "
                "pip install -e '.[tracking]'"
            ) from None


def tracking_callbacks(
    track: tuple[str, ...], mlflow_uri: str | None, results_dir: str | Path, sweep: str, fidelity: str
) -> list[Any]:
    """Ray Tune logger callbacks for the requested trackers."""
    check_tracking(track)
    out: list[Any] = []
    if "tensorboard" in track:
        from ray.tune.logger import TBXLoggerCallback

        out.append(TBXLoggerCallback())
    if "mlflow" in track:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        out.append(
            MLflowLoggerCallback(
                tracking_uri=mlflow_uri or default_mlflow_uri(results_dir),
                experiment_name=sweep,
                tags={"sweep": sweep, "fidelity": fidelity},
            )
        )
    return out
