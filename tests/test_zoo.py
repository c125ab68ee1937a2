"""Architecture zoo: parameter counts against the seed papers' tables, one training step for every
registered architecture, the "-R" rule, and the zoo/method sweeps (plans and a small end-to-end run)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from tune_robust.cli import main
from tune_robust.config import builder_params
from tune_robust.errors import ConfigError
from tune_robust.evaluation.metrics import feature_blocks
from tune_robust.models import MODELS, create_model, profile_model, reconfigure
from tune_robust.models.darts import GENOTYPES
from tune_robust.run import RunOptions, plan
from tune_robust.sweeps import get_sweep


# RobNet supplement Table 3 (CIFAR-10, 10 classes), millions of parameters.
@pytest.mark.parametrize(
    "arch,millions",
    [
        ("vgg16", 14.73),
        ("resnet18", 11.17),
        ("resnet50", 23.52),
        ("mobilenet_v2", 2.30),
        ("resnext29_2x64d", 9.13),
        ("wrn_28_10", 36.48),
    ],
)
def test_robnet_table_3_parameter_counts(arch, millions):
    params, _ = profile_model(arch, (3, 32, 32))
    assert round(params / 1e6, 2) == millions


def test_densenet121_parameter_count():
    # 6,956,298: RobNet's table prints 6.95M (truncated), Huang et al. Table 2 prints 6.96M (rounded).
    params, _ = profile_model("densenet121", (3, 32, 32))
    assert params == 6_956_298


# RACL Table 1 (C=36, 20 cells, without the auxiliary head), one decimal as the table prints them.
@pytest.mark.parametrize(
    "genotype,millions",
    [("DARTS_V2", 3.3), ("PC_DARTS", 3.6), ("NASNet", 3.8), ("RACL", 3.6)],
)
def test_racl_table_1_parameter_counts(genotype, millions):
    params, _ = profile_model("darts", (3, 32, 32), genotype=genotype)
    assert round(params / 1e6, 1) == millions


def test_amoebanet_count_is_the_darts_code_count_not_the_table_rounding():
    # 3,145,462 with the DARTS code's AmoebaNet genotype; RACL/DARTS tables quote 3.2M from the
    # AmoebaNet paper, whose CIFAR network differs from the genotype network (see docs/models-and-methods.md).
    params, _ = profile_model("darts", (3, 32, 32), genotype="AmoebaNet")
    assert round(params / 1e6, 2) == 3.15


@pytest.mark.parametrize("arch", MODELS.names())
def test_every_architecture_trains_one_step_on_a_tiny_input(arch):
    torch.manual_seed(0)
    kwargs = {"image_size": 16} if "image_size" in builder_params(MODELS.get(arch)) else {}
    model = create_model(arch, num_classes=10, in_channels=3, **kwargs).train()
    x, y = torch.rand(2, 3, 16, 16), torch.tensor([1, 7])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 16, 16)).shape == (1, 10)


ZOO = ["vgg11", "resnet18", "densenet121", "mobilenet_v2", "resnext29_2x64d", "darts"]


@pytest.mark.parametrize("arch", ZOO)
def test_zoo_takes_mnist_shaped_inputs_and_exposes_blocks(arch):
    small = {
        "vgg11": {"widths": (0.125,) * 5},
        "resnet18": {"width": 8},
        "densenet121": {"growth": 4},
        "mobilenet_v2": {"width_mult": 0.25},
        "resnext29_2x64d": {"bottleneck_width": 4},
        "darts": {"channels": 8, "layers": 5},
    }[arch]
    model = create_model(arch, num_classes=10, in_channels=1, **small).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert feature_blocks(model), "no blocks for the per-block Lipschitz metrics"


@pytest.mark.parametrize("genotype", sorted(GENOTYPES))
def test_darts_genotypes_and_auxiliary_head(genotype):
    model = create_model("darts", genotype=genotype, channels=8, layers=6, auxiliary=True).train()
    out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert model.aux_logits is not None and model.aux_logits.shape == (2, 10)
    with pytest.raises(ConfigError, match="unknown genotype"):
        create_model("darts", genotype="NotANet")


def test_r_rule_reproduces_huang_vgg11_r_and_wrn_34_r():
    vgg = reconfigure("vgg11")
    assert vgg.kwargs["widths"] == (1.0, 1.0, 1.0, 1.0, 0.4)
    assert (round(vgg.params / 1e6, 2), round(vgg.r_params / 1e6, 2)) == (9.23, 5.83)  # Huang Table 2
    assert vgg.param_change == pytest.approx(5_830_475 / 9_231_114 - 1)
    wrn = reconfigure("wrn_34_10", gamma=2.0)
    assert wrn.arch == "wrn" and wrn.kwargs["widths"] == (20.0, 20.0, 8.0)
    assert round(wrn.r_params / 1e6, 2) == 68.12
    dn = reconfigure("densenet121")
    assert dn.kwargs["widths"] == (1.0, 1.0, 1.0, 0.4) and dn.r_params < dn.params
    darts = reconfigure("darts", {"genotype": "RACL"})
    assert darts.kwargs == {"genotype": "RACL", "widths": (1.0, 1.0, 0.4)} and darts.r_params < darts.params
    with pytest.raises(ConfigError, match="no per-stage 'widths'"):
        reconfigure("mobilenet_v2")


# Huang et al. Table 2, params (M) of each network and its -R version, as printed (two decimals).
@pytest.mark.parametrize(
    "arch, kwargs, gamma, base_m, r_m",
    [
        ("vgg11", {}, 1.0, 9.23, 5.83),
        ("densenet121", {}, 1.0, 6.96, 6.00),  # the authors' per-stage channels: 205 enter block 4
        ("wrn_34_10", {}, 2.0, 46.16, 68.12),
    ],
)
def test_r_rule_parameter_counts_match_huang_table_2(arch, kwargs, gamma, base_m, r_m):
    r = reconfigure(arch, kwargs, gamma=gamma)
    assert (round(r.params / 1e6, 2), round(r.r_params / 1e6, 2)) == (base_m, r_m)


def test_darts_11_cells_pins_huang_table_2_within_one_percent():
    # "a network found by DARTS with 11 cells": 6.58M -> DARTS-R 2.53M; C = 72 gives 6.61M -> 2.54M.
    r = reconfigure("darts", {"genotype": "DARTS_V2", "channels": 72, "layers": 11})
    assert r.params == pytest.approx(6.58e6, rel=0.01) and r.r_params == pytest.approx(2.53e6, rel=0.01)
    for wrong in ({"channels": 36, "layers": 20}, {"channels": 64, "layers": 11}):
        other = reconfigure("darts", {"genotype": "DARTS_V2", **wrong})
        assert other.params != pytest.approx(6.58e6, rel=0.01)


def test_arch_reconfig_paper_pairs_are_table_2s():
    from tune_robust.search_spaces.arch_reconfig import PAPER_FAMILIES, pairs

    millions = []
    for section in pairs(PAPER_FAMILIES):
        model = dict(section["model"])
        params, _ = profile_model(model.pop("arch"), (3, 32, 32), **model)
        millions.append(round(params / 1e6, 2))
    # VGG-11, VGG-11-R, DN-121, DN-121-R, DARTS, DARTS-R, WRN-34-12 (not 34-10), WRN-34-R
    assert millions == [9.23, 5.83, 6.96, 6.00, 6.61, 2.54, 66.46, 68.12]


def test_arch_reconfig_written_out_widths_are_the_builders_defaults():
    import inspect

    from tune_robust.models import MODELS
    from tune_robust.search_spaces.arch_reconfig import PAPER_FAMILIES, SMOKE_FAMILIES

    for arch, kwargs, _, _ in [*PAPER_FAMILIES, *SMOKE_FAMILIES]:
        if arch != "wrn" and set(kwargs["widths"]) == {1.0}:
            assert inspect.signature(MODELS.get(arch)).parameters["widths"].default == kwargs["widths"], arch


@pytest.mark.parametrize(
    "name,fidelity,trials",
    [
        ("wrn_width_grid", "smoke", 15),
        ("wrn_width_grid_full", "smoke", 125),
        ("wrn_scaling", "smoke", 5),
        ("arch_zoo_at", "smoke", 7),
        ("arch_zoo_at", "paper", 7),
        ("at_methods", "smoke", 10),
        ("at_methods", "paper", 6),
        ("arch_reconfig", "smoke", 8),
        ("arch_reconfig", "paper", 8),
        # the one-shot searches' grid stages (no earlier stage has run: optional upstream trials are
        # left out, required ones are the stand-ins of _upstream_results)
        ("robnet_supernet", "paper", 2),
        # (validating 150 / 300 RobNet configs takes 35 / 60 s: with the slow tests)
        pytest.param("robnet_finetune", "paper", 150, marks=pytest.mark.slow),
        pytest.param("robnet_free_search", "paper", 300, marks=pytest.mark.slow),
        ("robnet_retrain", "paper", 6),
        ("racl_search", "paper", 1),
        ("racl_ablation", "paper", 5),
        ("racl_retrain", "paper", 1),
        ("racl_table1", "paper", 10),
        ("rnascl_teacher", "paper", 2),
        ("rnascl_search", "paper", 1),
        ("rnascl_ablation", "paper", 4),
        ("rnascl_teachers", "paper", 6),
        ("rnascl_train", "paper", 1),
    ],
)
def test_paper_sweeps_plan_each_config_once_and_validate(name, fidelity, trials, request, tmp_path):
    data_dir = request.getfixturevalue("cifar_dir") if fidelity == "paper" else None
    for up in get_sweep(name).upstream:
        if not up.optional and not (tmp_path / up.sweep).exists():
            _upstream_results(tmp_path, up.sweep, UPSTREAM_ROWS[up.sweep])
    options = RunOptions(
        fidelity=fidelity, data_dir=str(data_dir) if data_dir else None, results_dir=str(tmp_path), verbose=0
    )
    p = plan(name, options)  # every trial config is validated here (model kwargs, method vs attack)
    # The paper's number of configs, each a different trial (no grid point twice, none lost), except
    # wrn_width_grid's documented repeats: w10-10-10 once per stage panel of Huang et al.'s figure
    repeats = 2 if name == "wrn_width_grid" else 0
    keys = {json.dumps(c, sort_keys=True, default=str) for c in p.configs}
    assert len(p.configs) == trials and len(keys) == trials - repeats


def _upstream_results(results, sweep, rows):
    """An upstream sweep's results as later stages read them: finished rows (column values given), each
    with a checkpoint of ours for CIFAR-10 (a tiny WRN: planning checks classes and channels only)."""
    folder = results / sweep
    folder.mkdir(parents=True)
    model = create_model("wrn", num_classes=10, in_channels=3, depths=(1, 1, 1), widths=(1, 1, 1))
    blob = {
        "arch": "wrn",
        "kwargs": {},
        "num_classes": 10,
        "in_channels": 3,
        "state_dict": model.state_dict(),
    }
    out = []
    for i, columns in enumerate(rows):
        path = folder / f"{i}.pt"
        torch.save(blob, path)
        out.append(
            {
                "trial_id": f"t{i}",
                "status": "TERMINATED",
                "checkpoint_path": str(path),
                "best_robust_acc": 0.5,
                **columns,
            }
        )
    pd.DataFrame(out).to_parquet(folder / "trials.parquet")


# What each stage's required upstream sweep holds (optional upstreams are left unrun).
UPSTREAM_ROWS = {
    "robnet_supernet": [{"model.share": True}, {"model.share": False}],
    "rnascl_teacher": [{"eval.label": "WRT-34"}, {"eval.label": "R-18"}],
}


def test_variants_take_set_overrides_and_paper_widths_match_table_1():
    p = plan("at_methods", RunOptions(sets=("train.epochs=2",)))
    assert all(c["train"]["epochs"] == 2 for c in p.configs)
    fast = [c for c in p.configs if c["method"]["name"] == "fast"]
    assert fast and all(c["attack"]["name"] == "fgsm" and c["attack"]["random_start"] for c in fast)
    scaling = plan("wrn_scaling", RunOptions())
    widths = [c["model"]["widths"] for c in scaling.configs]
    counts = [round(profile_model("wrn", (3, 32, 32), widths=w)[0] / 1e6, 2) for w in widths]
    assert counts == [1.07, 4.27, 17.05, 38.33, 68.12]  # Huang Table 1


@pytest.mark.slow  # ~30 s; the default run stays under 10 minutes (tests/test_methods.py trains every method)
def test_at_methods_smoke_end_to_end(capsys, tmp_path):
    code = main(
        [
            "at_methods",
            "--results-dir",
            str(tmp_path),
            "-q",
            "--set",
            "train.epochs=1",
            "--set",
            "data.train_limit=256",
            "--set",
            "eval.sanity=false",
            "--set",
            "eval.limit=64",
            "--set",
            "train.eval_limit=64",
            "--set",
            "train.warmup_epochs=0",
        ]
    )
    _out, err = capsys.readouterr()
    assert code == 0, err
    trials = pd.read_parquet(tmp_path / "at_methods" / "trials.parquet")
    assert len(trials) == 10 and (trials["status"] == "TERMINATED").all()
    assert set(trials["method.name"]) == {"pgd_at", "trades", "mart", "free", "fast"}
    fast = trials[trials["method.name"] == "fast"]
    assert (fast["attack.name"] == "fgsm").all() and fast["train_attack"].str.startswith("fgsm").all()
    assert (trials.loc[trials["method.name"] == "trades", "method.beta"] == 6.0).all()
    assert trials["test_pgd20_acc"].between(0, 1).all()


def test_paper_recipes_follow_each_seeds_released_code():
    from tune_robust.config import TrialConfig
    from tune_robust.sweeps import get_sweep

    huang = TrialConfig.from_dict(dict(get_sweep("wrn_depth_grid").fidelities["paper"]))
    assert (huang.train.weight_decay, huang.train.grad_clip, huang.train.milestones) == (2e-4, 5.0, (75, 90))
    assert not huang.train.exclude_norm_bias_decay
    assert huang.attack.kwargs["start"] == "normal" and huang.attack.kwargs["clip_start"] is False
    assert huang.method.kwargs["craft_mode"] == "eval"
    for table2 in ("at_methods", "arch_reconfig"):
        ev = TrialConfig.from_dict(dict(get_sweep(table2).fidelities["paper"])).eval
        assert ev.last and {"gama100", "aa", "cw_inf", "pgd20", "fgsm"} <= set(ev.attacks)
    robnet = TrialConfig.from_dict(dict(get_sweep("arch_zoo_at").fidelities["paper"]))
    assert (robnet.train.weight_decay, robnet.train.exclude_norm_bias_decay) == (1e-4, True)
    assert robnet.method.kwargs["craft_mode"] == "train"
