"""What a run is asked to do (``RunOptions``) and what planning resolved it to (``Plan``): data only."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tune_robust.sweeps import SweepSpec

SWEEP_FILE = "sweep.json"
TUNE_DIR = "tune"


@dataclass(frozen=True)
class RunOptions:
    """Options of one ``sweep.py`` invocation (see ``sweep.py --help`` for each)."""

    fidelity: str = "smoke"
    dataset: str | None = None
    data_dir: str | None = None
    download: bool = False
    sets: tuple[str, ...] = ()
    max_trials: int | None = None
    # Every grid point trained once per seed (train.seed), e.g. (0, 1, 2); empty: the sweep's own.
    seeds: tuple[int, ...] = ()
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    memory_per_trial: float | None = None  # GiB Ray reserves per trial (default: none declared)
    address: str | None = None
    results_dir: str = "results"
    resume: bool = False
    max_failures: int = 0
    dry_run: bool = False
    # 0: warnings and the summary; 1: plus one live progress line; 2: Ray Tune's per-trial tables
    # instead; 3: Ray's most detailed output and the trials' own logs.
    verbose: int = 1
    # Experiment trackers (tune_robust.results.tracking: mlflow, tensorboard) and MLflow's tracking URI
    # (default: sqlite:///<results_dir>/mlflow.db).
    track: tuple[str, ...] = ()
    mlflow_uri: str | None = None
    # --track wandb: W&B project and entity (default: WANDB_PROJECT / WANDB_ENTITY, else tune_robust).
    wandb_project: str | None = None
    wandb_entity: str | None = None
    # Checkpoints for the evaluate/transfer sweeps: "PATH" or "LABEL=PATH"; --from-sweep directories
    # add their finished trials (best top_k by best_robust_acc; 0 = all).
    checkpoints: tuple[str, ...] = ()
    from_sweeps: tuple[str, ...] = ()
    top_k: int = 0
    # transfer with eval.transfer_protocol=independent_copy: the copy each source's examples are crafted
    # on, "LABEL=PATH", or found in these sweeps (same config, another train.seed).
    craft_on: tuple[str, ...] = ()
    craft_on_sweeps: tuple[str, ...] = ()
    # robustbench:DATASET/THREAT/NAME checkpoints: RobustBench's model directory (its own layout,
    # <dir>/<dataset>/<threat>/<name>.pt; filled with --download), and its published numbers (a snapshot
    # JSON or the model_info/ folder of the RobustBench repository) for the leaderboard columns.
    robustbench_dir: str = "models"
    leaderboard: str | None = None
    # Imported plugins (tune_robust.plugins.Plugin), re-imported in every trial before its config.
    plugins: tuple[Any, ...] = ()
    # Search strategy (tune_robust.run.strategy): which configs run and which a scheduler stops early.
    search: str = "grid"
    scheduler: str = "fifo"
    num_samples: int | None = None
    search_seed: int = 0
    grace_period: int = 1
    reduction_factor: float = 3.0
    # "metric:mode" objectives of tpe/nsga2 (several = multi-objective); default: the sweep's metric
    # (tpe) or it plus params:min (nsga2).
    objectives: tuple[str, ...] = ()
    extra_ray_init: dict[str, Any] = field(default_factory=dict)

    @property
    def results_path(self) -> Path:
        return Path(self.results_dir).expanduser().resolve()


@dataclass(frozen=True)
class Asha:
    """ASHA's settings: the longest trial (epochs), epochs before the first cut, the reduction factor."""

    max_t: int
    grace_period: int
    reduction_factor: float


@dataclass(frozen=True)
class Strategy:
    """How the planned configs are searched: the resolved --search/--scheduler options."""

    search: str
    scheduler: str
    search_seed: int
    num_samples: int
    objectives: tuple[str, ...] = ()
    asha: Asha | None = None  # with --scheduler asha

    def record(self) -> dict[str, Any]:
        """As sweep.json stores it (the fields a strategy sets, in a fixed order)."""
        out: dict[str, Any] = {
            "search": self.search,
            "scheduler": self.scheduler,
            "search_seed": self.search_seed,
            "num_samples": self.num_samples,
        }
        if self.objectives:
            out["objectives"] = list(self.objectives)
        if self.asha is not None:
            out.update(asdict(self.asha))
        return out


@dataclass(frozen=True)
class Plan:
    """Everything a run will do, resolved and validated: the sweep, the options, the base trial config,
    the grid points and every trial config (upstream sweeps' trials included), resources and strategy.

    Execution hands a plan to Ray and never changes it; ``--dry-run`` prints it.
    """

    spec: SweepSpec
    options: RunOptions
    base: Mapping[str, Any]
    points: tuple[Mapping[str, Any], ...]
    configs: tuple[Mapping[str, Any], ...]
    cpus: float
    gpus: float
    strategy: Strategy
    # Multiply-accumulates per image of each distinct trial model (tune_robust.run.cost.model_key), counted
    # on the meta device while the models were checked: the progress line's trial costs.
    macs: Mapping[str, float | None] = field(default_factory=dict)
    # Notes planning has for the user (an optional upstream sweep that was not run, a resume that keeps
    # its recorded trials); printed by the dry run and by a real run before it starts.
    notes: tuple[str, ...] = ()

    @property
    def num_trials(self) -> int:
        return self.strategy.num_samples

    @property
    def pinned(self) -> dict[str, bool]:
        """The searched keys --set fixed (a search method leaves them out of its space)."""
        return {item.split("=", 1)[0].strip(): True for item in self.options.sets}

    @property
    def resources(self) -> dict[str, float]:
        """What Ray reserves per trial (memory in bytes, only when declared)."""
        memory = self.options.memory_per_trial
        return {"cpu": self.cpus, "gpu": self.gpus, **({"memory": memory * 2**30} if memory else {})}

    @property
    def needs(self) -> dict[str, float]:
        """One trial's resources as Ray names a node's (``cluster.fits_a_node``)."""
        return {"CPU": self.cpus, "GPU": self.gpus, "memory": self.resources.get("memory", 0.0)}

    @property
    def sweep_dir(self) -> Path:
        return self.options.results_path / self.spec.name

    def fingerprint(self) -> dict[str, Any]:
        """What must match for ``--resume`` to continue the same sweep."""
        return {
            "sweep": self.spec.name,
            "fidelity": self.options.fidelity,
            "configs": json.loads(json.dumps(list(self.configs), default=str)),
            "cpus_per_trial": self.cpus,
            "gpus_per_trial": self.gpus,
            **({"memory_per_trial": self.options.memory_per_trial} if self.options.memory_per_trial else {}),
            "strategy": self.strategy.record(),
            **({"plugins": self.plugin_records()} if self.options.plugins else {}),
        }

    def plugin_records(self) -> list[dict[str, str]]:
        from tune_robust.plugins import records

        return records(self.options.plugins)
