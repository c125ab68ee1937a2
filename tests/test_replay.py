"""Replay: the simulated clock, the measures, the table format and its refusals, a finished sweep as a
source, and the whole path through sweep.py with a plugin's search method."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from tune_robust.analysis import replay as rp
from tune_robust.analysis.report import write_report
from tune_robust.errors import ConfigError
from tune_robust.results.writer import config_columns
from tune_robust.run import grid_configs
from tune_robust.run.options import RunOptions
from tune_robust.searchers.grid import Random
from tune_robust.sweeps import get_sweep

ROOT = Path(__file__).resolve().parents[1]


def _table(
    seconds: dict[int, list[float]], rank: dict[int, float], **per_config: dict[int, float]
) -> pd.DataFrame:
    """A long table: config column ``x``, one row per epoch; the metric is the epoch's index / 10 plus
    the config's rank value (so later epochs and better configs report more)."""
    rows = []
    for x, secs in seconds.items():
        for epoch, s in enumerate(secs, 1):
            row = {"x": x, "epoch": epoch, "val_acc": rank[x] + epoch / 10, "seconds": s, "test_acc": rank[x]}
            row.update({k: v[x] for k, v in per_config.items()})
            rows.append(row)
    return pd.DataFrame(rows)


def _source(tmp_path: Path, frame: pd.DataFrame, name: str = "t.parquet", **kw: object) -> rp.Source:
    path = tmp_path / name
    frame.to_csv(path, index=False) if path.suffix == ".csv" else frame.to_parquet(path)
    return rp.table_source(path, ["x"], "val_acc", rank_by="test_acc", **kw)  # type: ignore[arg-type]


def test_the_clock_runs_n_trials_at_a_time_for_their_recorded_seconds(tmp_path):
    # Two workers, grid order: x=1 (1 s + 1 s) and x=2 (5 + 5) start at 0; x=3 takes x=1's worker at 2 s,
    # x=4 x=3's at 4 s. x=2's first epoch and x=4's first both end at 5 s: x=2's report arrived first.
    frame = _table({1: [1, 1], 2: [5, 5], 3: [1, 1], 4: [1, 1]}, {1: 0.1, 2: 0.3, 3: 0.2, 4: 0.4})
    source = _source(tmp_path, frame)
    log = rp.simulate(source, rp.resolve(source, "grid", "fifo"), 2)
    assert log.end.tolist() == [1, 2, 3, 4, 5, 5, 6, 10]
    assert log.config.tolist() == [0, 0, 2, 2, 1, 3, 3, 1]
    assert log.epoch.tolist() == [1, 2, 1, 2, 1, 1, 2, 2]
    assert log.completed.tolist() == [False, True, False, True, False, False, True, True]
    row, curves = rp.measure(log, source.objective)
    # Compute is counted as epochs end: x=4 (the best) completes after 1+1+1+1+5+1+1 = 11 of 16 seconds;
    # the top 5 of 4 configs is every config: x=1 after 2 s.
    assert row["top1_share"] == pytest.approx(11 / 16) and row["top5_share"] == pytest.approx(2 / 16)
    assert row["top1_wall_hours"] == pytest.approx(6 / 3600) and row["compute_share"] == 1.0
    assert row["returns"] == "x=4" and row["returns_value"] == pytest.approx(0.4)
    # At 10% (1.6 s) nothing has completed; at 25% (4 s) and 50% (8 s) x=1 and x=3: best 0.2
    assert np.isnan(row["regret_10"])
    assert row["regret_25"] == pytest.approx(0.2) and row["regret_50"] == pytest.approx(0.2)
    best = curves["best"]
    assert np.isnan(best[0]) and best[-1] == pytest.approx(0.4)
    assert (np.diff(best[~np.isnan(best)]) >= 0).all()


def test_set_up_and_the_final_suite_are_charged_to_a_trial_that_completes(tmp_path):
    frame = _table(
        {1: [1, 1], 2: [1, 1]}, {1: 0.1, 2: 0.2}, setup_seconds={1: 3, 2: 3}, final_seconds={1: 2, 2: 2}
    )
    source = _source(tmp_path, frame)
    log = rp.simulate(source, rp.resolve(source, "grid", "fifo"), 1)
    assert log.seconds.tolist() == [4, 3, 4, 3] and log.end.tolist() == [4, 7, 11, 14]
    assert source.objective.trial_seconds().tolist() == [7, 7]


@dataclass(frozen=True)
class _Trial:
    trial_id: str
    last_result: dict = field(default_factory=dict)


def _ray_asha_serially(frame: pd.DataFrame, order: list[int], configs: list[int]) -> dict[int, int]:
    """Ray's own ASHAScheduler fed the configs one at a time in ``order``: epochs each config ran."""
    asha = ASHAScheduler(
        time_attr="epoch", metric="val_acc", mode="max", max_t=9, grace_period=1, reduction_factor=3
    )
    ran = {}
    for i in order:
        x = configs[i]
        asha.on_trial_add(None, _Trial(f"t{x}"))
        for epoch in range(1, 10):
            value = float(frame[(frame["x"] == x) & (frame["epoch"] == epoch)]["val_acc"].iloc[0])
            decision = asha.on_trial_result(None, _Trial(f"t{x}"), {"epoch": epoch, "val_acc": value})
            if decision == TrialScheduler.STOP or epoch == 9:
                asha.on_trial_complete(None, _Trial(f"t{x}"), {"epoch": epoch, "val_acc": value})
                ran[x] = epoch
                break
    return ran


def test_replayed_asha_stops_the_trials_rays_asha_stops(tmp_path):
    rng = np.random.default_rng(0)
    seconds = {x: [1.0] * 9 for x in range(40)}
    frame = _table(seconds, {x: float(v) for x, v in enumerate(rng.normal(0, 0.3, 40))})
    frame["val_acc"] += rng.normal(0, 0.2, len(frame))  # noisy curves: the rungs cut many
    source = _source(tmp_path, frame)
    for seed in (0, 1):
        strategy = rp.resolve(source, "random", "asha", seed=seed)
        log = rp.simulate(source, strategy, 1)
        configs = [int(c["x"]) for c in source.configs]
        ran = {configs[c]: int(e) for c, e in zip(log.config, log.epoch, strict=True)}  # last epoch wins
        expected = _ray_asha_serially(frame, Random().planned(40, 40, seed), configs)
        assert ran == expected
        assert 0 < sum(e < 9 for e in ran.values()) < 40  # some stopped, some ran to the end


def test_hypervolume_is_the_dominated_area():
    # (acc, params) (0.9, 10), (0.8, 5), (0.5, 1), reference (0.4, 12):
    # 0.5 x 2 (params 12-10) + 0.4 x 5 (10-5) + 0.1 x 4 (5-1) = 1.0 + 2.0 + 0.4
    assert rp.hypervolume([0.9, 0.8, 0.5], [10, 5, 1], (0.4, 12)) == pytest.approx(3.4)
    assert rp.hypervolume([0.9, 0.8, 0.85], [10, 5, 11], (0.4, 12)) == pytest.approx(0.5 * 2 + 0.4 * 5)


def test_a_table_of_every_combination_is_searched_dimension_by_dimension(tmp_path):
    rows = [
        {
            "a": a,
            "b": b,
            "epoch": e,
            "acc": a + (b == "v") / 10 + e / 100,
            "seconds": 1.0,
            "params": a * 10 + (b == "v"),
        }
        for a in (1, 2, 3)
        for b in ("u", "v")
        for e in (1, 2)
    ]
    path = tmp_path / "bench.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    source = rp.table_source(path, ["a", "b"], "acc")
    assert {k: list(g.values) for k, g in source.space.items()} == {"a": [1, 2, 3], "b": ["u", "v"]}
    assert source.objective.labels[0] == "a=1, b=u" and source.objective.per_config["params"][-1] == 31
    result = rp.replay(source, rp.strategies(["tpe", "nsga2"]), repeats=3)
    assert (result.runs["trials"] == 6).all()  # both default to 6 of the 6 configs
    assert result.curves["hypervolume"].max() == pytest.approx(1.0)  # every config completed: the whole front
    # A table missing one combination: the space is its configs, one choice each, and no proposal lies outside
    path2 = tmp_path / "sparse.parquet"
    pd.DataFrame([r for r in rows if (r["a"], r["b"]) != (3, "v")]).to_parquet(path2)
    sparse = rp.table_source(path2, ["a", "b"], "acc")
    assert list(sparse.space) == ["a + b"] and sparse.objective.size == 5
    assert (rp.replay(sparse, rp.strategies(["tpe"]), repeats=2).runs["completed"] == 5).all()


@pytest.mark.parametrize(
    "change, args, message",
    [
        (lambda f: f.drop(columns="seconds"), {}, "no column seconds"),
        (lambda f: f.drop(columns="x"), {}, r"no column x \(a config column\)"),
        (lambda f: pd.concat([f, f.iloc[:1]]), {}, "holds x=1 epoch 1 twice"),
        (lambda f: f[~((f["x"] == 2) & (f["epoch"] == 1))], {}, "x=2 has 1 epochs recorded up to epoch 2"),
        (lambda f: f.assign(seconds=-1.0), {}, "seconds must hold numbers >= 0"),
        (lambda f: f.assign(val_acc="high"), {}, "val_acc must be numeric"),
        (lambda f: f[f["epoch"] == 1].drop(columns="epoch"), {"scheduler": "asha"}, "asha needs per-epoch"),
        (lambda f: f, {"search": "nsga2"}, "optimises params, which the table's trials do not report"),
        (
            lambda f: f.assign(test_acc=np.where(f["x"] == 2, np.nan, f["test_acc"])),
            {},
            "test_acc is empty at",
        ),
        (lambda f: f, {"search": "tpe", "objectives": ("loss:min",)}, "optimises loss"),
        (lambda f: f, {"search": "random", "num_samples": 9}, "the grid has 3, --num-samples 9"),
        (lambda f: f, {"search": "no_such_method"}, "--search"),
    ],
)
def test_a_table_a_replay_cannot_use_is_one_clear_error(tmp_path, change, args, message):
    frame = _table({1: [1, 1], 2: [1, 1], 3: [1, 1]}, {1: 0.1, 2: 0.2, 3: 0.3})
    with pytest.raises(ConfigError, match=message):
        source = _source(tmp_path, change(frame))
        search = str(args.pop("search", "grid"))
        scheduler = str(args.pop("scheduler", "fifo"))
        rp.resolve(source, search, scheduler, **args)  # type: ignore[arg-type]


def test_a_table_is_read_from_csv_as_from_parquet_and_other_files_are_refused(tmp_path):
    frame = _table({1: [1, 2], 2: [2, 1], 3: [1, 1]}, {1: 0.1, 2: 0.2, 3: 0.3})
    pairs = rp.strategies(["random", "random+asha"])
    a = rp.replay(_source(tmp_path, frame, "t.csv"), pairs, repeats=4).runs
    b = rp.replay(_source(tmp_path, frame, "t.parquet"), pairs, repeats=4).runs
    pd.testing.assert_frame_equal(a, b)
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"as \.parquet or \.csv"):
        rp.table_source(tmp_path / "t.json", ["x"], "val_acc")


def _finished_grid(
    d: Path, drop: int = 0, stopped: bool = False, sweep: str = "wrn_depth_grid"
) -> pd.DataFrame:
    """A finished smoke grid written as the runner writes it (without training): every config of the
    grid, 5 epochs, numbers from a fixed random draw; ``drop`` leaves the last configs out."""
    spec = get_sweep(sweep)
    configs = grid_configs(spec, RunOptions())
    rng = np.random.default_rng(1)
    trials, epochs = [], []
    for n, cfg in enumerate(configs[: len(configs) - drop]):
        tid = f"t{n:03d}"
        trials.append(
            {
                "trial_id": tid,
                "status": "TERMINATED",
                **config_columns(cfg),
                "params": 1000 + n,
                "best_robust_acc": float(rng.uniform(0.6, 0.85)),
                "wall_seconds": 12.0,
                "eval_suite_seconds": 2.0,
                "stopped_by_scheduler": stopped and n == 0,
            }
        )
        epochs += [
            {
                "trial_id": tid,
                "epoch": e,
                "val_robust_acc": float(rng.uniform(0.2, 0.8)),
                "train_seconds": 1.5,
            }
            for e in range(1, 6)
        ]
    d.mkdir(parents=True)
    pd.DataFrame(trials).to_parquet(d / "trials.parquet")
    pd.DataFrame(epochs).to_parquet(d / "epochs.parquet")
    state = {
        "fingerprint": {"sweep": sweep, "fidelity": "smoke"},
        "options": {"fidelity": "smoke"},
    }
    (d / "sweep.json").write_text(json.dumps(state))
    return pd.DataFrame(trials)


def test_a_finished_sweep_replays_over_its_own_grid_and_search_space(tmp_path):
    d = tmp_path / "wrn_depth_grid"
    trials = _finished_grid(d)
    source = rp.sweep_source(d)
    assert source.objective.size == 125 and source.keys == ("model.depths",)
    assert list(source.space) == ["model.depths"] and source.metric == "val_robust_acc"
    assert source.objective.rank_by == "best_robust_acc"
    # The objective of each config is its own trial's: rank values, and at its end the suite (2 s) and the
    # rest of its wall seconds outside epochs (12 - 5 x 1.5 - 2 = 2.5 s)
    by_label = dict(zip(source.objective.labels, source.objective.rank, strict=True))
    assert all(
        by_label[f"model.depths={r['model.depths']}"] == r["best_robust_acc"] for _, r in trials.iterrows()
    )
    assert (source.objective.setup_seconds == 0).all() and (source.objective.final_seconds == 4.5).all()
    result = rp.replay(source, rp.strategies(["grid", "random", "tpe", "random+asha"]), repeats=2)
    runs = result.runs.set_index(["strategy", "repeat"])
    assert runs.loc[("tpe", 0), "trials"] == 32 and runs.loc[("grid", 0), "compute_share"] == 1.0
    assert runs.loc[("random+asha", 0), "compute_share"] < 0.6
    # A live run read back as a log measures as its replay does: here the "live run" is a replay's log
    log = rp.simulate(source, rp.resolve(source, "random", "asha", seed=3), 2)
    _write_as_run(tmp_path / "live", trials, log, source)
    live, replayed = (
        rp.measure(x, source.objective)[0] for x in (rp.run_log(tmp_path / "live", source), log)
    )
    assert live["returns"] == replayed["returns"]
    numbers = [k for k, v in replayed.items() if not isinstance(v, str)]
    assert [live[k] for k in numbers] == pytest.approx([replayed[k] for k in numbers], nan_ok=True)
    # A live trial that was stopped spends a little wall time outside its epochs too: counted as it ends
    _write_as_run(tmp_path / "live2", trials, log, source, stopped_extra=0.25)
    live2 = rp.measure(rp.run_log(tmp_path / "live2", source), source.objective)[0]
    stopped = len(set(log.trial)) - int(log.completed.sum())
    assert live2["trial_hours"] == pytest.approx(replayed["trial_hours"] + 0.25 * stopped / 3600)


def test_a_sweep_whose_configs_set_different_keys_matches_its_trials(tmp_path):
    # arch_zoo_at: each architecture sets its own model keys, so a column is empty where a config has no
    # such key, and an int column with gaps reads back from Parquet as float
    d = tmp_path / "arch_zoo_at"
    trials = _finished_grid(d, sweep="arch_zoo_at")
    assert trials.isna().any().any()
    source = rp.sweep_source(d)
    assert source.objective.size == len(trials)
    by_label = dict(zip(source.objective.labels, source.objective.rank, strict=True))
    assert sorted(by_label.values()) == sorted(trials["best_robust_acc"])
    # the test number ranks configs but no trial reports it before it ends
    assert "best_robust_acc" not in source.objective.report(
        0, 1
    ) and "val_robust_acc" in source.objective.report(0, 1)
    with pytest.raises(ConfigError, match="which the table's trials do not report"):
        rp.resolve(source, "tpe", "fifo", objectives=("best_robust_acc:max",))


def _write_as_run(
    d: Path, grid: pd.DataFrame, log: rp.Log, source: rp.Source, stopped_extra: float = 0.0
) -> None:
    """``log`` written as the runner would have written that run (its epochs, their end times)."""
    d.mkdir()
    o = source.objective
    epochs = pd.DataFrame(
        {
            "trial_id": [f"r{t:03d}" for t in log.trial],
            "epoch": log.epoch,
            "train_seconds": o.seconds[log.config, log.epoch - 1],
            "epoch_end_time": 1e9 + log.end,
        }
    )
    config_of = dict(zip(epochs["trial_id"], log.config, strict=False))
    trials = []
    for tid, epochs_run in epochs.groupby("trial_id")["epoch"].max().items():
        label = o.labels[config_of[tid]].split("=", 1)[1]
        row = {**grid[grid["model.depths"] == label].iloc[0].to_dict(), "trial_id": tid}
        row["stopped_by_scheduler"] = epochs_run < 5
        if row["stopped_by_scheduler"]:  # no suite ran: its wall seconds are its epochs and the extra
            row["wall_seconds"], row["eval_suite_seconds"] = stopped_extra + 1.5 * epochs_run, np.nan
        trials.append(row)
    epochs.to_parquet(d / "epochs.parquet")
    pd.DataFrame(trials).to_parquet(d / "trials.parquet")


@pytest.mark.parametrize(
    "drop, stopped, sets, message",
    [
        (3, False, (), r"3 of the 125 configs of wrn_depth_grid \(smoke\) have no finished trial"),
        (0, True, (), "stopped early by its scheduler"),
        (0, False, ("train.epochs=3",), r"125 of the 125 configs .*--set train.epochs=3"),
        (0, False, ("model.depths=1,1,1",), "1 config under these options; nothing to search"),
    ],
)
def test_a_sweep_that_does_not_hold_the_grid_is_refused_in_one_line(tmp_path, drop, stopped, sets, message):
    d = tmp_path / "wrn_depth_grid"
    _finished_grid(d, drop=drop, stopped=stopped)
    with pytest.raises(ConfigError, match=message):
        rp.sweep_source(d, sets)


PLUGIN = textwrap.dedent(
    """
    import torch
    from torch import nn

    from tune_robust.models import register_model
    from tune_robust.searchers import SearchMethod, register_search
    from tune_robust.sweeps import Grid, SweepSpec, register_sweep


    @register_model
    def replay_tiny_mlp(num_classes: int = 10, in_channels: int = 1, hidden: int = 16) -> nn.Module:
        width = 64 * in_channels
        layers = [nn.Flatten(), nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)]
        return nn.Sequential(*layers)


    @register_sweep
    def replay_grid() -> SweepSpec:
        return SweepSpec(
            name="replay_grid",
            description="a tiny grid to replay",
            trainable="adversarial_training",
            fidelities={
                "smoke": {
                    "data": {"dataset": "digits", "val_fraction": 0.15},
                    "model": {"arch": "replay_tiny_mlp"},
                    "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "warmup_epochs": 0},
                    "method": {"name": "standard"},
                    "attack": {"name": "none"},
                    "eval_attack": {"name": "fgsm", "eps": 0.1},
                    "eval": {"attacks": ("fgsm",), "sanity": False, "metrics": False},
                }
            },
            space={"model.hidden": Grid([4, 16]), "train.lr": Grid([0.02, 0.1])},
        )


    @register_search("last_three")
    class LastThree(SearchMethod):
        \"\"\"The grid's last three configs, last first.\"\"\"

        def num_samples(self, grid_size, requested):
            return 3

        def searcher(self, inputs):
            from tune_robust.searchers._points import PointsSearcher

            return PointsSearcher(list(inputs.configs)[::-1][:3])
    """
)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "sweep.py"), *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_replay_through_sweep_py_with_a_plugin_search_method(tmp_path):
    plugin = tmp_path / "elsewhere" / "my_lab_search.py"
    plugin.parent.mkdir()
    plugin.write_text(PLUGIN)
    results = tmp_path / "results"
    out = _cli("replay_grid", "--plugin", str(plugin), "--results-dir", str(results), "-q")
    assert out.returncode == 0, out.stderr[-3000:]
    d = results / "replay_grid"
    search = "grid,random,last_three,random+asha"
    out = _cli("replay", str(d), "--plugin", str(plugin), "--search", search, "--repeats", "4")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "replay of replay_grid (smoke): 4 configs" in out.stdout
    runs = pd.read_parquet(d / "replay" / "replay.parquet")
    assert sorted(runs["strategy"].unique()) == sorted(search.split(","))
    assert len(runs) == 16 and (runs["concurrency"] == 2).all()
    # The plugin's method ran its three configs, the grid's last three, at their cost
    # (a trial's cost is its wall seconds: set-up, epochs and suite)
    mine = runs[runs["strategy"] == "last_three"]
    assert (mine["trials"] == 3).all() and (mine["completed"] == 3).all()
    trials = pd.read_parquet(d / "trials.parquet")
    last = trials[
        [
            (h, lr) in {(4, 0.1), (16, 0.02), (16, 0.1)}
            for h, lr in zip(trials["model.hidden"], trials["train.lr"], strict=True)
        ]
    ]
    assert len(last) == 3
    assert mine["compute_share"].iloc[0] == pytest.approx(
        last["wall_seconds"].sum() / trials["wall_seconds"].sum()
    )
    assert (runs[runs["strategy"] == "grid"]["compute_share"] == 1.0).all()
    # The report draws the replay
    write_report(d)
    md = (d / "report" / "summary.md").read_text()
    assert "Search strategies replayed" in md and (d / "report" / "replay.png").stat().st_size > 10_000
    # A grid wider than the sweep (epochs it never ran) is refused in one line, the earlier replay kept
    out = _cli("replay", str(d), "--plugin", str(plugin), "--set", "train.epochs=9")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "have no finished trial" in out.stderr
    assert len(pd.read_parquet(d / "replay" / "replay.parquet")) == 16


@pytest.mark.parametrize("scheduler", ["fifo", "asha"])
def test_the_searcher_hears_what_rays_controller_tells_it_in_its_order(tmp_path, scheduler):
    from tune_robust.searchers import SEARCHES, SearchMethod, register_search
    from tune_robust.searchers._points import PointsSearcher

    calls: list[tuple[object, ...]] = []

    class Recording(PointsSearcher):
        def suggest(self, trial_id):
            calls.append(("suggest", trial_id[-1]))
            return super().suggest(trial_id)

        def on_trial_result(self, trial_id, result):
            calls.append(("result", trial_id[-1], result["epoch"]))

        def on_trial_complete(self, trial_id, result=None, error=False):
            calls.append(("complete", trial_id[-1], result["epoch"]))

    @register_search("recording")
    class RecordingMethod(SearchMethod):
        def searcher(self, inputs):
            return Recording(list(inputs.configs))

    try:
        # 3 configs of 2 one-second epochs, 2 at a time; values rise so that ASHA cuts none
        source = _source(tmp_path, _table({1: [1, 1], 2: [1, 1], 3: [1, 1]}, {1: 0.1, 2: 0.2, 3: 0.3}))
        rp.simulate(source, rp.resolve(source, "recording", scheduler), 2)
    finally:
        SEARCHES.unregister("recording")
    # Ray: trials 0 and 1 start, 2 is suggested ahead; each epoch's result reaches the searcher unless
    # the scheduler stops the trial (ASHA at max_t, the last epoch); completion with the last result
    last = [] if scheduler == "asha" else [("result", "0", 2)]
    expected = [("suggest", "0"), ("suggest", "1"), ("suggest", "2"), ("result", "0", 1), ("result", "1", 1)]
    expected += [*last, ("complete", "0", 2), *[(c[0], "1", c[2]) for c in last], ("complete", "1", 2)]
    expected += [("result", "2", 1), *[(c[0], "2", c[2]) for c in last], ("complete", "2", 2)]
    assert calls == expected


def test_a_minimised_metric_ranks_the_lowest_first_and_regret_stays_positive(tmp_path):
    frame = _table({1: [1, 1], 2: [1, 1], 3: [1, 1]}, {1: 0.3, 2: 0.1, 3: 0.2})
    source = _source(tmp_path, frame, mode="min")
    assert rp.is_top(source.objective, 1).tolist() == [False, True, False]
    row, curves = rp.measure(rp.simulate(source, rp.resolve(source, "grid", "fifo"), 1), source.objective)
    assert row["returns"] == "x=2" and row["returns_value"] == pytest.approx(0.1)
    # after x=1 (2 of 6 s) the best so far is 0.3: regret 0.2; all three done: 0
    assert curves["regret"][40] == pytest.approx(0.2) and curves["regret"][-1] == pytest.approx(0.0)
    assert (curves["regret"][~np.isnan(curves["regret"])] >= 0).all()


def test_hypervolume_along_the_curve_and_a_gap_left_out_of_the_report(tmp_path):
    frame = _table(
        {1: [1, 1], 2: [5, 5], 3: [1, 1], 4: [1, 1]},
        {1: 0.1, 2: 0.3, 3: 0.2, 4: 0.4},
        params={1: 4, 2: 3, 3: 2, 4: 1},
    )
    source = _source(tmp_path, frame)
    row, curves = rp.measure(rp.simulate(source, rp.resolve(source, "grid", "fifo"), 2), source.objective)
    # reference: 1% beyond the worst value and the most params: (0.1 - 0.003, 4 + 0.03). At 4 s x=1 and
    # x=3 are done and x=3 dominates x=1: 0.103 x 2.03; the grid's front is x=4 alone: 0.303 x 3.03
    assert row["hypervolume_25"] == pytest.approx((0.103 * 2.03) / (0.303 * 3.03))
    assert curves["hypervolume"][-1] == pytest.approx(1.0) and curves["attack_passes"][-1] == 0
    gap = frame.astype({"val_acc": float})
    gap.loc[(gap["x"] == 1) & (gap["epoch"] == 1), "val_acc"] = np.nan
    report = _source(tmp_path, gap, "gap.parquet").objective.report(0, 1)
    assert "val_acc" not in report and report["params"] == 4 and report["epoch"] == 1
