"""Checks of a plan's trial configs and results dir that would otherwise fail inside every trial after
Ray has started: models, screens, upstream checkpoints, datasets."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tune_robust.config import TrialConfig, UpstreamInputs
from tune_robust.errors import ConfigError
from tune_robust.run.cost import count_model_macs, model_key


def check_writable(results: Path) -> None:
    """--results-dir must be a directory this process can write, or a new one in an existing,
    writable parent (a missing parent is more often a typo than a wish for a new tree)."""
    import tempfile

    where = results if results.exists() else results.parent
    if not where.exists():
        raise ConfigError(
            f"--results-dir {results}: its parent {where} does not exist; create it first "
            f"(mkdir -p {where}) or fix the path"
        )
    if not where.is_dir():
        raise ConfigError(f"--results-dir {results}: {where} is a file, not a directory; choose another path")
    try:
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as e:
        raise ConfigError(
            f"--results-dir {results}: cannot write in {where} ({e.strerror}); choose a directory you can "
            "write to"
        ) from None


@dataclass(frozen=True)
class Checked:
    """The configs as trials get them, and each distinct model's MACs per image (``run.cost``)."""

    configs: list[dict[str, Any]]
    macs: dict[str, float | None]


def validate(configs: Sequence[Mapping[str, Any]], count_macs: bool = True) -> Checked:
    """Build every distinct model on the meta device (counting its MACs with ``count_macs``: the progress
    line's trial costs), check every upstream checkpoint against the trial that loads it and read every
    dataset once (downloading it when asked): what a trial would fail on, found before Ray starts. The
    configs come back as trials get them (the driver downloaded what was needed; trials only read)."""
    from tune_robust.data import DATASETS, load_dataset
    from tune_robust.models import create_meta_model
    from tune_robust.models.checkpoint import checkpoint_info

    macs: dict[str, float | None] = {}
    seen_data: set[tuple[str, str | None]] = set()
    seen_checkpoints: set[str] = set()
    infos: dict[str, dict[str, Any]] = {}  # each checkpoint file is read once (a supernet for 300 trials)
    for cfg in configs:
        tc = TrialConfig.from_dict(dict(cfg))
        key = model_key(tc)
        if key not in macs:  # build once on the meta device: catches bad depths/widths cheaply
            info = DATASETS.get(tc.data.dataset)
            model = create_meta_model(tc.model.name, info.num_classes, info.shape[0], **tc.model.kwargs)
            check_screen(tc, model)
            macs[key] = count_model_macs(tc, model) if count_macs else None
        for key, path in tc.upstream.items():
            if path not in infos:
                infos[path] = checkpoint_info(path)
            # Ours rebuild themselves (only the dataset matters); a plain one is built as model.arch.
            plain = [] if infos[path] else [key, tc.model.name, tc.model.kwargs]
            ckey = json.dumps([path, tc.data.dataset, *plain], default=str)
            if ckey not in seen_checkpoints:
                seen_checkpoints.add(ckey)
                check_checkpoint(key, path, tc, infos[path])
        dkey = (tc.data.dataset, tc.data.data_dir)
        if dkey not in seen_data:  # a missing or malformed dataset fails here, not in every trial
            seen_data.add(dkey)
            load_dataset(tc.data.dataset, tc.data.data_dir, tc.data.download)
    out = copy.deepcopy([dict(c) for c in configs])
    for cfg in out:
        cfg.get("data", {}).pop("download", None)
    return Checked(out, macs)


def check_screen(tc: TrialConfig, model: Any) -> None:
    """screen.fsp needs a model that reports its cells' features, with at least screen.fsp_cells."""
    if not tc.screen.fsp:
        return
    cells = getattr(model, "cells", None)
    if not hasattr(model, "feature_hook") or cells is None:
        raise ConfigError(
            f"screen.fsp=true: model {tc.model.name!r} does not report cell features; the FSP screen "
            f"needs a cell network (robnet)"
        )
    if len(cells) < tc.screen.fsp_cells:
        raise ConfigError(
            f"screen.fsp_cells={tc.screen.fsp_cells}, but model {tc.model.name!r} has {len(cells)} cells"
        )


def check_checkpoint(key: str, path: str, tc: TrialConfig, info: dict[str, Any] | None = None) -> None:
    """A checkpoint of ours must match the dataset's classes and channels; a plain state dict must fit
    ``model.arch`` (in our names or a published layout's). Found here, not in every trial after Ray
    has started."""
    from tune_robust.data import DATASETS
    from tune_robust.models.checkpoint import checkpoint_info, fit_plain

    info = checkpoint_info(path) if info is None else info
    ds = DATASETS.get(tc.data.dataset)
    if info and (info["num_classes"], info["in_channels"]) != (ds.num_classes, ds.shape[0]):
        raise ConfigError(
            f"checkpoint {path} was trained for {info['num_classes']} classes / {info['in_channels']} "
            f"channels, but dataset {tc.data.dataset!r} has {ds.num_classes} / {ds.shape[0]}; pass the "
            f"dataset it was trained on (--dataset, --data-dir)"
        )
    if not info and not UpstreamInputs.builds_trial_model(key):
        raise ConfigError(
            f"upstream.{key}: {path} is a plain state dict, which names no architecture; "
            f"{key} must be a checkpoint of ours (a trial's model.pt), which rebuilds itself"
        )
    if not info:
        fitted = fit_plain(path, tc.model.name, tc.model.kwargs, ds.num_classes, ds.shape[0])
        if fitted.layout.name != "ours":
            print(
                f"note: checkpoint {path} is in the {fitted.layout.name} layout ({fitted.layout.source}); "
                f"loaded as {tc.model.name}. Inputs: {fitted.layout.inputs}"
            )
