"""Ray Tune's experiment snapshot, kept whole so that a killed sweep always resumes from one.

Ray writes its snapshot (the trial list ``experiment_state-<session>.json``, the search state
``search_gen_state-<session>.json`` and ``searcher-state-<session>.pkl``, the callbacks'
``callback-states-<session>.pkl``) to a local staging folder, then copies the folder to storage
(``<sweep>/tune``) in the background after each snapshot, file by file, writing each in place (a
snapshot taken while the previous copy runs is not copied). A driver killed during that copy leaves a
file in storage cut short; Ray's restore then fails, and Ray starts the experiment over.

So every time Ray takes a snapshot, the search algorithm (``SweepSearch``, tune_robust.searchers._generator)
also copies the trial list and the search state from staging to ``<sweep>/snapshot`` (``keep``), each file
written whole and renamed into place. Before ``Tuner.restore``, ``prepare_resume`` sets aside into
``<sweep>/damaged_snapshot`` every newest snapshot file in storage that does not load, and puts the kept
files in place of storage's when they are newer (``step``: the snapshot count the search writes into its
own state, then the session name) or when storage's were damaged. A kill between two files leaves a
trial list and a search state of neighbouring snapshots; ``SweepSearch.restore_from_dir`` makes the
search agree with the trial list either way.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

from tune_robust import atomic
from tune_robust.errors import ConfigError

logger = logging.getLogger(__name__)

KEPT_DIR = "snapshot"
ASIDE_DIR = "damaged_snapshot"
EXPERIMENT = "experiment_state"
SEARCH = ("search_gen_state", "searcher-state")
CALLBACKS = "callback-states"
KINDS = (EXPERIMENT, *SEARCH, CALLBACKS)
# The file name of each kind for a session. Ray's names, written here once: Ray's own constants for them
# sit on its internal classes (the experiment state's on the Tune controller).
SUFFIX = {EXPERIMENT: ".json", SEARCH[0]: ".json", SEARCH[1]: ".pkl", CALLBACKS: ".pkl"}
# The key of the snapshot count in the search generator's state (tune_robust.searchers._generator).
STEP_KEY = "step"


def kind(name: str) -> str | None:
    """The snapshot file kind of a file name (``experiment_state-2026-...json`` -> ``experiment_state``)."""
    return next((k for k in KINDS if name.startswith(k + "-")), None)


def file_name(kind_: str, session: str) -> str:
    """The name of the ``kind_`` file of a session (``experiment_state``, ``2026-...`` ->
    ``experiment_state-2026-....json``)."""
    return f"{kind_}-{session}{SUFFIX[kind_]}"


def session(name: str) -> str:
    """The session of a snapshot file name (``file_name``'s inverse)."""
    k = kind(name)
    if k is None:
        raise ValueError(f"{name} is not a snapshot file name")
    return name.removeprefix(k + "-").removesuffix(SUFFIX[k])


def keep(staging: str | Path, names: Sequence[str], kept_dir: str | Path) -> None:
    """Copy the snapshot files ``names`` (the trial list last) from Ray's staging folder to ``kept_dir``,
    each written whole and renamed into place; files of earlier sessions there go. A file missing from
    staging (a searcher that saves no state) is skipped; a failed copy (a full disk) is a warning, not
    the sweep's end: the resume then takes storage's snapshot, newer than the kept one."""
    kept = Path(kept_dir)
    ordered = sorted(names, key=lambda n: kind(n) == EXPERIMENT)  # a kept trial list has its search beside
    try:
        kept.mkdir(parents=True, exist_ok=True)
        for name in ordered:
            if (Path(staging) / name).exists():
                atomic.copy_file(Path(staging) / name, kept / name)
        for old in kept.iterdir():
            if kind(old.name) and old.name not in names:
                old.unlink()
    except OSError as e:
        logger.warning("could not keep the experiment snapshot in %s (%s); a resume uses Ray's copy", kept, e)


_DAMAGE = (OSError, ValueError, EOFError, pickle.UnpicklingError, UnicodeDecodeError, AttributeError)


def _load(path: Path) -> object:
    """A snapshot file's content. Ray writes the trial list as JSON and its own state as a pickle; a
    searcher's state is in the searcher's format (a pickle for Optuna's, JSON for the grid's)."""
    import ray.cloudpickle as cloudpickle

    data = path.read_bytes()
    if kind(path.name) == EXPERIMENT:
        return json.loads(data)
    try:
        return cloudpickle.loads(data)
    except _DAMAGE:
        if kind(path.name) != SEARCH[1]:  # searcher-state
            raise
        return json.loads(data)


def loads(path: Path) -> bool:
    """Whether a snapshot file reads back whole."""
    try:
        _load(path)
    except _DAMAGE:
        return False
    return True


def step(path: Path) -> int:
    """The step of the trial list at ``path``: how many snapshots the sweep had taken, across sessions
    (higher: later). The search writes it into its own state right after Ray writes the trial list, in
    the same session's ``search_gen_state`` file beside it (tune_robust.searchers._generator); raises
    what reading that file raises when it is missing or damaged."""
    state = _load(path.with_name(file_name(SEARCH[0], session(path.name))))
    return int(state[STEP_KEY])  # type: ignore[index]


def newest(folder: str | Path, kind_: str) -> Path | None:
    """The file of ``kind_`` Ray restores from: the highest session name."""
    found = sorted(p for p in Path(folder).glob(f"{kind_}-*") if kind(p.name) == kind_)
    return found[-1] if found else None


def _set_aside(path: Path, aside: Path) -> None:
    aside.mkdir(exist_ok=True)
    os.replace(path, aside / path.name)


def _set_aside_damaged(tune: Path, aside: Path) -> list[str]:
    """Set aside every newest file that does not load, until each kind's newest loads (or none is left)."""
    moved: list[str] = []
    for k in KINDS:
        while (path := newest(tune, k)) is not None and not loads(path):
            _set_aside(path, aside)
            moved.append(path.name)
    return moved


def prepare_resume(sweep_dir: str | Path, tune_dir: str = "tune") -> list[str]:
    """Make ``<sweep>/<tune_dir>`` hold the newest whole snapshot before ``Tuner.restore``; returns one
    note per change made (none when storage's files were whole and as new as the kept ones).

    The kept trial list and search state replace storage's when storage has none, when the kept trial
    list is later, or when it is the same one and storage's search state was damaged. A damaged
    callbacks' file (ASHA's state) is only set aside: ``SchedulerState`` rebuilds the rungs."""
    sweep = Path(sweep_dir)
    tune, kept_dir, aside = sweep / tune_dir, sweep / KEPT_DIR, sweep / ASIDE_DIR
    notes: list[str] = []
    moved = _set_aside_damaged(tune, aside)
    if moved:
        notes.append(
            f"{len(moved)} snapshot file(s) in {tune} did not read back whole (a kill while Ray copied "
            f"them to storage) and were set aside in {aside}: {', '.join(moved)}"
        )
    # Kept files were written whole (renamed into place), the trial list last; they are used only as
    # a whole set.
    found = [newest(kept_dir, k) for k in (EXPERIMENT, *SEARCH)]
    kept = [p for p in found if p is not None]
    later = _order(kept[0]) if len(kept) == len(found) and loads(kept[0]) else None
    if later is None:
        _check_search_state(tune, aside)
        return notes
    stored = newest(tune, EXPERIMENT)
    # None also where the search state beside storage's trial list was set aside: the kept set is then
    # the one whole snapshot of that session.
    stored_order = _order(stored) if stored is not None else None
    if (
        stored_order is None
        or any(newest(tune, k) is None for k in SEARCH)
        or later > stored_order
        or (later == stored_order and any(kind(n) in SEARCH for n in moved))
    ):
        for p in kept:
            atomic.copy_file(p, tune / p.name)
        notes.append(f"resuming from the snapshot kept in {kept_dir} (snapshot step {later[0]})")
    return notes


def _order(path: Path) -> tuple[int, str] | None:
    """Which of two trial lists is later: the step, then the session; None when the step cannot be read.
    (A resumed run counts on from the search state it restored, which may lag the trial list by a
    snapshot: its first snapshot can repeat a step of the session before, and is the later one.)"""
    try:
        return step(path), session(path.name)
    except (*_DAMAGE, KeyError, TypeError):
        return None


def _check_search_state(tune: Path, aside: Path) -> None:
    """A trial list with no search state beside it cannot continue: Ray would end the sweep at once (no
    search generator state) or start it over (no searcher state). Refuse with what to do."""
    missing = [k for k in SEARCH if newest(tune, k) is None]
    if newest(tune, EXPERIMENT) is not None and missing:
        raise ConfigError(
            f"--resume: {tune} holds a trial list but no whole {' or '.join(missing)} file (see {aside}) "
            f"and no whole copy is kept in {tune.parent / KEPT_DIR}; the search cannot continue. The "
            "finished trials are in trials.parquet; move the sweep folder away to start over"
        )
