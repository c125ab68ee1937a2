"""RobNet's one-shot robust architecture search (Guo et al., CVPR'20; supplement Algorithm 1, Sec. 6):
an adversarially trained supernet, then short PGD-AT finetunes of sampled, filtered architectures that
inherit its weights, ranked per computational budget.

Values the supplement does not give are ours and listed in docs/paper-values.md ("RobNet"): the supernet's
epochs, learning rate, schedule and batch size, the finetunes' learning rate, and the size of the
supernet (the finetuned architectures must share it to inherit its weights: we search at RobNet-large's
C = 36, 20 cells, so a finetuned sub-network is the network later retrained).
"""

from __future__ import annotations

import random
from typing import Any

from tune_robust.errors import ConfigError
from tune_robust.models.robnet_codes import CODES, EDGES, LARGE, arch_stats, format_code
from tune_robust.search_spaces.evaluation import TRANSFER_FIDELITIES
from tune_robust.sweeps import Grid, SweepSpec, Upstream, Variants, register_sweep

# Separable convs per cell of each computational budget: the conv counts whose networks (C = 36, 20
# cells) have Table 3's sizes (RobNet-small 4.41M: 7 convs give 4.3-4.4M; medium 5.66M: 10 give
# 5.5-5.6M; large 6.89M: 13 give 6.84M, as RobNet-large's own code).
BUDGETS = {"small": 7, "medium": 10, "large": 13}
# Supplement Sec. 6: "filter out the architectures with architecture density D < 0.5", then keep those
# with "a portion of direct convolutions larger than 0.5" (tune_robust.models.robnet_codes says how
# we read it).
MIN_DENSITY = 0.5
MIN_DIRECT = 0.5

# PGD-7 at 8/255, step 2/255 with a random start: the paper's training attack (Table 3 caption).
PGD7 = {"name": "pgd", "eps": "auto", "step": "eps/4", "steps": 7}

SUPERNET_PAPER: dict[str, Any] = {
    "data": {"dataset": "cifar10", "val_fraction": 0.02},
    "model": {"arch": "robnet_supernet", "channels": 36, "layers": 20},
    "train": {
        "epochs": 60,
        "batch_size": 128,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "cosine",
        "select_by": "last",
    },
    # The released code crafts with BatchNorm in train mode.
    "method": {"name": "pgd_at", "craft_mode": "train"},
    "attack": PGD7,
    "eval_attack": {"name": "pgd", "eps": "auto", "step": "eps/4", "steps": 20},
    "eval": {"attacks": ("fgsm", "pgd20")},
}

# Smoke: digits (8x8, 1 channel; 640 training images), a 5-cell supernet of 4 channels, PGD-3 AT at
# eps 0.1, tested on 200 images: the whole chain runs in about a minute on 2 cores.
SUPERNET_SMOKE: dict[str, Any] = {
    "data": {"dataset": "digits", "val_fraction": 0.15, "train_limit": 640},
    "model": {"arch": "robnet_supernet", "channels": 4, "layers": 5},
    "train": {
        "epochs": 2,
        "batch_size": 64,
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 3e-4,
        "schedule": "cosine",
        "select_by": "last",
    },
    "method": {"name": "pgd_at", "craft_mode": "train"},
    "attack": {"name": "pgd", "eps": "auto", "step": "eps/3*1.25", "steps": 3},
    "eval_attack": {"name": "pgd", "eps": "auto", "step": "eps/5", "steps": 10},
    # Sanity flags off at this scale (their ~220 PGD passes would cost more than the training).
    "eval": {"attacks": ("fgsm", "pgd20"), "sanity": False, "limit": 200},
}

# Mini (the claims' fidelity): all of digits' training split, a 5-cell supernet of 8 channels trained
# 10 epochs at LR 0.1, tested on all 359 test images. Chosen so the supernet learns (the smoke's
# 2 epochs on 640 images barely leave chance), before any claim was judged.
SUPERNET_MINI: dict[str, Any] = {
    **SUPERNET_SMOKE,
    "data": {**SUPERNET_SMOKE["data"], "train_limit": 0},
    "model": {**SUPERNET_SMOKE["model"], "channels": 8},
    "train": {**SUPERNET_SMOKE["train"], "epochs": 10, "lr": 0.1},
    "eval": {"attacks": ("fgsm", "pgd20"), "sanity": False},
}
# Codes per budget the mini fidelity finetunes.
MINI_PER_BUDGET = 8
# Codes per budget robnet_sample finetunes (and robnet_scratch trains from scratch) at each fidelity.
SAMPLE_PER_BUDGET = {"smoke": 1, "mini": 12, "paper": 50}


def _finetune(supernet: dict[str, Any], epochs: int, lr: float) -> dict[str, Any]:
    """A sampled architecture's standalone network at the supernet's size, finetuned with PGD-AT from
    the inherited weights (upstream ``init``: the supernet's checkpoint)."""
    model = supernet["model"]
    return {
        **supernet,
        "model": {"arch": "robnet", "channels": model["channels"], "layers": model["layers"]},
        "train": {**supernet["train"], "epochs": epochs, "lr": lr, "schedule": "constant"},
    }


def finetune_codes(
    per_budget: int, budgets: dict[str, int], seed: int = 0, filtered: bool = True
) -> list[str]:
    """``per_budget`` distinct shared cell codes per budget (its number of separable convs), uniform
    among those passing the density and direct-conv filters (``filtered``; else among all codes of the
    budget): each code's conv edges are a uniform subset of that size, its identity bits fair coins
    (what the supernet's bernoulli-0.5 sampler gives, conditioned on the budget), rejected until it
    passes the filters. Deterministic in ``seed``."""
    rng = random.Random(seed)
    out: list[str] = []
    for name, convs in budgets.items():
        found: dict[str, None] = {}
        for _ in range(200_000):
            if len(found) == per_budget:
                break
            conv_edges = set(rng.sample(range(EDGES), convs))
            cell = tuple(f"{rng.randint(0, 1)}{int(e in conv_edges)}" for e in range(EDGES))
            s = arch_stats([cell])
            passes = s["arch_density"] >= MIN_DENSITY and s["arch_direct_conv_portion"] > MIN_DIRECT
            if passes or not filtered:
                found[format_code([cell])] = None
        if len(found) < per_budget:
            raise ConfigError(f"budget {name!r} ({convs} convs): only {len(found)} codes pass the filters")
        out.extend(found)
    return out


@register_sweep
def robnet_supernet() -> SweepSpec:
    """Algorithm 1: one trial training the supernet on a new random sub-network every batch."""
    return SweepSpec(
        name="robnet_supernet",
        description="RobNet one-shot supernet: PGD-AT of a random sub-network per batch (Algorithm 1)",
        trainable="adversarial_training",
        fidelities={"smoke": SUPERNET_SMOKE, "mini": SUPERNET_MINI, "paper": SUPERNET_PAPER},
        # Cell-based (one code shared by all cells; robnet_finetune) and cell-free (one per cell;
        # robnet_free_search) supernets, each a trial.
        space={"model.share": Grid([True, False]), "model.sample": Grid(["bernoulli"])},
        notes={
            "smoke": "digits (640 train), 5 cells x 4 channels, 2 epochs PGD-3 AT eps 0.1",
            "mini": "digits (all of train), 5 cells x 8 channels, 10 epochs PGD-3 AT eps 0.1",
            "paper": "cifar10, 20 cells x 36 channels, 60 epochs PGD-7 AT 8/255 (epochs, LR: ours)",
        },
    )


@register_sweep
def robnet_finetune() -> SweepSpec:
    """Supplement Sec. 6: sampled architectures per budget, filtered, finetuned 3 epochs from the
    supernet's weights; the best of each budget is that budget's RobNet."""
    return SweepSpec(
        name="robnet_finetune",
        description="RobNet: 3-epoch PGD-AT finetunes of filtered sampled architectures, per budget",
        trainable="adversarial_training",
        fidelities={
            "smoke": _finetune(SUPERNET_SMOKE, epochs=1, lr=0.02),
            "mini": _finetune(SUPERNET_MINI, epochs=3, lr=0.01),
            "paper": _finetune(SUPERNET_PAPER, epochs=3, lr=0.01),
        },
        space={"model.code": Grid(finetune_codes(50, BUDGETS))},
        fidelity_space={
            "smoke": {"model.code": Grid(finetune_codes(1, BUDGETS))},
            "mini": {"model.code": Grid(finetune_codes(MINI_PER_BUDGET, BUDGETS))},
        },
        upstream=(Upstream("init", sweep="robnet_supernet", where={"model.share": True}),),
        rank_by="best_robust_acc",
        rank_within="arch_sep_convs",
        notes={
            "smoke": "1 code per budget (7/10/13 convs), 1 epoch PGD-3 AT from the smoke supernet",
            "mini": "8 codes per budget, 3 epochs PGD-3 AT (LR 0.01) from the mini supernet",
            "paper": "50 codes per budget, D >= 0.5, direct convs > 0.5, 3 epochs PGD-7 AT (LR 0.01: ours)",
        },
    )


def sample_codes(fidelity: str) -> list[str]:
    """robnet_sample's codes: SAMPLE_PER_BUDGET[fidelity] per budget, no filter (seed 1: other codes
    than robnet_finetune's)."""
    return finetune_codes(SAMPLE_PER_BUDGET[fidelity], BUDGETS, seed=1, filtered=False)


@register_sweep
def robnet_sample() -> SweepSpec:
    """The architectures RobNet's findings are read from: cell-based codes sampled from the supernet
    per budget with no density or direct-conv filter (those filters come from these findings), each
    finetuned 3 epochs from the supernet's weights, as robnet_finetune's are."""
    return SweepSpec(
        name="robnet_sample",
        description="RobNet: unfiltered sampled codes per budget, 3-epoch PGD-AT finetunes (its findings)",
        trainable="adversarial_training",
        fidelities={
            "smoke": _finetune(SUPERNET_SMOKE, epochs=1, lr=0.02),
            "mini": _finetune(SUPERNET_MINI, epochs=3, lr=0.01),
            "paper": _finetune(SUPERNET_PAPER, epochs=3, lr=0.01),
        },
        space={"model.code": Grid(sample_codes("paper"))},
        fidelity_space={f: {"model.code": Grid(sample_codes(f))} for f in ("smoke", "mini")},
        upstream=(Upstream("init", sweep="robnet_supernet", where={"model.share": True}),),
        rank_by="best_robust_acc",
        rank_within="arch_sep_convs",
        notes={
            "smoke": "1 unfiltered code per budget, 1 epoch PGD-3 AT from the smoke supernet",
            "mini": "12 unfiltered codes per budget, 3 epochs PGD-3 AT (LR 0.01) from the mini supernet",
            "paper": "50 unfiltered codes per budget (ours), 3 epochs PGD-7 AT (LR 0.01: ours)",
        },
    )


def free_codes(count: int, layers: int, seed: int = 0) -> list[str]:
    """``count`` distinct cell-free codes (one cell code per layer), every bit a fair coin: what the
    cell-free supernet's bernoulli-0.5 sampler draws ("randomly sample 300 architectures from the
    supernet", supplement Sec. 6). Deterministic in ``seed``."""
    rng = random.Random(seed)
    found: dict[str, None] = {}
    while len(found) < count:
        cells = [tuple(rng.choice(CODES) for _ in range(EDGES)) for _ in range(layers)]
        found[format_code(cells)] = None
    return list(found)


# Supplement Sec. 6: "calculate the average FSP matrix distance for last 10 cells of each sampled
# network ... set the threshold to be 0.006, which leads to 68 remaining architectures" (of 300). The
# distance's normalisation is tune_robust.evaluation.fsp's; x' is the training attack (PGD-7).
FSP_PAPER: dict[str, Any] = {"fsp": True, "fsp_threshold": 0.006, "fsp_cells": 10, "fsp_examples": 256}
# Smoke (5 cells): the last 3 cells (those after the first reduction), on 128 validation images, at a
# threshold that keeps a minority of the smoke supernet's samples (measured in bench/RESULTS.md).
FSP_SMOKE: dict[str, Any] = {"fsp": True, "fsp_threshold": 0.05, "fsp_cells": 3, "fsp_examples": 128}
# Mini: the distances measured as the smoke's, with no code screened out (the supplement's Fig. 1
# relates every sampled code's distances to its finetuned gap).
FSP_MINI: dict[str, Any] = {**FSP_SMOKE, "fsp_threshold": 1e30}


def _free_finetune(
    supernet: dict[str, Any], epochs: int, lr: float, screen: dict[str, Any]
) -> dict[str, Any]:
    return {**_finetune(supernet, epochs, lr), "screen": screen}


@register_sweep
def robnet_free_search() -> SweepSpec:
    """Supplement Sec. 6, cell-free: sampled architectures screened by their FSP-matrix distance
    (inherited weights, clean vs PGD inputs, last 10 cells), survivors finetuned 3 epochs; the best is
    RobNet-free. A screened-out trial is a row with its distances and ``screened_out`` true."""
    return SweepSpec(
        name="robnet_free_search",
        description="RobNet cell-free search: FSP-distance screen of sampled codes, 3-epoch PGD-AT finetunes",
        trainable="adversarial_training",
        fidelities={
            "smoke": _free_finetune(SUPERNET_SMOKE, epochs=1, lr=0.02, screen=FSP_SMOKE),
            "mini": _free_finetune(SUPERNET_MINI, epochs=3, lr=0.01, screen=FSP_MINI),
            "paper": _free_finetune(SUPERNET_PAPER, epochs=3, lr=0.01, screen=FSP_PAPER),
        },
        space={"model.code": Grid(free_codes(300, layers=20))},
        fidelity_space={
            "smoke": {"model.code": Grid(free_codes(4, layers=5))},
            "mini": {"model.code": Grid(free_codes(24, layers=5))},
        },
        upstream=(Upstream("init", sweep="robnet_supernet", where={"model.share": False}),),
        rank_by="best_robust_acc",
        notes={
            "smoke": "4 cell-free codes (5 cells), FSP screen: last 3 cells at 0.05; 1 epoch PGD-3 AT",
            "mini": "24 cell-free codes (5 cells), FSP distances of the last 3 cells, none screened out; "
            "3 epochs PGD-3 AT",
            "paper": "300 cell-free codes, FSP screen over the last 10 cells at 0.006, 3 epochs PGD-7 AT",
        },
    )


# Supplement Table 1 (CIFAR): SGD momentum 0.9, 200 epochs, LR 0.1 decayed x0.1 at epochs 100 and 150,
# PGD-7 at 8/255 step 2/255. Not in the table, from the authors' release: weight decay 1e-4, none on
# BatchNorm and biases. Batch 128: ours (the release trains at 1536 across GPUs with another schedule).
# The training recipe (shared with RACL's retraining, which gives none of its own).
RETRAIN_TRAIN: dict[str, Any] = {
    "epochs": 200,
    "batch_size": 128,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "exclude_norm_bias_decay": True,
    "schedule": "step",
    "milestones": (100, 150),
    "lr_gamma": 0.1,
}
RETRAIN_PAPER: dict[str, Any] = {
    "data": {"dataset": "cifar10", "val_fraction": 0.02},
    "model": {"arch": "robnet", "channels": 36, "layers": 20},
    "train": RETRAIN_TRAIN,
    "method": {"name": "pgd_at"},
    "attack": PGD7,
    "eval_attack": {"name": "pgd", "eps": "auto", "step": "eps/4", "steps": 20},
    # Table 3 reports PGD-100; the suite adds FGSM, PGD-20, MIM, CW-inf and AutoAttack.
    "eval": {"attacks": ("fgsm", "pgd20", "pgd100", "mim", "cw_inf", "aa")},
}
# Smoke: all of digits' training split, 4 epochs at LR 0.1 (2 epochs on 640 images stay at chance
# from scratch; 4 reach about 70% PGD-10 accuracy for RobNet-large's code at 4 channels).
RETRAIN_SMOKE: dict[str, Any] = {
    **SUPERNET_SMOKE,
    "data": {**SUPERNET_SMOKE["data"], "train_limit": 0},
    "model": {"arch": "robnet", "channels": 4, "layers": 5},
    "train": {**SUPERNET_SMOKE["train"], "epochs": 4, "lr": 0.1, "select_by": "auto"},
    "method": {"name": "pgd_at"},
}

# Mini: all of digits' training split, 5 cells x 8 channels (the mini supernet's size), 8 epochs.
RETRAIN_MINI: dict[str, Any] = {
    **RETRAIN_SMOKE,
    "model": {**RETRAIN_SMOKE["model"], "channels": 8},
    "train": {**RETRAIN_SMOKE["train"], "epochs": 8},
    "eval": {"attacks": ("fgsm", "pgd20"), "sanity": False},
}


def _first(codes: list[str], per_budget: int, of: int) -> list[str]:
    """The first ``per_budget`` codes of each budget of a finetune_codes(``of``, BUDGETS) list."""
    return [c for b in range(len(BUDGETS)) for c in codes[b * of : b * of + per_budget]]


@register_sweep
def robnet_scratch() -> SweepSpec:
    """The premise of RobNet's sampling (supplement Sec. 6): robnet_sample's codes trained from scratch
    with the retraining recipe, so the 3-epoch finetune's ranking can be compared with the ranking after
    full training (at the paper fidelity the first 10 codes of each budget)."""
    paper = SAMPLE_PER_BUDGET["paper"]
    return SweepSpec(
        name="robnet_scratch",
        description="RobNet: robnet_sample's codes trained from scratch (is the finetune's ranking right?)",
        trainable="adversarial_training",
        fidelities={"smoke": RETRAIN_SMOKE, "mini": RETRAIN_MINI, "paper": RETRAIN_PAPER},
        space={"model.code": Grid(_first(sample_codes("paper"), 10, paper))},
        fidelity_space={f: {"model.code": Grid(sample_codes(f))} for f in ("smoke", "mini")},
        rank_by="best_robust_acc",
        notes={
            "smoke": "robnet_sample's smoke codes, 4 epochs PGD-3 AT from scratch",
            "mini": "robnet_sample's 36 mini codes, 5 cells x 8 channels, 8 epochs PGD-3 AT from scratch",
            "paper": "10 of robnet_sample's codes per budget, the Table 1 recipe (200 epochs PGD-7 AT)",
        },
    )


@register_sweep
def robnet_retrain() -> SweepSpec:
    """The chosen architectures trained from scratch (supplement Table 1), next to the published ones:
    the best finetuned code of each budget (robnet_finetune) and the best cell-free code
    (robnet_free_search), whichever of those sweeps has been run in the same results dir."""
    published_paper = [
        {"model": {"arch": name}, "eval.label": f"published:{name}"}
        for name in ("robnet_large", "robnet_free", "robnet_large_v2")
    ]
    return SweepSpec(
        name="robnet_retrain",
        description="RobNet: searched and published architectures trained from scratch (Table 1 recipe)",
        trainable="adversarial_training",
        fidelities={"smoke": RETRAIN_SMOKE, "paper": RETRAIN_PAPER},
        # Two seeds at the paper fidelity: robnet_transfer's Table 4 crafts on the other seed's copy.
        space={"arch": Variants(published_paper), "train.seed": Grid([0, 1])},
        fidelity_space={
            "smoke": {"arch": Variants([{"model.code": LARGE, "eval.label": "published:robnet_large code"}])}
        },
        upstream=(
            Upstream(
                "arch", sweep="robnet_finetune", kind="architectures", per="arch_sep_convs", optional=True
            ),
            Upstream("free_arch", sweep="robnet_free_search", kind="architectures", optional=True),
        ),
        rank_by="best_robust_acc",
        notes={
            "smoke": "RobNet-large's code at 5 cells x 4 channels + the searched codes, 4 epochs PGD-3 AT",
            "paper": "published + searched RobNets, 200 epochs PGD-7 AT, LR 0.1 x0.1 at 100/150, 2 seeds",
        },
    )


@register_sweep
def robnet_transfer() -> SweepSpec:
    """Supplement Table 4: the black-box matrix between the retrained networks (robnet_retrain in the
    same results dir unless --checkpoint/--from-sweep say otherwise); at the paper fidelity each source's
    PGD-100 examples come from its independently trained copy (the retrain's other seed)."""
    return SweepSpec(
        name="robnet_transfer",
        description="RobNet Table 4: transfer (black-box) PGD matrix between the retrained networks",
        trainable="transfer",
        fidelities=TRANSFER_FIDELITIES,
        metric="trial_seconds",
        mode="min",
        rank_by="trial_seconds",
        inputs="pairs",
        default_from=("robnet_retrain",),
        notes={
            "smoke": "digits; PGD-20 eps 0.1 crafted on each source itself (one seed per network)",
            "paper": "cifar10; PGD-100 8/255 crafted on each source's other-seed copy (robnet_retrain)",
        },
    )
