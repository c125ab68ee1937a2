"""Multi-stage sweeps: an upstream sweep hands its best checkpoint to the next stage, or is refused."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from tune_robust.cli import main
from tune_robust.search_spaces.wrn import SMOKE_DIGITS
from tune_robust.sweeps import SWEEPS, SweepSpec, Upstream
from tune_robust.training.loop import load_model_file


@pytest.fixture(scope="module", autouse=True)
def finetune_sweep():
    base = {k: dict(v) for k, v in SMOKE_DIGITS.items()}
    base["model"]["depths"] = (1, 1, 1)
    base["train"] = {**base["train"], "epochs": 1, "lr": 1e-9, "warmup_epochs": 0}

    def test_finetune_stage() -> SweepSpec:
        return SweepSpec(
            name="test_finetune_stage",
            description="test only: continue the best wrn_depth_grid trial",
            trainable="adversarial_training",
            fidelities={"smoke": base},
            upstream=(Upstream("init", sweep="wrn_depth_grid"),),
        )

    SWEEPS.register("test_finetune_stage")(test_finetune_stage)
    yield
    SWEEPS.unregister("test_finetune_stage")  # no test sweep left in the registry for later tests


def test_missing_upstream_is_refused_before_ray_and_by_the_dry_run_alike(tmp_path, capsys):
    code = main(["test_finetune_stage", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "run `python sweep.py wrn_depth_grid` first" in err
    assert main(["test_finetune_stage", "--results-dir", str(tmp_path), "--dry-run"]) == 2
    assert capsys.readouterr().err == err  # the same one line


@pytest.mark.slow  # default run under 10 minutes (CI runs it with the slow tests)
def test_stage_starts_from_upstream_best_checkpoint(tmp_path, capsys):
    common = ["--results-dir", str(tmp_path), "-q"]
    assert main(["wrn_depth_grid", "--max-trials", "1", "--set", "train.epochs=2", *common]) == 0
    upstream = pd.read_parquet(tmp_path / "wrn_depth_grid" / "trials.parquet").iloc[0]
    capsys.readouterr()
    assert main(["test_finetune_stage", "--dry-run", *common]) == 0
    dry = capsys.readouterr().out
    assert f"upstream.init = {upstream['checkpoint_path']}" in dry and dry.endswith("\n1 trials\n")
    assert main(["test_finetune_stage", *common]) == 0, capsys.readouterr().err
    stage = pd.read_parquet(tmp_path / "test_finetune_stage" / "trials.parquet").iloc[0]
    assert stage["status"] == "TERMINATED"
    assert stage["upstream.init"] == upstream["checkpoint_path"]
    # With lr 1e-9 one epoch barely moves the weights: the stage really started from the upstream model.
    a = load_model_file(upstream["checkpoint_path"]).state_dict()
    b = load_model_file(stage["checkpoint_path"]).state_dict()
    conv = "stem.weight"
    assert torch.allclose(a[conv], b[conv], atol=1e-5)
    assert abs(stage["best_clean_acc"] - upstream["best_clean_acc"]) < 0.05
    # --resume of the finished stage continues it (nothing to run) instead of refusing its options
    assert main(["test_finetune_stage", "--resume", *common]) == 0, capsys.readouterr().err
    again = pd.read_parquet(tmp_path / "test_finetune_stage" / "trials.parquet")
    assert len(again) == 1 and again.iloc[0]["trial_id"] == stage["trial_id"]


def _finetune_rows(directory, rows):
    import json

    import pandas as pd

    from tune_robust.models.oneshot import arch_record
    from tune_robust.models.robnet import RobNetSpace

    out = []
    for i, (convs, acc, code) in enumerate(rows):
        record = arch_record(RobNetSpace(5, True), RobNetSpace(5, True).from_text(code))
        out.append(
            {
                "trial_id": f"t{i}",
                "status": "TERMINATED",
                "checkpoint_path": f"/ckpt/{i}",
                "best_robust_acc": acc,
                "arch": json.dumps(record),
                "arch_sep_convs": float(convs),
                "model.share": True,
            }
        )
    directory.mkdir(parents=True)
    pd.DataFrame(out).to_parquet(directory / "trials.parquet")


def test_architecture_upstreams_add_each_budgets_winner_under_every_setting(tmp_path, capsys):
    """robnet_retrain: the best finetuned code per budget becomes a trial (trained from scratch at
    this sweep's size, under each seed the grid has), next to the published architectures."""
    from tune_robust.models.robnet_codes import LARGE
    from tune_robust.run import RunOptions, describe, plan

    a, b, c = (LARGE.replace("11", x, 1) for x in ("01", "10", "00"))
    _finetune_rows(tmp_path / "robnet_finetune", [(7, 0.3, a), (7, 0.5, b), (13, 0.4, c)])
    options = RunOptions(results_dir=str(tmp_path), sets=("train.seed=3",))
    p = plan("robnet_retrain", options)
    assert len(p.points) == 1 and len(p.configs) == 3  # the plan holds the upstream's trials
    assert any("robnet_free_search" in n for n in p.notes)  # optional, not run: said, skipped
    text = describe(p)
    assert "from robnet_finetune:arch_sep_convs:13 (t2)" in text and text.endswith("\n3 trials")
    assert [c["eval"]["label"] for c in p.configs] == [
        "published:robnet_large code",
        "robnet_finetune:arch_sep_convs:7 (t1)",
        "robnet_finetune:arch_sep_convs:13 (t2)",
    ]
    seven, thirteen = p.configs[1:]
    assert seven["model"] == {"arch": "robnet", "channels": 4, "layers": 5, "code": b}  # 0.5 beats 0.3
    assert thirteen["model"]["code"] == c
    assert not seven.get("upstream") and seven["train"]["seed"] == 3  # from scratch, same setting
    assert p.num_trials == 3


def test_an_upstream_where_filter_with_no_match_is_one_clear_error(tmp_path):
    from tune_robust.errors import ConfigError
    from tune_robust.models.robnet_codes import LARGE
    from tune_robust.run import RunOptions, plan

    _finetune_rows(tmp_path / "robnet_supernet", [(13, 0.4, LARGE)])  # a cell-based supernet only
    with pytest.raises(ConfigError, match=r"no finished trial with \{'model.share': False\}"):
        plan("robnet_free_search", RunOptions(results_dir=str(tmp_path)))


def test_architectures_of_an_unfinished_sweep_are_refused_and_a_resume_keeps_its_choice(tmp_path, capsys):
    import json

    from tune_robust.errors import ConfigError
    from tune_robust.models.robnet_codes import LARGE
    from tune_robust.run import RunOptions, plan

    _finetune_rows(tmp_path / "robnet_finetune", [(7, 0.3, LARGE.replace("11", "01", 1))])
    finished = plan("robnet_retrain", RunOptions(results_dir=str(tmp_path)))  # no sweep.json: taken
    state = {"fingerprint": {"strategy": {"num_samples": 3}}}
    (tmp_path / "robnet_finetune" / "sweep.json").write_text(json.dumps(state))
    with pytest.raises(ConfigError, match="has 1 of its 3 trials; finish it first"):
        plan("robnet_retrain", RunOptions(results_dir=str(tmp_path)))
    # --resume of a retrain started earlier: its recorded trials stand, whatever the upstream holds now
    first = dict(finished.configs[0])
    chosen = {**first, "model": {"arch": "robnet", "channels": 4, "layers": 5, "code": LARGE}}
    (tmp_path / "robnet_retrain").mkdir()
    record = {"fingerprint": {"configs": [first, chosen]}}
    (tmp_path / "robnet_retrain" / "sweep.json").write_text(json.dumps(record))
    again = plan("robnet_retrain", RunOptions(results_dir=str(tmp_path), resume=True))
    assert list(again.configs[1:]) == json.loads(json.dumps([chosen]))  # as sweep.json holds it
    assert any("keeps the 1 upstream" in n for n in again.notes)


def test_robnet_transfer_without_a_retrain_says_what_to_run(tmp_path):
    from tune_robust.errors import ConfigError
    from tune_robust.run import RunOptions, plan

    with pytest.raises(ConfigError, match=r"run `python sweep.py robnet_retrain` first"):
        plan("robnet_transfer", RunOptions(results_dir=str(tmp_path)))
