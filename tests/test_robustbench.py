"""RobustBench zoo checkpoints (robustbench:DATASET/THREAT/NAME) and the leaderboard beside our numbers.

The reference, task and leaderboard checks need no package and run everywhere; what builds a zoo model
needs the ``robustbench`` package, whose torchvision must load with the installed torch (``make
robustbench``): those tests skip where it does not import, naming why.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import shared_data

from tune_robust.analysis.stats import leaderboard_comparison
from tune_robust.cli import main
from tune_robust.errors import ConfigError
from tune_robust.models import robustbench_zoo as zoo


def _robustbench_error() -> str:
    try:
        import robustbench  # noqa: F401
    except Exception as e:  # a torchvision built for another torch fails with RuntimeError, not ImportError
        return (str(e).splitlines() or [type(e).__name__])[-1][:200]
    return ""


NO_ROBUSTBENCH = _robustbench_error()
needs_robustbench = pytest.mark.skipif(
    bool(NO_ROBUSTBENCH), reason=f"robustbench does not import here: {NO_ROBUSTBENCH}"
)


@pytest.fixture(scope="module")
def board() -> Path:
    return shared_data("robustbench") / "leaderboard.json"


def test_references_parse_print_and_expand():
    ref = zoo.ZooRef.parse("robustbench:cifar10/Linf/Huang2021Exploring")
    assert (ref.dataset, ref.threat, ref.name, ref.model_dir) == ("cifar10", "Linf", "Huang2021Exploring", "")
    resolved = zoo.ZooRef.parse("robustbench:cifar10/Linf/Huang2021Exploring@/abs/models")
    assert resolved.folder == Path("/abs/models/cifar10/Linf") and resolved.key == str(ref)
    assert zoo.ZooRef.parse(str(resolved)) == resolved
    assert zoo.expand("robustbench:cifar10/L2/A, B") == [
        "robustbench:cifar10/L2/A",
        "robustbench:cifar10/L2/B",
    ]
    for bad, says in [
        ("robustbench:cifar10/Huang2021Exploring", "robustbench:DATASET/THREAT/NAME"),
        ("robustbench:mnist/Linf/X", "RobustBench's datasets are cifar10, cifar100, imagenet"),
        ("robustbench:cifar10/linf/X", "threat models are Linf, L2, corruptions"),
    ]:
        with pytest.raises(ConfigError, match=says):
            zoo.ZooRef.parse(bad)


def test_unknown_name_suggests_the_closest_zoo_names(board):
    names = sorted(zoo.leaderboard(board)["cifar10"]["Linf"])  # the zoo's published CIFAR-10 Linf names
    ref = zoo.ZooRef.parse("robustbench:cifar10/Linf/Huang2021Explorin")
    with pytest.raises(ConfigError, match="did you mean Huang2021Exploring"):
        zoo.check_name(ref, names)
    zoo.check_name(zoo.ZooRef.parse("robustbench:cifar10/Linf/Huang2021Exploring"), names)


def test_task_mismatches_are_refused():
    ref = zoo.ZooRef.parse("robustbench:cifar10/Linf/Huang2021Exploring")
    eps = 8 / 255
    zoo.check_task(ref, "cifar10", {"linf"}, {eps}, eps)
    cases = [
        (("digits", {"linf"}, {eps}, eps), "is a cifar10 model, but the sweep runs on 'digits'"),
        (
            ("cifar10", {"l2"}, {0.5}, eps),
            "ranked under the Linf threat model, but the sweep's attacks use l2",
        ),
        (("cifar10", {"linf"}, {0.1}, eps), "ranked at eps 0.031373, but the sweep's attacks use eps 0.1"),
    ]
    for args, says in cases:
        with pytest.raises(ConfigError, match=says):
            zoo.check_task(ref, *args)
    with pytest.raises(ConfigError, match="common corruptions"):
        zoo.check_task(zoo.ZooRef.parse("robustbench:cifar10/corruptions/X"), "cifar10", set(), set(), None)


def test_leaderboard_reads_the_snapshot_and_model_info_folders(board, tmp_path):
    ref = zoo.ZooRef.parse("robustbench:cifar10/Linf/Huang2021Exploring")
    numbers = zoo.published(zoo.leaderboard(board), ref)
    assert numbers == {
        "clean_acc": pytest.approx(0.9056),
        "autoattack_acc": pytest.approx(0.6156),
        "eps": 8 / 255,
    }
    # RobustBench's repository layout: model_info/<dataset>/<threat>/<name>.json
    entry = json.loads(board.read_text())["entries"]["cifar10"]["Linf"]["Huang2021Exploring"]
    folder = tmp_path / "model_info" / "cifar10" / "Linf"
    folder.mkdir(parents=True)
    (folder / "Huang2021Exploring.json").write_text(json.dumps(entry))
    assert zoo.published(zoo.leaderboard(tmp_path / "model_info"), ref) == numbers
    assert zoo.published(zoo.leaderboard(board), zoo.ZooRef.parse("robustbench:cifar10/Linf/Nobody")) is None
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object with an 'entries' mapping"):
        zoo.leaderboard(tmp_path / "bad.json")


def test_leaderboard_comparison_difference_and_wilson_interval():
    trials = pd.DataFrame(
        {
            "checkpoint_label": ["A", "B"],
            "test_eval_examples": [200, 200],
            "test_clean_acc": [0.9, 0.5],
            "test_worst_acc": [0.6, 0.3],
            "test_aa_acc": [math.nan, 0.25],
            "eval_attacks": ["pgd20=pgd20-linf-eps0.03137-step0.003137", "aa=aa-standard-linf-eps0.03137"],
            "leaderboard_clean_acc": [0.9056, 0.5],
            "leaderboard_autoattack_acc": [0.6156, 0.2],
        }
    )
    table = leaderboard_comparison(trials).set_index("model")
    # A: no AutoAttack in our suite, so the worst case over our attacks stands in; B: AutoAttack's own
    assert list(table["our robust column"]) == ["test_worst_acc", "test_aa_acc"]
    diff, interval = table.loc["A", "clean diff"].split(" ", 1)
    low, high = (float(v) for v in interval.strip("[]").split(", "))
    assert float(diff) == pytest.approx(-0.56) and low < -0.56 < high
    assert high - low == pytest.approx(8.5, abs=1.0)  # Wilson, 180 of 200: about +-4.3 points
    assert table.loc["B", "robust diff"].startswith("+5.00 [")


def test_zoo_reference_on_the_wrong_dataset_is_one_line_before_ray(capsys, tmp_path, board):
    # the default smoke fidelity of evaluate runs on digits: refused before the package is even needed
    args = [
        "evaluate",
        "--checkpoint",
        "robustbench:cifar10/Linf/Huang2021Exploring",
        "--leaderboard",
        str(board),
    ]
    code = main([*args, "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(
        "error: robustbench:cifar10/Linf/Huang2021Exploring is a cifar10 model, but the sweep runs on "
        "'digits'"
    )
    assert not (tmp_path / "evaluate").exists()


@pytest.mark.skipif(not NO_ROBUSTBENCH, reason="robustbench imports here")
def test_without_the_package_the_error_says_how_to_install_it(capsys, tmp_path, cifar_dir):
    code = main(
        [
            "evaluate",
            "--checkpoint",
            "robustbench:cifar10/Linf/Huang2021Exploring",
            "--dataset",
            "cifar10",
            "--data-dir",
            str(cifar_dir),
            "--results-dir",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "need the robustbench package" in err and "make robustbench" in err


# --- with the robustbench package -----------------------------------------------------------------------


def _set(*items: str) -> list[str]:
    """``--set`` before each KEY=VALUE."""
    return [arg for item in items for arg in ("--set", item)]


def _save_initial_weights(models: Path, dataset: str, threat: str, name: str) -> torch.nn.Module:
    """The architecture's own initial weights in RobustBench's directory layout (no download here)."""
    entry = zoo.zoo_entries(dataset, threat)[name]
    model = entry["model"]().eval()
    folder = models / dataset / threat
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / f"{name}.pt")
    return model


@needs_robustbench
def test_zoo_model_evaluates_offline_like_the_package_with_the_leaderboard_columns(
    capsys, tmp_path, cifar_dir, board
):
    from robustbench.utils import load_model

    name = "Huang2021Exploring"
    _save_initial_weights(tmp_path / "models", "cifar10", "Linf", name)
    common = [
        "--dataset",
        "cifar10",
        "--data-dir",
        str(cifar_dir),
        "--robustbench-dir",
        str(tmp_path / "models"),
    ]
    code = main(
        [
            "evaluate",
            "--checkpoint",
            f"robustbench:cifar10/Linf/{name}",
            *common,
            "--leaderboard",
            str(board),
            *_set("eval.limit=8", "eval.attacks=fgsm", "eval.sanity=false", "eval.metrics=false"),
            "--results-dir",
            str(tmp_path / "results"),
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    row = pd.read_parquet(tmp_path / "results" / "evaluate" / "trials.parquet").iloc[0]
    assert row["status"] == "TERMINATED" and row["checkpoint_label"] == name
    assert row["leaderboard_clean_acc"] == pytest.approx(0.9056)
    assert row["leaderboard_autoattack_acc"] == pytest.approx(0.6156)
    assert row["test_eval_examples"] == 8
    # the platform's model and the package's, on the same weights, give the same logits
    ref = f"robustbench:cifar10/Linf/{name}@{tmp_path / 'models'}"
    from tune_robust.models.checkpoint import load_checkpoint

    ours = load_checkpoint(ref)
    theirs = load_model(name, model_dir=str(tmp_path / "models"), dataset="cifar10", threat_model="Linf")
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ours(x), theirs.eval()(x))
    assert not ours.training


@needs_robustbench
@pytest.mark.parametrize(
    "args, says",
    [
        (["--checkpoint", "robustbench:cifar10/Linf/Huang2021Explorin"], "did you mean Huang2021Exploring"),
        (["--checkpoint", "robustbench:cifar10/Linf/Huang2021Exploring"], "pass --download to fetch them"),
        (
            ["--checkpoint", "robustbench:cifar10/L2/Augustin2020Adversarial"],
            "ranked under the L2 threat model",
        ),
    ],
)
def test_zoo_errors_are_one_line_and_exit_2_before_ray(capsys, tmp_path, cifar_dir, args, says):
    common = [
        "--dataset",
        "cifar10",
        "--data-dir",
        str(cifar_dir),
        "--robustbench-dir",
        str(tmp_path / "none"),
    ]
    code = main(["evaluate", *args, *common, "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and says in err, err
    assert not (tmp_path / "evaluate").exists()


@needs_robustbench
def test_zoo_model_teaches_an_rnascl_search_and_is_a_transfer_source(capsys, tmp_path, cifar_dir):
    name = "Wong2020Fast"  # a PreAct ResNet-18: small enough to teach on a CPU
    _save_initial_weights(tmp_path / "models", "cifar10", "Linf", name)
    ref = f"robustbench:cifar10/Linf/{name}"
    common = [
        "--dataset",
        "cifar10",
        "--data-dir",
        str(cifar_dir),
        "--robustbench-dir",
        str(tmp_path / "models"),
        "--results-dir",
        str(tmp_path / "results"),
        "-q",
    ]
    code = main(
        [
            "rnascl_search",
            *_set(f"upstream.teacher={ref}", "data.train_limit=64", "data.test_limit=16", "train.epochs=1"),
            *common,
        ]
    )
    assert code == 0, capsys.readouterr().err
    row = pd.read_parquet(tmp_path / "results" / "rnascl_search" / "trials.parquet").iloc[0]
    assert row["status"] == "TERMINATED" and row["upstream.teacher"].startswith(ref + "@")
    code = main(["transfer", "--checkpoint", ref, *_set("eval.limit=8", "eval.attacks=pgd20"), *common])
    assert code == 0, capsys.readouterr().err
    matrix = pd.read_parquet(tmp_path / "results" / "transfer" / "trials.parquet")
    assert len(matrix) == 1 and matrix["status"].eq("TERMINATED").all()


@needs_robustbench
def test_robustbench_zoo_sweep_runs_named_models_and_defaults_to_the_whole_zoo(
    capsys, tmp_path, cifar_dir, board
):
    names = sorted(zoo.zoo_entries("cifar10", "Linf"))
    assert "Huang2021Exploring" in names and "Rice2020Overfitting" in names
    assert zoo.expand("robustbench:cifar10/Linf/*") == [f"robustbench:cifar10/Linf/{n}" for n in names]
    _save_initial_weights(tmp_path / "models", "cifar10", "Linf", "Wong2020Fast")
    common = ["--data-dir", str(cifar_dir), "--results-dir", str(tmp_path / "results"), "-q"]
    code = main(
        [
            "robustbench_zoo",
            "--checkpoint",
            "robustbench:cifar10/Linf/Wong2020Fast",
            *common,
            "--robustbench-dir",
            str(tmp_path / "models"),
            "--leaderboard",
            str(board),
            *_set("eval.limit=16", "eval.sanity=false", "eval.metrics=false"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    row = pd.read_parquet(tmp_path / "results" / "robustbench_zoo" / "trials.parquet").iloc[0]
    published = json.loads(board.read_text())["entries"]["cifar10"]["Linf"]["Wong2020Fast"]
    assert row["leaderboard_clean_acc"] == pytest.approx(float(published["clean_acc"]) / 100)
    assert row["test_eval_examples"] == 16 and row["eval_attacks"].startswith("pgd20=pgd20-linf-eps0.03137")
    # without --checkpoint: every zoo model, each needing its weights (here none: refused, one line)
    code = main(["robustbench_zoo", *common, "--robustbench-dir", str(tmp_path / "empty")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "pass --download to fetch them" in err, err
