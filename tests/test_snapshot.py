"""A killed sweep resumes from a whole snapshot: files Ray's copy to storage cut short are set aside,
and the copy kept at each snapshot replaces storage's when it is newer or storage's was damaged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray.cloudpickle as cloudpickle

from tune_robust import snapshot
from tune_robust.errors import ConfigError

S1, S2 = "2026-12-01_10-00-00", "2026-12-02_10-00-00"


def _write(folder: Path, session: str, step: int, *, search: str = "study") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # The step is ours, in the search generator's state (``snapshot.STEP_KEY``); the trial list is Ray's.
    state = {"trial_data": [], "runner_data": {}, "stats": {}}
    (folder / f"experiment_state-{session}.json").write_text(json.dumps(state))
    for k in snapshot.SEARCH:
        (folder / f"{k}-{session}.{'json' if k == 'search_gen_state' else 'pkl'}").write_bytes(
            cloudpickle.dumps({"search": search, "step": step})
        )


def _search(folder: Path, session: str) -> object:
    return cloudpickle.loads((folder / f"searcher-state-{session}.pkl").read_bytes())


def test_whole_storage_as_new_as_the_kept_copy_is_left_alone(tmp_path):
    _write(tmp_path / "tune", S1, 7, search="stored")
    _write(tmp_path / "snapshot", S1, 7, search="kept")
    assert snapshot.prepare_resume(tmp_path) == []
    assert _search(tmp_path / "tune", S1) == {"search": "stored", "step": 7}
    assert not (tmp_path / "damaged_snapshot").exists()


def test_a_newer_kept_snapshot_replaces_storage(tmp_path):
    _write(tmp_path / "tune", S2, 7, search="stored")
    _write(tmp_path / "snapshot", S2, 9, search="kept")
    notes = snapshot.prepare_resume(tmp_path)
    assert len(notes) == 1 and "step 9" in notes[0]
    assert snapshot.step(tmp_path / "tune" / f"experiment_state-{S2}.json") == 9
    assert _search(tmp_path / "tune", S2) == {"search": "kept", "step": 9}


def test_files_cut_short_are_set_aside_and_the_kept_copy_is_used_even_when_not_newer(tmp_path):
    tune = tmp_path / "tune"
    _write(tune, S2, 9, search="stored")
    cut = tune / f"search_gen_state-{S2}.json"
    cut.write_bytes(b"")
    _write(tmp_path / "snapshot", S2, 9, search="kept")
    notes = snapshot.prepare_resume(tmp_path)
    assert (tmp_path / "damaged_snapshot" / cut.name).read_bytes() == b""
    assert "search_gen_state" in notes[0] and "kept" in notes[1]
    assert cloudpickle.loads(cut.read_bytes()) == {"search": "kept", "step": 9}
    assert _search(tune, S2) == {"search": "kept", "step": 9}  # the pair comes from one snapshot


def test_without_a_kept_copy_ray_falls_back_to_the_last_whole_session(tmp_path):
    tune = tmp_path / "tune"
    _write(tune, S1, 4)
    _write(tune, S2, 9)
    text = (tune / f"experiment_state-{S2}.json").read_text()
    (tune / f"experiment_state-{S2}.json").write_text(text[: len(text) // 2])
    (tune / f"searcher-state-{S2}.pkl").write_bytes(b"\x80\x05")
    notes = snapshot.prepare_resume(tmp_path)
    assert len(notes) == 1 and "set aside" in notes[0]
    assert snapshot.newest(tune, snapshot.EXPERIMENT) == tune / f"experiment_state-{S1}.json"
    assert snapshot.newest(tune, "searcher-state") == tune / f"searcher-state-{S1}.pkl"
    assert snapshot.newest(tune, "search_gen_state") == tune / f"search_gen_state-{S2}.json"  # whole: kept
    assert sorted(p.name for p in (tmp_path / "damaged_snapshot").iterdir()) == [
        f"experiment_state-{S2}.json",
        f"searcher-state-{S2}.pkl",
    ]


def test_keep_writes_whole_files_and_only_the_newest_session(tmp_path):
    staging = tmp_path / "staging"
    _write(staging, S1, 3)
    names = sorted(p.name for p in staging.iterdir())
    snapshot.keep(staging, names, tmp_path / "snapshot")
    _write(staging, S2, 5)
    names2 = sorted(p.name for p in staging.glob(f"*{S2}*"))
    snapshot.keep(staging, names2, tmp_path / "snapshot")
    assert sorted(p.name for p in (tmp_path / "snapshot").iterdir()) == names2  # no temporary files left
    assert snapshot.step(tmp_path / "snapshot" / f"experiment_state-{S2}.json") == 5


def test_a_searchers_own_json_state_is_whole_and_cut_short_it_is_not(tmp_path):
    """The grid searcher writes its state as JSON, Optuna's as a pickle: both read back whole."""
    path = tmp_path / f"searcher-state-{S1}.pkl"
    text = json.dumps({"configs": [{"model": {"depths": [1, 1, 1]}}], "assigned": {"a": 0}})
    path.write_text(text)
    assert snapshot.loads(path)
    path.write_text(text[:-5])
    assert not snapshot.loads(path)
    path.write_bytes(cloudpickle.dumps({"study": 1})[:-3])
    assert not snapshot.loads(path)


def test_a_damaged_callbacks_file_alone_never_brings_in_an_older_kept_snapshot(tmp_path):
    tune = tmp_path / "tune"
    _write(tune, S2, 9, search="stored")
    (tune / f"callback-states-{S2}.pkl").write_bytes(b"")
    _write(tmp_path / "snapshot", S2, 8, search="kept")
    notes = snapshot.prepare_resume(tmp_path)
    assert len(notes) == 1 and "callback-states" in notes[0]
    assert _search(tune, S2) == {"search": "stored", "step": 9}


def test_a_later_session_at_the_same_step_is_later_and_a_partial_kept_set_is_never_used(tmp_path):
    _write(tmp_path / "tune", S1, 9, search="stored")
    _write(tmp_path / "snapshot", S2, 9, search="kept")  # a resumed run's first snapshot: same step
    snapshot.prepare_resume(tmp_path)
    assert _search(tmp_path / "tune", S2) == {"search": "kept", "step": 9}

    other = tmp_path / "other"
    _write(other / "tune", S1, 3)
    _write(other / "snapshot", S2, 5)
    (other / "snapshot" / f"search_gen_state-{S2}.json").unlink()  # a kill inside the first keep
    assert snapshot.prepare_resume(other) == []
    assert (
        snapshot.newest(other / "tune", snapshot.EXPERIMENT) == other / "tune" / f"experiment_state-{S1}.json"
    )


def test_keep_skips_what_staging_lacks_and_a_failed_copy_is_a_warning(tmp_path, caplog):
    staging = tmp_path / "staging"
    _write(staging, S1, 3)
    names = sorted(p.name for p in staging.iterdir())
    (staging / names[-1]).unlink()
    snapshot.keep(staging, names, tmp_path / "snapshot")
    assert sorted(p.name for p in (tmp_path / "snapshot").iterdir()) == names[:-1]
    (tmp_path / "blocked").write_text("a file where the folder should be")
    snapshot.keep(staging, names, tmp_path / "blocked")
    assert "could not keep the experiment snapshot" in caplog.text


def test_a_trial_list_left_without_any_whole_search_state_is_refused(tmp_path):
    tune = tmp_path / "tune"
    _write(tune, S1, 4)
    (tune / f"search_gen_state-{S1}.json").write_bytes(b"")
    with pytest.raises(ConfigError, match="no whole search_gen_state file"):
        snapshot.prepare_resume(tmp_path)
    assert (tmp_path / "damaged_snapshot" / f"search_gen_state-{S1}.json").exists()  # kept, not deleted
    _write(tmp_path / "snapshot", S1, 4)  # with a whole kept copy the resume goes on
    assert "kept" in snapshot.prepare_resume(tmp_path)[-1]


def test_the_search_writes_each_snapshots_step_beside_its_trial_list_and_counts_on_after_a_restore(tmp_path):
    from tune_robust.searchers._generator import SweepSearch
    from tune_robust.searchers._points import PointsSearcher

    staging, kept = tmp_path / "staging", tmp_path / "snapshot"
    staging.mkdir()

    def take(search: SweepSearch, session: str) -> None:  # what Ray does at each snapshot
        (staging / f"experiment_state-{session}.json").write_text(json.dumps({"trial_data": []}))
        search.save_to_dir(str(staging), session)

    search = SweepSearch(PointsSearcher([{"a": 1}, {"a": 2}]), kept_dir=str(kept))
    take(search, S1)
    take(search, S1)
    assert snapshot.step(staging / f"experiment_state-{S1}.json") == 2
    assert snapshot.step(kept / f"experiment_state-{S1}.json") == 2
    resumed = SweepSearch(PointsSearcher([{"a": 1}, {"a": 2}]), kept_dir=str(kept))
    resumed.set_state(search.get_state())  # as Ray's restore does from the search state file
    take(resumed, S2)
    assert snapshot.step(kept / f"experiment_state-{S2}.json") == 3
    assert sorted(p.name for p in kept.iterdir()) == sorted(
        snapshot.file_name(k, S2) for k in snapshot.KINDS[:3]
    )
