"""Experiment tracking researchers already use, through Ray Tune's own logger callbacks: one MLflow run
and one TensorBoard event file per trial, with the trial's config, its per-epoch metrics and (in the
last report) the final evaluation suite.

- ``mlflow``: Ray's ``MLflowLoggerCallback``. The tracking URI defaults to a local SQLite store in the
  results directory (``sqlite:///<results-dir>/mlflow.db``; MLflow 3 keeps its file store in
  maintenance mode); ``--mlflow-uri`` names a server (``http://HOST:5000``) or another store. Needs the
  ``[tracking]`` extra (mlflow-skinny with SQLAlchemy). The experiment is the sweep's name.
- ``wandb``: Ray's ``WandbLoggerCallback`` (one W&B run per trial, grouped by sweep). Project and entity
  from ``--wandb-project`` / ``--wandb-entity``, else W&B's ``WANDB_PROJECT`` / ``WANDB_ENTITY``, else
  the project ``tune_robust``; ``WANDB_MODE=offline`` (or ``wandb offline``) writes the runs locally
  for a later ``wandb sync``. Run files go to ``<results-dir>/<sweep>/wandb/``. Needs the ``[wandb]``
  extra and, online, a key (``wandb login`` or ``WANDB_API_KEY``).
- ``tensorboard``: Ray's ``TBXLoggerCallback``: ``events.out.tfevents.*`` in each trial's directory under
  ``<results-dir>/<sweep>/tune/`` (``tensorboard --logdir <results-dir>/<sweep>/tune``).

Parquet stays the record of results; these are views of the same reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tune_robust.errors import ConfigError

TRACKERS = ("mlflow", "tensorboard", "wandb")
DEFAULT_WANDB_PROJECT = "tune_robust"
# Per-trial tables (eval curves, Lipschitz per block) stay in Parquet: W&B logs scalars per step.
_NOT_LOGGED = ["eval_tables"]


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
    if "wandb" in track:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ConfigError("--track wandb needs the [wandb] extra: pip install -e '.[wandb]'") from None
        if not wandb_can_log():
            raise ConfigError(
                "--track wandb: no W&B key (no WANDB_API_KEY, no `wandb login` entry in ~/.netrc); run "
                "`wandb login`, set WANDB_API_KEY, or log locally with WANDB_MODE=offline"
            )


def wandb_can_log() -> bool:
    """Whether W&B runs will start without asking: offline or disabled (WANDB_MODE, or ``wandb offline``
    in W&B's settings files), a key in WANDB_API_KEY, or the ``~/.netrc`` entry ``wandb login`` writes
    for its host. Checked before anything is written, not in Ray's callback after the sweep began."""
    import configparser
    import netrc
    import os
    from urllib.parse import urlparse

    quiet = ("offline", "disabled", "dryrun")
    if os.environ.get("WANDB_MODE", "").lower() in quiet or os.environ.get("WANDB_API_KEY"):
        return True
    config_dir = os.environ.get("WANDB_CONFIG_DIR") or str(Path("~/.config/wandb").expanduser())
    for settings in (
        Path(config_dir) / "settings",
        Path(os.environ.get("WANDB_DIR", ".")) / "wandb" / "settings",
    ):
        parser = configparser.ConfigParser()
        try:
            parser.read(settings)
        except configparser.Error:
            continue
        if parser.get("default", "mode", fallback="").lower() in quiet:
            return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def tracking_callbacks(
    track: tuple[str, ...],
    mlflow_uri: str | None,
    results_dir: str | Path,
    sweep: str,
    fidelity: str,
    wandb: tuple[str | None, str | None] = (None, None),
) -> list[Any]:
    """Ray Tune logger callbacks for the requested trackers (``wandb``: project and entity options)."""
    check_tracking(track)
    out: list[Any] = []
    if "wandb" in track:
        out.append(wandb_callback(results_dir, sweep, fidelity, *wandb))
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


def wandb_callback(
    results_dir: str | Path, sweep: str, fidelity: str, project: str | None, entity: str | None
) -> Any:
    """Ray's W&B callback: one run per trial in ``project`` (option, else ``WANDB_PROJECT``, else
    ``tune_robust``), grouped by sweep, tagged with the fidelity, its files under the sweep's folder."""
    import os

    from ray.air.integrations.wandb import WandbLoggerCallback

    folder = Path(results_dir).expanduser().resolve() / sweep  # W&B writes its wandb/ folder in it
    folder.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {"entity": entity} if entity else {}
    return WandbLoggerCallback(
        project=project or os.environ.get("WANDB_PROJECT") or DEFAULT_WANDB_PROJECT,
        group=sweep,
        excludes=_NOT_LOGGED,
        tags=[sweep, fidelity],
        dir=str(folder),
        **extra,
    )
