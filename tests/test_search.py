"""Adaptive search: the grid's Optuna encoding, strategy validation, and ``--search tpe --scheduler asha``
end to end on the embedded default, killed mid-run and resumed with its searcher and scheduler state;
the wrn_depth_grid notebook and the report run against that sweep's Parquet."""

from __future__ import annotations

import glob
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import crash_sweep
from conftest import read_parquet as _read

from tune_robust import cli
from tune_robust.run import RunOptions, plan
from tune_robust.searchers._encoding import GridEncoding
from tune_robust.sweeps import get_sweep

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 8


def _params(encoding: GridEncoding, point: dict) -> dict:
    """Optuna parameters naming ``point`` (inverse of decode, for the round trip)."""
    params = {}
    for d in encoding.dims:
        value = point[encoding.keys[d.key]]
        if d.position is not None:
            params[d.name] = value[d.position]
        elif d.choices == list(range(len(d.choices))) and not isinstance(value, int):
            params[d.name] = next(i for i, v in enumerate(d.choices) if v == value)
        else:
            params[d.name] = value
    return params


def test_depth_grid_encodes_as_three_ordinal_stages_and_decodes_every_point():
    spec = get_sweep("wrn_depth_grid")
    enc = GridEncoding.from_space(spec.space_for("smoke"), {})
    dists = enc.distributions()
    assert list(dists) == ["model.depths[0]", "model.depths[1]", "model.depths[2]"]
    assert all(type(d).__name__ == "IntDistribution" and d.step == 2 for d in dists.values())
    for i, point in enumerate(spec.points({}, "smoke")):
        assert enc.decode(_params(enc, point)) == i


def test_width_grid_and_variants_decode_to_their_points():
    for name in ("wrn_width_grid", "at_methods"):
        spec = get_sweep(name)
        space = spec.space_for("smoke")
        enc = GridEncoding.from_space(space, {})
        points = list(spec.points({}, "smoke"))
        for i in range(len(points)):
            # Walk the mixed-radix index back to per-key value indices.
            idx, params = i, {}
            for ki in reversed(range(len(enc.keys))):
                idx, j = divmod(idx, enc.sizes[ki])
                value = space[enc.keys[ki]].values[j]
                for d in (d for d in enc.dims if d.key == ki):
                    if d.position is not None:
                        params[d.name] = value[d.position]
                    elif d.choices == list(range(len(d.choices))):
                        params[d.name] = j
                    else:
                        params[d.name] = value
            assert enc.decode(params) == i


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--search", "tpe", "--max-trials", "3"], "with --search tpe use --num-samples"),
        (["--num-samples", "5"], "--num-samples applies to searches that pick a subset"),
        (["--search", "random", "--num-samples", "200"], "the grid has 125, --num-samples 200"),
        (["--scheduler", "asha", "--grace-period", "5"], "below train.epochs (5), got 5"),
        (["--scheduler", "asha", "--reduction-factor", "1"], "--reduction-factor must be > 1"),
        (["--search", "nsga2", "--objective", "test_acc:max"], "expected METRIC:max|min"),
        (["--objective", "params:min"], "--objective applies to model-based searches"),
    ],
)
def test_bad_strategy_is_one_clear_line(capsys, tmp_path, args, message):
    code = cli.main(["wrn_depth_grid", "--results-dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_strategy_defaults_and_fingerprint():
    p = plan("wrn_depth_grid", RunOptions(search="nsga2", search_seed=3))
    assert p.strategy.num_samples == 32 and p.strategy.objectives == ("val_robust_acc:max", "params:min")
    assert p.fingerprint()["strategy"]["search_seed"] == 3
    grid = plan("wrn_depth_grid", RunOptions())
    assert grid.fingerprint()["strategy"] == {
        "search": "grid",
        "scheduler": "fifo",
        "search_seed": 0,
        "num_samples": 125,
    }


def _cmd(results: Path, *extra: str) -> list[str]:
    strategy = ["--search", "tpe", "--scheduler", "asha", "--num-samples", str(SAMPLES), "--seed", "1"]
    sets = ["--set", "train.epochs=3", "--results-dir", str(results), "-q"]
    return [sys.executable, str(ROOT / "sweep.py"), "wrn_depth_grid", *strategy, *sets, *extra]


@pytest.fixture(scope="module")
def tpe_asha_sweep(tmp_path_factory) -> tuple[Path, set[str]]:
    """Run tpe + asha and SIGKILL the driver in the experiment snapshot taken after the 5th suggestion,
    once Ray has written the trial list (5 trials) and before the searcher's state (4 suggestions)
    reached storage: the mixture that made a resumed sweep run 9 trials for 8, one config twice (the
    restored sampler drew the 5th config again). Resume; (sweep dir, ids finished before)."""
    results = tmp_path_factory.mktemp("search")
    d = results / "wrn_depth_grid"
    crash_sweep(_cmd(results), "experiment_ahead:5")
    before = set(_read(d / "trials.parquet")["trial_id"])
    assert 1 <= len(before) < SAMPLES, "the kill did not fall mid-sweep"
    resumed = subprocess.run(_cmd(results, "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return d, before


def _newest(d: Path, pattern: str) -> object:
    with open(sorted(glob.glob(str(d / "tune" / pattern)))[-1], "rb") as f:
        return pickle.load(f)


@pytest.mark.slow  # default run under 10 minutes (CI runs it with the slow tests)
def test_tpe_asha_resumes_with_searcher_and_scheduler_state(tpe_asha_sweep):
    d, before = tpe_asha_sweep
    trials = pd.read_parquet(d / "trials.parquet")
    epochs = pd.read_parquet(d / "epochs.parquet")
    assert len(trials) == SAMPLES and trials["trial_id"].is_unique and before <= set(trials["trial_id"])
    assert trials["model.depths"].nunique() == SAMPLES, "a config ran twice after the restore"
    assert (trials["status"] == "TERMINATED").all()
    assert set(trials["search"]) == {"tpe"} and set(trials["scheduler"]) == {"asha"}
    stopped = trials["stopped_by_scheduler"].astype(bool)
    assert stopped.any(), "ASHA stopped no trial at its epoch-1 rung"
    assert (trials.loc[stopped, "epochs_run"] < 3).all() and trials.loc[
        stopped, "best_robust_acc"
    ].isna().all()
    assert (
        trials.loc[~stopped, "best_robust_acc"].notna().all()
        and (trials.loc[~stopped, "epochs_run"] == 3).all()
    )
    # Cost columns: attack passes add up from the epochs; wall seconds and resources present.
    per_trial = epochs.groupby("trial_id")["train_attack_passes"].sum()
    recorded = trials.set_index("trial_id")["total_train_attack_passes"]
    assert (recorded == per_trial.reindex(recorded.index)).all()
    assert (trials["wall_seconds"] > 0).all() and (trials["cpus"] == 1.0).all()
    # The Optuna study kept every trial across the restart (one per trial, each told its value); the
    # restored sampler's repeat of the 5th config is in it only as a failed, rejected duplicate.
    searcher = _newest(d, "searcher-state-*.pkl")
    study = searcher["study"]  # type: ignore[index]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == SAMPLES and all(t.value is not None for t in complete)
    assert len({tuple(sorted(t.params.items())) for t in complete}) == SAMPLES
    rejected = [t for t in study.trials if t.state.name != "COMPLETE"]
    assert rejected and all(t.state.name == "FAIL" and "duplicate_of" in t.user_attrs for t in rejected)
    # ASHA's epoch-1 rung holds a record of every trial, those from before the kill included.
    states = _newest(d, "callback-states-*.pkl")
    blob = next(s["scheduler"] for s in states.values() if isinstance(s, dict) and "scheduler" in s)  # type: ignore[union-attr]
    asha = json.loads(blob)
    rung1 = next(recorded for milestone, recorded in asha["rungs"] if milestone == 1)
    assert set(rung1) == set(trials["trial_id"])


@pytest.mark.slow  # default run under 10 minutes (CI runs it with the slow tests)
def test_notebook_executes_against_a_real_sweep(tpe_asha_sweep):
    import nbclient
    import nbformat

    d, _ = tpe_asha_sweep
    for path in sorted((ROOT / "analysis" / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        os.environ["TUNE_ROBUST_SWEEP_DIR"] = str(d)
        try:
            nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute(cwd=str(ROOT))
        finally:
            del os.environ["TUNE_ROBUST_SWEEP_DIR"]
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        text = "".join(o.get("text", "") for o in outputs)
        assert f"{SAMPLES} trial rows" in text and "Kendall tau" in text
        assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4


@pytest.mark.slow  # default run under 10 minutes (CI runs it with the slow tests)
def test_report_on_a_real_sweep(tpe_asha_sweep, tmp_path):
    d, _ = tpe_asha_sweep
    code = cli.main(["report", str(d), "--out", str(tmp_path)])
    assert code == 0
    md = (tmp_path / "summary.md").read_text()
    assert "stopped early by the scheduler" in md and "search=tpe, scheduler=asha" in md
    assert "--resume" in md or "python sweep.py wrn_depth_grid" in md
    assert (tmp_path / "robustness_vs_params.png").exists() and (tmp_path / "summary.html").exists()


def test_choice_searcher_hands_out_grid_configs_and_feeds_optuna(tmp_path):
    import optuna

    from tune_robust.searchers._optuna import ChoiceSearcher

    p = plan("wrn_depth_grid", RunOptions(search="tpe", num_samples=4))
    enc = GridEncoding.from_space(p.spec.space_for("smoke"), {})

    def tpe() -> ChoiceSearcher:
        sampler = optuna.samplers.TPESampler(seed=0)
        return ChoiceSearcher(enc, list(p.configs), sampler=sampler, metric="val_robust_acc", mode="max")

    searcher = tpe()
    for i in range(4):
        cfg = searcher.suggest(f"t{i}")
        assert cfg in p.configs and cfg == searcher.suggest(f"t{i}")  # stable per trial id
        searcher.on_trial_result(f"t{i}", {"epoch": 1, "training_iteration": 1})  # no validation: skipped
        searcher.on_trial_result(f"t{i}", {"val_robust_acc": 0.1 * i, "training_iteration": 2})
        searcher.on_trial_complete(f"t{i}", {"val_robust_acc": 0.1 * i})
    study = searcher.study
    assert [t.value for t in study.trials] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert [t.intermediate_values for t in study.trials][1] == pytest.approx({2: 0.1})
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = tpe()
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("t2") == searcher.suggest("t2")


def test_resume_refuses_another_strategy(tmp_path):
    import json

    from tune_robust.errors import ConfigError
    from tune_robust.run.options import SWEEP_FILE
    from tune_robust.run.resume import check_results_dir

    first = plan("wrn_depth_grid", RunOptions(results_dir=str(tmp_path), max_trials=3))
    first.sweep_dir.mkdir(parents=True)
    state = {"fingerprint": first.fingerprint(), "command": "python sweep.py wrn_depth_grid --max-trials 3"}
    (first.sweep_dir / SWEEP_FILE).write_text(json.dumps(state))
    again = plan("wrn_depth_grid", RunOptions(results_dir=str(tmp_path), max_trials=3, resume=True))
    assert check_results_dir(again) is True
    asha = plan(
        "wrn_depth_grid", RunOptions(results_dir=str(tmp_path), max_trials=3, resume=True, scheduler="asha")
    )
    with pytest.raises(ConfigError, match=r"search strategy.*--max-trials 3"):
        check_results_dir(asha)


def test_dry_run_refuses_what_the_run_refuses_before_it_starts(tmp_path, capsys):
    """A results dir holding the sweep, --resume with other options: the dry run's error is the run's."""
    from tune_robust.run.resume import write_state

    first = plan("wrn_depth_grid", RunOptions(results_dir=str(tmp_path), max_trials=3))
    write_state(first, "python sweep.py wrn_depth_grid --max-trials 3")
    for extra in ([], ["--resume", "--scheduler", "asha"]):
        args = ["wrn_depth_grid", "--results-dir", str(tmp_path), "--max-trials", "3", *extra]
        errors = []
        for dry in ([], ["--dry-run"]):
            if not dry and extra:
                continue  # (a real run with these options is refused the same way; not started here)
            assert cli.main([*args, *dry]) == 2
            errors.append(capsys.readouterr().err)
        assert len(set(errors)) == 1 and errors[0].startswith("error: ") and errors[0].count("\n") == 1
    assert (
        cli.main(
            ["wrn_depth_grid", "--results-dir", str(tmp_path), "--max-trials", "3", "--resume", "--dry-run"]
        )
        == 0
    )


def test_a_sweep_of_another_state_format_is_refused_in_one_line(tmp_path):
    import json

    from tune_robust.errors import ConfigError
    from tune_robust.run.options import SWEEP_FILE
    from tune_robust.run.resume import prepare, write_state

    first = plan("wrn_depth_grid", RunOptions(results_dir=str(tmp_path), max_trials=3))
    write_state(first, "python sweep.py wrn_depth_grid --max-trials 3")
    (first.sweep_dir / "tune").mkdir()
    state = json.loads((first.sweep_dir / SWEEP_FILE).read_text())
    del state["format"]  # as a development version before the format was recorded wrote it
    (first.sweep_dir / SWEEP_FILE).write_text(json.dumps(state))
    again = plan("wrn_depth_grid", RunOptions(results_dir=str(tmp_path), max_trials=3, resume=True))
    with pytest.raises(ConfigError, match=r"state format 1, this version reads 2.*move the folder away"):
        prepare(again)
    assert sorted(p.name for p in first.sweep_dir.iterdir()) == ["sweep.json", "tune"]  # nothing touched


def test_the_dry_run_of_random_search_lists_the_configs_its_searcher_runs_in_order():
    from ray.tune.search import Searcher

    from tune_robust.run import describe
    from tune_robust.run.execute import build_search

    p = plan("wrn_depth_grid", RunOptions(search="random", num_samples=5, search_seed=7))
    listed = [int(line.split()[0]) for line in describe(p).splitlines() if line.startswith("    ")]
    search_alg, _, _ = build_search(p)
    suggested = [search_alg.searcher.suggest(f"t{i}") for i in range(5)]
    assert len(listed) == 5 and suggested == [p.configs[i] for i in listed]
    assert search_alg.searcher.suggest("t5") == Searcher.FINISHED  # nothing beyond the listed five
