"""tune_robust uses Ray and Optuna through their public interfaces only: its ASHA decides as Ray's
ASHAScheduler does, its Optuna searcher drives a study with ask and tell, the CPU and token probes read
what Ray reads, and the versions resume is tested on are pinned in one place."""

from __future__ import annotations

import math
import os
import pickle
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
import ray.cloudpickle as cloudpickle
import tomllib
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from tune_robust import cluster
from tune_robust.run import RunOptions, plan
from tune_robust.searchers._asha import ASHA
from tune_robust.searchers._encoding import GridEncoding
from tune_robust.searchers._optuna import ChoiceSearcher

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class _Trial:
    trial_id: str
    last_result: dict = field(default_factory=dict)


def _events(seed: int, trials: int, max_t: int) -> list[tuple[str, int, float | None]]:
    """Per-epoch reports of ``trials`` trials, four running at a time in a random interleaving: (trial,
    epoch, metric), the metric NaN now and then and absent (None: an epoch without validation) too."""
    rng = random.Random(seed)
    curves = {
        f"t{i:02d}": [
            math.nan if rng.random() < 0.05 else None if rng.random() < 0.1 else rng.gauss(0.1 * e, 0.3)
            for e in range(1, max_t + 1)
        ]
        for i in range(trials)
    }
    events, waiting, running = [], list(curves), {}
    while waiting or running:
        while waiting and len(running) < 4:
            running[waiting.pop(0)] = 0
        tid = rng.choice(sorted(running))
        running[tid] += 1
        events.append((tid, running[tid], curves[tid][running[tid] - 1]))
        if running[tid] == max_t:
            del running[tid]
    return events


@pytest.mark.parametrize(
    ("max_t", "grace_period", "reduction_factor", "mode"),
    [(9, 1, 3, "max"), (20, 2, 2, "min"), (10, 1, 4, "max"), (16, 1, 2.5, "min")],
)
def test_asha_decides_as_rays_asha_scheduler(max_t, grace_period, reduction_factor, mode):
    """The same reports fed to Ray's ASHAScheduler and to ours: the same decision at every report, and
    the same rung cutoffs and stop count after it (``debug_string``, public in both)."""
    kwargs = dict(
        time_attr="epoch", max_t=max_t, grace_period=grace_period, reduction_factor=reduction_factor
    )
    ray_asha = ASHAScheduler(metric="acc", mode=mode, **kwargs)
    ours = ASHA(metric="acc", mode=mode, **kwargs)
    events = _events(seed=max_t, trials=20, max_t=max_t)
    stopped: set[str] = set()
    decisions = []
    for tid, epoch, value in events:
        if tid in stopped:
            continue
        trial = _Trial(tid)
        if epoch == 1:
            ray_asha.on_trial_add(None, trial)  # type: ignore[arg-type]
            ours.on_trial_add(None, trial)
        result = {"epoch": epoch} if value is None else {"epoch": epoch, "acc": value}
        expected = ray_asha.on_trial_result(None, trial, result)  # type: ignore[arg-type]
        assert ours.on_trial_result(None, trial, result) == expected, (tid, epoch)
        decisions.append(expected)
        if expected == TrialScheduler.STOP or epoch == max_t:
            # Ray's controller tells the scheduler that a stopped or finished trial completed.
            ray_asha.on_trial_complete(None, trial, result)  # type: ignore[arg-type]
            ours.on_trial_complete(None, trial, result)
            stopped.add(tid)
        assert ours.debug_string() == ray_asha.debug_string()
    early = [d for d, (_, epoch, _) in zip(decisions, events, strict=False) if epoch < max_t]
    assert TrialScheduler.STOP in early and TrialScheduler.CONTINUE in early  # the sequence tests both


def test_asha_rungs_survive_save_and_restore(tmp_path):
    kwargs = dict(time_attr="epoch", metric="acc", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    asha = ASHA(**kwargs)
    for i, value in enumerate([0.1, 0.5, math.nan, 0.3]):
        asha.on_trial_result(None, _Trial(f"t{i}"), {"epoch": 1, "acc": value})
    asha.save(str(tmp_path / "asha.json"))
    restored = ASHA(**kwargs)
    restored.restore(str(tmp_path / "asha.json"))
    assert str(restored.rungs) == str(asha.rungs) and restored.debug_string() == asha.debug_string()
    late, t9 = {"epoch": 1, "acc": 0.2}, _Trial("t9")
    assert restored.on_trial_result(None, t9, late) == asha.on_trial_result(None, t9, late)


def test_asha_takes_metric_and_mode_from_tune_config_once():
    asha = ASHA(time_attr="epoch", max_t=3)
    with pytest.raises(ValueError, match="no valid metric"):
        asha.on_trial_add(None, _Trial("t0"))
    assert asha.set_search_properties("acc", "min") and (asha.metric, asha.mode) == ("acc", "min")
    assert not asha.set_search_properties("loss", "max")
    assert asha.on_trial_result(None, _Trial("t0"), {"epoch": 1, "acc": 1.0}) == TrialScheduler.CONTINUE
    assert asha.rungs[1] == {"t0": -1.0}  # min mode: recorded negated, higher is better


def test_nsga2_searcher_tells_every_objective_and_skips_intermediate_values(tmp_path):
    p = plan("wrn_depth_grid", RunOptions(search="nsga2", num_samples=6))
    enc = GridEncoding.from_space(p.spec.space_for("smoke"), {})
    sampler = optuna.samplers.NSGAIISampler(seed=0, population_size=4)
    searcher = ChoiceSearcher(
        enc, list(p.configs), sampler=sampler, metric=["val_robust_acc", "params"], mode=["max", "min"]
    )
    for i in range(6):
        assert searcher.suggest(f"t{i}") in p.configs
        searcher.on_trial_result(f"t{i}", {"val_robust_acc": 0.1, "params": 5.0, "training_iteration": 1})
        searcher.on_trial_complete(f"t{i}", {"val_robust_acc": 0.1 * i, "params": 10.0 - i})
    searcher.suggest("t6")
    searcher.on_trial_complete("t6", None, error=True)
    study = searcher.study
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    expected = [v for i in range(6) for v in (0.1 * i, 10.0 - i)]
    assert [v for t in done for v in t.values] == pytest.approx(expected)
    assert all(t.intermediate_values == {} for t in study.trials)
    assert [t.state.name for t in study.trials if t.state.name != "COMPLETE"][-1] == "FAIL"
    # Ray pickles the searcher with the Tuner: NSGA-II's sampler (it holds a lock) comes through whole.
    copied = pickle.loads(cloudpickle.dumps(searcher))
    assert copied.suggest("t7") == searcher.suggest("t7")
    searcher.save(str(tmp_path / "s.pkl"))
    again = ChoiceSearcher(enc, list(p.configs), sampler=sampler, metric=["a", "b"], mode=["max", "min"])
    again.restore(str(tmp_path / "s.pkl"))
    assert again.suggested == searcher.suggested and again.told == searcher.told
    assert len(again.study.trials) == len(study.trials)


def test_tune_robust_reaches_into_no_private_state_of_ray_or_optuna():
    private = re.compile(
        r"ray\._private|execution\.tune_controller|TuneController|_ot_\w+|_completed_trials|_trial_info"
        r"|_brackets|\b_rungs|_time_attr|_metric_op|\b_iteration\b|runner_data|\._space\b"
    )
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / "tune_robust").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert found == []


def test_no_library_module_reaches_an_underscore_attribute_of_another_object():
    """Only ``self`` and ``cls`` have their underscore attributes read: no module reaches into another
    package's objects (Ray, Optuna, torch, argparse) or into another of our own classes' insides."""
    import ast

    folders = ("tune_robust", "search_spaces", "trainables", "analysis")
    found = []
    for path in sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not own and not node.attr.startswith("__"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_tested_versions_are_the_ones_pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in [*project["dependencies"], *project["optional-dependencies"]["dashboard"]]:
        req = Requirement(line)
        if req.name in cluster.TESTED_VERSIONS:
            pins.setdefault(req.name, []).append(req.specifier)
    assert set(pins) == set(cluster.TESTED_VERSIONS)
    for name, specifiers in pins.items():
        assert all(s == SpecifierSet(cluster.TESTED_VERSIONS[name]) for s in specifiers), name
    assert len(pins["ray"]) == 2  # ray[tune], and ray[default] of the dashboard extra


def test_version_note_only_outside_the_tested_versions(monkeypatch):
    assert cluster.version_note() is None  # the installed versions are the tested ones
    monkeypatch.setitem(cluster.TESTED_VERSIONS, "ray", ">=0.1,<0.2")
    note = cluster.version_note()
    assert note is not None and note.startswith("warning: Ray ") and "\n" not in note
    assert "Ray >=0.1,<0.2" in note and "Optuna" not in note


def test_cpu_probe_reads_what_ray_reads(tmp_path, monkeypatch):
    from ray._private.utils import get_num_cpus  # only here, to hold ours to Ray's count

    assert cluster.cpus_ray_sees() == int(get_num_cpus())
    monkeypatch.delenv("RAY_USE_MULTIPROCESSING_CPU_COUNT", raising=False)
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cluster.cpus_ray_sees(v2) == (os.cpu_count() or 1)
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cluster.cpus_ray_sees(v2) == 1  # 1.5 CPUs, truncated as Ray does
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpuset").mkdir()
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (v1 / "cpuset" / "cpuset.cpus").write_text("0-2,5\n")
    assert cluster.cpus_ray_sees(v1) == 4  # no quota (-1); the CPU set counts, as in Ray


def test_dashboard_line_names_the_token_when_ray_uses_one(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert "ray get-auth-token" in cluster.dashboard_line("127.0.0.1:8265", remote=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert "token" not in cluster.dashboard_line("127.0.0.1:8265", remote=False)
