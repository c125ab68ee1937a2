"""`sweep.py evaluate` and `sweep.py transfer` on a small real sweep's checkpoints and plain state dicts."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pandas as pd
import pytest
import torch

from tune_robust.cli import main
from tune_robust.models import create_model
from tune_robust.models.checkpoint import load_checkpoint, plain_state_dict


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    code = main(
        ["wrn_depth_grid", "--max-trials", "2", "--set", "train.epochs=2", "--results-dir", str(root), "-q"]
    )
    assert code == 0
    return root


def test_evaluate_our_checkpoints_matches_training_suite(capsys, sweep_dir):
    code, out, err = run_cli(
        capsys,
        "evaluate",
        "--from-sweep",
        str(sweep_dir / "wrn_depth_grid"),
        "--results-dir",
        str(sweep_dir),
        # published numbers to compare with (what --leaderboard fills in for a RobustBench model)
        *("--set", "eval.leaderboard_clean_acc=0.9", "--set", "eval.leaderboard_autoattack_acc=0.5"),
        "-q",
    )
    assert code == 0, err
    ev = pd.read_parquet(sweep_dir / "evaluate" / "trials.parquet")
    tr = pd.read_parquet(sweep_dir / "wrn_depth_grid" / "trials.parquet")
    assert len(ev) == 2 and (ev["status"] == "TERMINATED").all()
    assert set(ev["checkpoint_label"]) == {"wrn depths=1-1-1", "wrn depths=1-1-3"}
    for col in ("test_fgsm_acc", "test_pgd20_acc", "test_mim_acc", "test_cw_inf_acc", "test_worst_acc"):
        assert ev[col].between(0, 1).all()
    # The same weights give the same clean accuracy as the training sweep's own evaluation
    ev["state_dir"] = ev["upstream.model"].map(lambda p: str(Path(p).parent))  # <state dir>/model.pt
    merged = ev.merge(tr, left_on="state_dir", right_on="checkpoint_path", suffixes=("", "_train"))
    assert len(merged) == 2
    assert (merged["test_clean_acc"] == merged["test_clean_acc_train"]).all()
    assert (ev["test_worst_acc"] <= ev["test_pgd20_acc"]).all()
    assert "top configs by test_worst_acc" in out
    # the published numbers ride along, and the report sets ours against them
    assert (ev["leaderboard_clean_acc"] == 0.9).all() and (ev["leaderboard_autoattack_acc"] == 0.5).all()
    code, _, err = run_cli(capsys, "report", "evaluate", "--results-dir", str(sweep_dir))
    assert code == 0, err
    summary = (sweep_dir / "evaluate" / "report" / "summary.md").read_text()
    section = summary.split("Published accuracies (RobustBench leaderboard) against ours", 1)[1]
    for _, row in ev.iterrows():
        diff = 100 * (row["test_clean_acc"] - 0.9)
        assert f"{row['checkpoint_label']}" in section and f"{diff:+.2f} [" in section


@pytest.fixture(scope="module")
def white_box_transfer(sweep_dir):
    """``sweep.py transfer`` (white-box protocol) on the two trials; its stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(
            ["transfer", "--from-sweep", str(sweep_dir / "wrn_depth_grid"), "--results-dir", str(sweep_dir)]
        )
    assert code == 0
    return out.getvalue()


def test_transfer_matrix_and_heatmap(sweep_dir, white_box_transfer):
    out = white_box_transfer
    m = pd.read_parquet(sweep_dir / "transfer" / "transfer.parquet")
    assert len(m) == 4 and set(m["source"]) == set(m["target"])
    assert m["accuracy"].between(0, 1).all() and (m["robust_accuracy"] <= m["clean_accuracy"]).all()
    assert (m["protocol"] == "white_box").all() and (m["crafted_on"] == m["source_path"]).all()
    # White-box (diagonal) examples hurt a model at least as much as examples transferred from another
    for t in m["target"].unique():
        col = m[m["target"] == t].set_index("source")["accuracy"]
        assert col[t] <= col.drop(t).min() + 1e-9
    png = sweep_dir / "transfer" / "transfer.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    assert "rows: source" in out


@pytest.fixture(scope="module")
def seed1_dir(tmp_path_factory):
    """The same two trials as ``sweep_dir`` trained again with another seed: their independent copies."""
    root = tmp_path_factory.mktemp("seed1")
    args = ["wrn_depth_grid", "--max-trials", "2", "--set", "train.epochs=2", "--set", "train.seed=1"]
    code = main([*args, "--results-dir", str(root), "-q"])
    assert code == 0
    return root


@pytest.mark.slow  # default run under 10 minutes (CI runs it with the slow tests)
def test_transfer_from_independent_copies(capsys, sweep_dir, seed1_dir, white_box_transfer, tmp_path):
    """RobNet supplement Table 4: each source's examples are crafted on its other-seed copy."""
    code, out, err = run_cli(
        capsys,
        "transfer",
        "--from-sweep",
        str(sweep_dir / "wrn_depth_grid"),
        "--craft-on-sweep",
        str(seed1_dir / "wrn_depth_grid"),
        "--set",
        "eval.transfer_protocol=independent_copy",
        "--results-dir",
        str(tmp_path),
        "-q",
    )
    assert code == 0, err
    assert "crafted on its copy" in out
    m = pd.read_parquet(tmp_path / "transfer" / "transfer.parquet")
    assert len(m) == 4 and (m["protocol"] == "independent_copy").all()
    seed0 = pd.read_parquet(sweep_dir / "wrn_depth_grid" / "trials.parquet")
    seed1 = pd.read_parquet(seed1_dir / "wrn_depth_grid" / "trials.parquet")
    copy_of = {
        str(Path(a) / "model.pt"): str(Path(b) / "model.pt")
        for a, b in seed0.merge(seed1, on="model.depths")[
            ["checkpoint_path_x", "checkpoint_path_y"]
        ].itertuples(index=False)
    }
    assert len(copy_of) == 2
    # Every row was crafted on the copy of its own source (same depths, seed 1), never on the source
    for row in m.itertuples():
        assert Path(row.crafted_on) == Path(copy_of[row.source_path]).resolve()
    # The diagonal is no longer white-box: a model resists examples from its copy better than its own
    white = pd.read_parquet(sweep_dir / "transfer" / "transfer.parquet")
    for t in m["target"].unique():
        own = white[(white["source"] == t) & (white["target"] == t)]["accuracy"].item()
        from_copy = m[(m["source"] == t) & (m["target"] == t)]["accuracy"].item()
        assert from_copy > own


def test_independent_copy_needs_a_copy(capsys, sweep_dir, tmp_path):
    code, _out, err = run_cli(
        capsys,
        "transfer",
        "--from-sweep",
        str(sweep_dir / "wrn_depth_grid"),
        "--fidelity",
        "paper",
        "--dataset",
        "digits",
        "--results-dir",
        str(tmp_path),
        "-q",
    )
    assert code == 2 and err.count("error:") == 1
    assert "independently trained copy" in err and "--craft-on" in err
    code, _out, err = run_cli(
        capsys,
        "transfer",
        "--from-sweep",
        str(sweep_dir / "wrn_depth_grid"),
        "--craft-on-sweep",
        str(sweep_dir / "wrn_depth_grid"),
        "--results-dir",
        str(tmp_path),
        "-q",
    )
    assert code == 2 and "eval.transfer_protocol=independent_copy" in err
    assert not (tmp_path / "transfer").exists()


def test_plain_state_dict_with_prefixes_and_normalisation(capsys, tmp_path):
    torch.manual_seed(0)
    model = create_model("wrn", 10, 1, depths=(1, 1, 1), widths=(0.5, 0.5, 0.5))
    path = tmp_path / "external.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    assert set(plain_state_dict(torch.load(path), path)) == set(model.state_dict())
    loaded = load_checkpoint(
        path,
        arch="wrn",
        model_kwargs={"depths": (1, 1, 1), "widths": (0.5,) * 3},
        num_classes=10,
        in_channels=1,
        mean=(0.5,),
        std=(0.25,),
    )
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(loaded(x), model.eval()((x - 0.5) / 0.25), atol=1e-6)
    code, _out, err = run_cli(
        capsys,
        "evaluate",
        "--checkpoint",
        f"ext={path}",
        "--set",
        "model.depths=1,1,1",
        "--set",
        "model.widths=0.5,0.5,0.5",
        "--set",
        "eval.attacks=fgsm",
        "--set",
        "eval.limit=64",
        "--results-dir",
        str(tmp_path),
        "-q",
    )
    assert code == 0, err
    ev = pd.read_parquet(tmp_path / "evaluate" / "trials.parquet")
    assert ev["checkpoint_label"].tolist() == ["ext"] and ev["test_eval_examples"].tolist() == [64]


def test_bad_checkpoints_fail_with_one_clear_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "evaluate", "--results-dir", str(tmp_path))
    assert code == 2 and "pass --checkpoint PATH" in err
    code, _, err = run_cli(
        capsys, "evaluate", "--checkpoint", str(tmp_path / "nope.pt"), "--results-dir", str(tmp_path)
    )
    assert code == 2 and "does not exist" in err
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    code, _, err = run_cli(
        capsys, "evaluate", "--checkpoint", str(tmp_path / "junk.pt"), "--results-dir", str(tmp_path)
    )
    assert code == 2 and "cannot read checkpoint" in err
    model = create_model("wrn", 3, 1, depths=(1, 1, 1), widths=(0.5,) * 3)
    ours = tmp_path / "model.pt"
    blob = {"arch": "wrn", "kwargs": {"depths": (1, 1, 1), "widths": (0.5,) * 3}, "num_classes": 3}
    torch.save({**blob, "in_channels": 1, "state_dict": model.state_dict()}, ours)
    code, _, err = run_cli(capsys, "evaluate", "--checkpoint", str(ours), "--results-dir", str(tmp_path))
    assert code == 2 and "trained for 3 classes" in err
    code, _, err = run_cli(
        capsys,
        "evaluate",
        "--checkpoint",
        str(ours),
        "--set",
        "eval.attacks=pgd20,bogus",
        "--results-dir",
        str(tmp_path),
    )
    assert code == 2 and "unknown attack 'bogus'" in err and err.count("\n") == 1
