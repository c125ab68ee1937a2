"""RACL: differentiable robust architecture search with log-normal architecture weights under a
Lipschitz confidence constraint (Dong et al.; the model is tune_robust.models.racl).

Stages, chained through ``Upstream`` in one results dir:
- ``racl_search``: the PC-DARTS supernet searched with the constraint; each trial's derived genotype
  is its architecture record (``arch`` column, ``arch.json``), a ``darts`` model's ``genotype``;
- ``racl_ablation``: the same search at Table 5's (eta, rho) settings and without confidence learning;
- ``racl_retrain``: the derived genotypes (best of racl_search; each setting of racl_ablation) trained
  from scratch with PGD-AT and evaluated (Table 1's AT columns, Table 5's PGD-10, Fig. 3's curves),
  next to the released RACL genotype;
- ``racl_table1``: the zoo's NAS genotypes and the searched one, with and without AT (Table 1);
- ``racl_transfer``: Table 3, the PGD-10 transfer matrix among racl_table1's adversarially trained
  networks (diagonal: white-box).

Values RACL does not give are listed in docs/paper-values.md ("RACL") with where they come from.
"""

from __future__ import annotations

import copy
from typing import Any

from tune_robust.search_spaces import robnet
from tune_robust.sweeps import Grid, SweepSpec, Upstream, Variants, register_sweep

# RACL Sec. 3.1 (= PC-DARTS): CIFAR-10's training set in two halves (weights / architecture), 50 epochs,
# batch 128, SGD LR 0.1 momentum 0.9 weight decay 3e-4 for the weights, Adam LR 6e-4 weight decay 1e-3
# for mu and sigma. From PC-DARTS' released search (RACL: "we followed the setups of PC-DARTS"): cosine
# LR, gradient clipping at 5, Adam betas (0.5, 0.999), architecture steps from epoch 15, partial
# channels K = 4, C = 16 over 8 cells. The weights train on clean images (RACL's Eqs. 4 and 17 are
# clean cross-entropy; the constraint stands in for adversarial training during the search).
SEARCH_PAPER: dict[str, Any] = {
    "data": {"dataset": "cifar10", "val_fraction": 0.02},
    "model": {"arch": "racl_supernet", "channels": 16, "layers": 8, "partial": 4, "eta": 0.9, "rho": 0.001},
    "train": {
        "epochs": 50,
        "batch_size": 128,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 3e-4,
        "schedule": "cosine",
        "grad_clip": 5.0,
        "select_by": "last",
    },
    "method": {"name": "standard"},
    "arch_step": {
        "fraction": 0.5,
        "lr": 6e-4,
        "betas": (0.5, 0.999),
        "weight_decay": 1e-3,
        "warmup_epochs": 15,
    },
    # The supernet's own test numbers are not the product (the derived genotype is): clean and FGSM.
    "eval": {"attacks": ("fgsm",), "sanity": False, "metrics": False},
}

# Smoke: digits (640 training images: 320 for the weights, 320 for the architecture), a 5-cell
# supernet of 8 channels (2 per op with K = 4), 4 epochs of which 1 warm-up, batch 32, and an
# architecture LR of 0.05 so the few steps move mu and sigma visibly; rho 0.01 (the strongest of
# Table 5) so the constraint acts within them.
SEARCH_SMOKE: dict[str, Any] = {
    "data": {"dataset": "digits", "val_fraction": 0.15, "train_limit": 640},
    "model": {"arch": "racl_supernet", "channels": 8, "layers": 5, "partial": 4, "eta": 0.9, "rho": 0.01},
    "train": {
        "epochs": 4,
        "batch_size": 32,
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 3e-4,
        "schedule": "cosine",
        "grad_clip": 5.0,
        "select_by": "last",
    },
    "method": {"name": "standard"},
    "arch_step": {"fraction": 0.5, "lr": 0.05, "warmup_epochs": 1},
    "eval": {"attacks": ("fgsm",), "sanity": False, "metrics": False, "limit": 200},
}

# Mini (the claims' fidelity): all of digits' training split (half for the weights, half for the
# architecture), otherwise the smoke's supernet, 8 epochs of which 1 warm-up. Fixed before any claim
# was judged.
SEARCH_MINI: dict[str, Any] = {
    **SEARCH_SMOKE,
    "data": {**SEARCH_SMOKE["data"], "train_limit": 0},
    "train": {**SEARCH_SMOKE["train"], "epochs": 8},
}
# Table 5's settings: (eta, rho) and "without CL" (deterministic weights, the Eq. 10 bound). Labels
# name each row of the ablation table (no "=": labels are also --checkpoint LABEL=PATH names).
ABLATION = [
    # At the paper's default rho, the rho of the CL row it is compared with (Table 5's first and last).
    {"model.confidence": False, "model.rho": 0.001, "eval.label": "without CL"},
    {"model.eta": 0.9, "model.rho": 0.01, "eval.label": "eta 0.9, rho 0.01"},
    {"model.eta": 0.9, "model.rho": 0.0001, "eval.label": "eta 0.9, rho 0.0001"},
    {"model.eta": 0.7, "model.rho": 0.001, "eval.label": "eta 0.7, rho 0.001"},
    {"model.eta": 0.9, "model.rho": 0.001, "eval.label": "eta 0.9, rho 0.001"},
]

# PGD-7 at 8/255, step 2/255 (MNIST: 76.5/255 = 0.3, step eps/4): RACL Sec. 3.2, RobNet's training
# attack (robnet.RETRAIN_PAPER, whose recipe the retraining takes).
# Table 1 (AT): FGSM, MIM, PGD-20 step 2/255; Table 1 (no AT) and Table 5: PGD-10 step eps/10;
# Sec. 3.4: PGD-100 step 2/255; Fig. 3: accuracy vs eps 0.01-0.07 and vs PGD iterations.
EVAL_PAPER: dict[str, Any] = {
    "attacks": ("fgsm", "mim", "pgd20_step2", "pgd10", "pgd100"),
    "eps_curve": (0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07),
    "steps_curve": (10, 20, 40, 60, 80, 100),
}

# Retraining: RACL gives no epochs or LR. We use RobNet's adversarial retraining recipe (supplement
# Table 1: 200 epochs, LR 0.1 x0.1 at 100 and 150, SGD momentum 0.9; weight decay 1e-4 without decay on
# BatchNorm and biases, from RobNet's release), the recipe of the robust-NAS comparison RACL reports
# against (its RobNet rows and its PGD settings follow [12]); DARTS' own 600-epoch recipe is for
# clean accuracy. Network: NetworkCIFAR at C = 36, 20 cells (RACL's 3.6M), no auxiliary head.
RETRAIN_PAPER: dict[str, Any] = {
    **robnet.RETRAIN_PAPER,
    "model": {"arch": "darts", "channels": 36, "layers": 20},
    "eval": EVAL_PAPER,
}
# Smoke: digits' whole training split, a 5-cell network of 8 channels, 4 epochs PGD-3 AT at eps 0.1.
RETRAIN_SMOKE: dict[str, Any] = {
    "data": {"dataset": "digits", "val_fraction": 0.15},
    "model": {"arch": "darts", "channels": 8, "layers": 5},
    "train": {
        "epochs": 4,
        "batch_size": 64,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 3e-4,
        "schedule": "cosine",
    },
    "method": {"name": "pgd_at"},
    "attack": {"name": "pgd", "eps": "auto", "step": "eps/3*1.25", "steps": 3},
    "eval_attack": {"name": "pgd", "eps": "auto", "step": "eps/5", "steps": 10},
    "eval": {"attacks": ("fgsm", "mim", "pgd10"), "sanity": False, "limit": 200},
}

# Mini: the smoke's network and attack, 8 epochs, FGSM and PGD-20 on all 359 test images.
RETRAIN_MINI: dict[str, Any] = {
    **RETRAIN_SMOKE,
    "train": {**RETRAIN_SMOKE["train"], "epochs": 8},
    "eval": {"attacks": ("fgsm", "pgd20"), "sanity": False},
}
# Seeds of the mini fidelity's comparisons (searches with and without CL; retrained cells): six, the
# fewest whose exact paired permutation test can reach p < 0.05 (2 / 2^6).
MINI_SEEDS = Grid([0, 1, 2, 3, 4, 5])
# The zoo's genotypes of Table 1 (ResNet-18 and DenseNet-121 are in the zoo as their own sweeps).
NAS_GENOTYPES = ("AmoebaNet", "NASNet", "DARTS_V2", "PC_DARTS", "RACL")


def _published(names: tuple[str, ...]) -> Variants:
    return Variants([{"model.genotype": g, "eval.label": f"published:{g}"} for g in names])


@register_sweep
def racl_search() -> SweepSpec:
    """Search (RACL Sec. 2-3.1): one trial per seed; its derived genotype is the trial's record."""
    return SweepSpec(
        name="racl_search",
        description="RACL search: PC-DARTS supernet, log-normal alpha/beta, Lipschitz confidence constraint",
        trainable="adversarial_training",
        fidelities={"smoke": SEARCH_SMOKE, "paper": SEARCH_PAPER},
        space={"train.seed": Grid([0])},
        metric="val_clean_acc",
        rank_by="best_clean_acc",
        notes={
            "smoke": "digits (320 weight / 320 architecture images), 5 cells x 8 channels, 4 epochs",
            "paper": "cifar10 halves, 8 cells x 16 channels, 50 epochs (15 warm-up), eta 0.9, rho 0.001",
        },
    )


@register_sweep
def racl_ablation() -> SweepSpec:
    """Table 5's searches: (eta, rho) in {(0.9, 0.01), (0.9, 0.0001), (0.7, 0.001), (0.9, 0.001)} and
    without confidence learning; ``racl_retrain`` retrains each derived genotype."""
    smoke = copy.deepcopy(SEARCH_SMOKE)
    return SweepSpec(
        name="racl_ablation",
        description="RACL Table 5: searches at each (eta, rho) and without confidence learning",
        trainable="adversarial_training",
        fidelities={"smoke": smoke, "mini": SEARCH_MINI, "paper": SEARCH_PAPER},
        space={"setting": Variants(ABLATION)},
        # The paper's default setting against the search without confidence learning, 6 seeds each.
        fidelity_space={"mini": {"setting": Variants([ABLATION[0], ABLATION[4]]), "train.seed": MINI_SEEDS}},
        metric="val_clean_acc",
        rank_by="best_clean_acc",
        notes={
            "smoke": "the 5 settings on digits, as racl_search's smoke",
            "mini": "without CL and eta 0.9, rho 0.001, seeds 0-5, all of digits, 8 epochs",
            "paper": "the 5 settings of Table 5, each a full RACL search",
        },
    )


@register_sweep
def racl_retrain() -> SweepSpec:
    """The searched genotypes trained from scratch with PGD-AT, next to the released RACL genotype:
    the best of racl_search and each setting's of racl_ablation (whichever have been run)."""
    return SweepSpec(
        name="racl_retrain",
        description="RACL: searched genotypes retrained with PGD-AT (Tables 1 and 5, Fig. 3 columns)",
        trainable="adversarial_training",
        fidelities={"smoke": RETRAIN_SMOKE, "mini": RETRAIN_MINI, "paper": RETRAIN_PAPER},
        space={"arch": _published(("RACL",))},
        # Every genotype (the released one and each search's) retrained with 6 seeds.
        fidelity_space={"mini": {"arch": _published(("RACL",)), "train.seed": MINI_SEEDS}},
        upstream=(
            Upstream(
                "arch", sweep="racl_search", metric="best_clean_acc", kind="architectures", optional=True
            ),
            Upstream(
                "ablation",
                sweep="racl_ablation",
                metric="best_clean_acc",
                kind="architectures",
                per="eval.label",
                optional=True,
            ),
        ),
        notes={
            "smoke": "digits, 5 cells x 8 channels, 4 epochs PGD-3 AT eps 0.1; FGSM, MIM, PGD-10",
            "mini": "digits, 5 cells x 8 channels, 8 epochs PGD-3 AT eps 0.1, seeds 0-5; FGSM, PGD-20",
            "paper": "cifar10, 20 cells x 36 channels, 200 epochs PGD-7 AT (RobNet recipe; RACL gives none)",
        },
    )


@register_sweep
def racl_table1() -> SweepSpec:
    """Table 1: the NAS genotypes and the searched one (racl_search, if run), adversarially trained
    (PGD-7) and trained on clean images, each evaluated with FGSM, MIM, PGD-20 and PGD-10."""
    clean = {"method": {"name": "standard"}, "attack": {"name": "none"}, "train.select_by": "clean"}
    return SweepSpec(
        name="racl_table1",
        description="RACL Table 1: NAS genotypes + the searched one, with and without adversarial training",
        trainable="adversarial_training",
        fidelities={"smoke": RETRAIN_SMOKE, "mini": RETRAIN_MINI, "paper": RETRAIN_PAPER},
        space={
            "arch": _published(NAS_GENOTYPES),
            "training": Variants([{"method.name": "pgd_at"}, clean]),
        },
        fidelity_space={
            "smoke": {
                "arch": _published(("DARTS_V2", "RACL")),
                "training": Variants([{"method.name": "pgd_at"}, clean]),
            },
            # The released RACL and PC-DARTS cells under the same PGD-AT retraining, 6 seeds each.
            "mini": {"arch": _published(("PC_DARTS", "RACL")), "train.seed": MINI_SEEDS},
        },
        upstream=(
            Upstream(
                "arch", sweep="racl_search", metric="best_clean_acc", kind="architectures", optional=True
            ),
        ),
        notes={
            "smoke": "DARTS_V2 and RACL genotypes (+ searched), with / without AT, digits, 4 epochs",
            "mini": "PC_DARTS and RACL genotypes (+ searched), PGD-AT, seeds 0-5, digits, 8 epochs",
            "paper": "AmoebaNet, NASNet, DARTS, PC-DARTS, RACL (+ searched), with / without PGD-7 AT",
        },
    )


@register_sweep
def racl_transfer() -> SweepSpec:
    """Table 3: PGD-10 examples crafted on each adversarially trained network of racl_table1 and
    evaluated on every other (the diagonal is white-box, as RACL underlines it)."""
    return SweepSpec(
        name="racl_transfer",
        description="RACL Table 3: PGD-10 transfer matrix among the adversarially trained NAS networks",
        trainable="transfer",
        fidelities={
            "smoke": {"data": {"dataset": "digits", "val_fraction": 0.0}, "eval": {"attacks": ("pgd10",)}},
            "paper": {"data": {"dataset": "cifar10", "val_fraction": 0.0}, "eval": {"attacks": ("pgd10",)}},
        },
        metric="trial_seconds",
        mode="min",
        rank_by="trial_seconds",
        inputs="pairs",
        default_from=("racl_table1",),
        default_where={"method.name": "pgd_at"},
        notes={
            "smoke": "digits; PGD-10 eps 0.1 crafted on each adversarially trained racl_table1 network",
            "paper": "cifar10; PGD-10 at 8/255 (step eps/10: RACL gives none) among the AT networks",
        },
    )
