"""RobustBench's model zoo as checkpoints: ``robustbench:DATASET/THREAT/NAME`` (e.g.
``robustbench:cifar10/Linf/Huang2021Exploring``), wherever a trial takes a checkpoint as an input
(``--checkpoint``, ``--craft-on``, ``--set upstream.ROLE=...``; not ``upstream.init``).

The ``robustbench`` package (the ``[robustbench]`` extra) defines every zoo architecture and knows where
its weights live; this module only names, checks and loads through its public API
(``robustbench.model_zoo.model_dicts``, ``robustbench.utils.load_model``). Weights are read from a
RobustBench model directory in its own layout (``<dir>/<dataset>/<threat>/<name>.pt``), fetched there
by the package only when the run was started with ``--download``. Zoo models take [0, 1] inputs and
normalise inside, as every attack here expects.

A reference resolved by the driver carries its directory (``robustbench:cifar10/Linf/NAME@/abs/dir``), so
a trial on any node reads the same files. ``leaderboard`` reads RobustBench's published numbers (a
snapshot file or the ``model_info/`` folder of its repository) for the comparison columns.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from tune_robust.errors import ConfigError

PREFIX = "robustbench:"
# RobustBench's dataset names (ours are the same) and its classes per dataset.
CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}
THREATS = ("Linf", "L2", "corruptions")
# The input size each of our loaders gives and RobustBench's models of that dataset take.
INPUT_SHAPE = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32)}
INSTALL = (
    "pip install '.[robustbench]' (its torchvision must match your torch: on a CPU-only machine install "
    "torchvision from https://download.pytorch.org/whl/cpu; `make robustbench` does both)"
)


def is_reference(text: str) -> bool:
    return str(text).startswith(PREFIX)


@dataclass(frozen=True)
class ZooRef:
    """One zoo model; ``model_dir`` empty until the driver resolves it."""

    dataset: str
    threat: str
    name: str
    model_dir: str = ""

    @classmethod
    def parse(cls, text: str) -> ZooRef:
        body = str(text).removeprefix(PREFIX)
        body, _, model_dir = body.partition("@")
        parts = body.split("/")
        if not is_reference(text) or len(parts) != 3 or not all(parts):
            raise ConfigError(
                f"{text!r}: a zoo checkpoint is robustbench:DATASET/THREAT/NAME, e.g. "
                f"robustbench:cifar10/Linf/Huang2021Exploring"
            )
        dataset, threat, name = parts
        if dataset not in CLASSES:
            raise ConfigError(f"{text!r}: RobustBench's datasets are {', '.join(CLASSES)}, not {dataset!r}")
        if threat not in THREATS:
            raise ConfigError(
                f"{text!r}: RobustBench's threat models are {', '.join(THREATS)}, not {threat!r}"
            )
        return cls(dataset, threat, name, model_dir)

    @property
    def key(self) -> str:
        """``robustbench:DATASET/THREAT/NAME`` (without the directory)."""
        return f"{PREFIX}{self.dataset}/{self.threat}/{self.name}"

    def __str__(self) -> str:
        return f"{self.key}@{self.model_dir}" if self.model_dir else self.key

    @property
    def folder(self) -> Path:
        return Path(self.model_dir) / self.dataset / self.threat

    def info(self) -> dict[str, Any]:
        """What ``checkpoint_info`` says of a checkpoint of ours: the architecture names itself."""
        return {"arch": self.key, "kwargs": {}, "num_classes": CLASSES[self.dataset], "in_channels": 3}


def expand(text: str) -> list[str]:
    """``robustbench:D/T/*`` (every zoo model of D/T) or ``robustbench:D/T/A,B`` (a list) as single
    references; a single one unchanged."""
    ref = ZooRef.parse(text)
    if ref.name == "*":
        names = sorted(zoo_entries(ref.dataset, ref.threat))
    else:
        names = [n.strip() for n in ref.name.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"{text!r}: names no zoo model under {ref.dataset}/{ref.threat}")
    return [str(replace(ref, name=n)) for n in names]


def _package() -> Any:
    try:
        from robustbench import model_zoo, utils
    except Exception as e:  # ImportError, or a torchvision that does not load with this torch
        why = (str(e).splitlines() or [type(e).__name__])[-1][:160]
        raise ConfigError(
            f"robustbench: checkpoints need the robustbench package ({why}): {INSTALL}"
        ) from None
    return model_zoo, utils


def zoo_entries(dataset: str, threat: str) -> dict[str, Any]:
    """The zoo's models of ``dataset``/``threat``: name -> RobustBench's entry (builder, weight ids)."""
    model_zoo, _ = _package()
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    return dict(model_zoo.model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat)])


def check_name(ref: ZooRef, names: list[str]) -> None:
    """An unknown name: one line with the closest names of the zoo."""
    if ref.name in names:
        return
    close = difflib.get_close_matches(ref.name, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"the zoo has {len(names)} names there"
    raise ConfigError(
        f"{ref.key}: RobustBench has no model {ref.name!r} under {ref.dataset}/{ref.threat} ({hint}); "
        f"see https://robustbench.github.io for the names"
    )


def check_task(
    ref: ZooRef, dataset: str, norms: set[str], eps: set[float], published_eps: float | None
) -> None:
    """The sweep's dataset and threat model must be the ones the zoo model was trained and ranked for."""
    if ref.dataset != dataset:
        raise ConfigError(
            f"{ref.key} is a {ref.dataset} model, but the sweep runs on {dataset!r}; pass --dataset "
            f"{ref.dataset} (and --data-dir)"
        )
    if ref.dataset not in INPUT_SHAPE:
        raise ConfigError(
            f"{ref.key}: {ref.dataset} zoo models need RobustBench's own resizing and cropping, which "
            f"this platform does not apply; cifar10 and cifar100 models are supported"
        )
    if ref.threat == "corruptions":
        raise ConfigError(f"{ref.key} is ranked on common corruptions; the attack suite measures Linf or L2")
    wanted = ref.threat.lower()
    other = sorted(n for n in norms if n != wanted)
    if other:
        raise ConfigError(
            f"{ref.key} is ranked under the {ref.threat} threat model, but the sweep's attacks use "
            f"{', '.join(other)}; evaluate it with {ref.threat} attacks (--set eval.attacks=...)"
        )
    if published_eps is not None and eps and any(abs(e - published_eps) > 1e-6 for e in eps):
        shown = ", ".join(f"{e:.5g}" for e in sorted(eps))
        raise ConfigError(
            f"{ref.key} is ranked at eps {published_eps:.5g}, but the sweep's attacks use eps {shown}; "
            f"attack at its eps (the dataset's default, eps=auto) so the leaderboard columns compare"
        )


def weight_files(ref: ZooRef, entry: Any) -> list[Path]:
    """Where ``robustbench.utils.load_model`` reads ``ref``'s weights (an ensemble has one per member)."""
    base = ref.folder / f"{ref.name}.pt"
    ids = entry.get("gdrive_id") if isinstance(entry, dict) else None
    if isinstance(ids, list):
        return [Path(f"{base}_m{i}.pt") for i in range(len(ids))]
    return [base]


def missing_weights(ref: ZooRef) -> list[Path]:
    """The weight files of ``ref`` (a zoo name, checked) not in its directory."""
    entries = zoo_entries(ref.dataset, ref.threat)
    check_name(ref, sorted(entries))
    return [p for p in weight_files(ref, entries[ref.name]) if not p.is_file()]


def resolve(text: str, model_dir: str | Path, download: bool) -> ZooRef:
    """``text`` with its directory (absolute), checked: the name exists and its weights are there (or,
    with ``download``, fetched there now by the robustbench package)."""
    ref = replace(ZooRef.parse(text), model_dir=str(Path(model_dir).expanduser().resolve()))
    missing = missing_weights(ref)
    if missing and not download:
        raise ConfigError(
            f"{ref.key}: no weights at {missing[0]}; pass --download to fetch them there (needs the "
            f"internet), or --robustbench-dir with the folder that holds {ref.dataset}/{ref.threat}/"
        )
    if missing:
        print(f"downloading {ref.key} into {ref.folder}", flush=True)
        load(ref, "cpu", allow_download=True)
    return ref


def load(ref: ZooRef | str, device: Any = "cpu", allow_download: bool = False) -> Any:
    """The zoo model in eval mode on ``device``, its weights read by ``robustbench.utils.load_model``
    from ``ref``'s directory (which it fills only when ``allow_download``)."""
    ref = ref if isinstance(ref, ZooRef) else ZooRef.parse(ref)
    if not ref.model_dir:
        raise ConfigError(f"{ref.key}: no RobustBench model directory (--robustbench-dir)")
    _, utils = _package()
    missing = [] if allow_download else missing_weights(ref)
    if missing:
        raise ConfigError(f"{ref.key}: no weights at {missing[0]} (the driver checked them before)")
    model = utils.load_model(ref.name, model_dir=ref.model_dir, dataset=ref.dataset, threat_model=ref.threat)
    return model.to(device).eval()


# --- the published leaderboard -------------------------------------------------------------------------


def leaderboard(path: str | Path) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """RobustBench's entries as ``{dataset: {threat: {name: entry}}}``, from a snapshot file
    (``{"entries": ...}``) or the ``model_info/`` folder of the RobustBench repository
    (``model_info/<dataset>/<threat>/<name>.json``)."""
    p = Path(path).expanduser()
    if p.is_dir():
        out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        for f in sorted(p.glob("*/*/*.json")):
            out.setdefault(f.parent.parent.name, {}).setdefault(f.parent.name, {})[f.stem] = _read_json(f)
        if not out:
            raise ConfigError(f"--leaderboard {p}: no <dataset>/<threat>/<name>.json files (model_info/)")
        return out
    data = _read_json(p)
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        raise ConfigError(
            f"--leaderboard {p}: expected a JSON object with an 'entries' mapping, or model_info/"
        )
    return data["entries"]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"--leaderboard {path}: cannot read it ({e.strerror})") from None
    except ValueError as e:
        raise ConfigError(f"--leaderboard {path}: not JSON ({e})") from None


def published(entries: Mapping[str, Any], ref: ZooRef) -> dict[str, float | None] | None:
    """The leaderboard's numbers for ``ref`` (accuracies in [0, 1], eps as a number); None if absent."""
    entry = entries.get(ref.dataset, {}).get(ref.threat, {}).get(ref.name)
    if entry is None:
        return None
    return {
        "clean_acc": _percent(entry.get("clean_acc")),
        "autoattack_acc": _percent(entry.get("autoattack_acc")),
        "eps": _number(entry.get("eps")),
    }


def _percent(value: Any) -> float | None:
    number = _number(value)
    return None if number is None else number / 100


def _number(value: Any) -> float | None:
    """``"61.56"``, ``61.56``, ``"8/255"`` as floats; None for missing or unreadable values."""
    if value is None or value == "":
        return None
    try:
        return float(Fraction(str(value).strip()))
    except (ValueError, ZeroDivisionError):
        return None
