"""Checkpoint evaluation sweeps: ``evaluate`` (the attack suite on any checkpoints) and ``transfer``
(the black-box matrix of RobNet supplement Table 4 / RACL Table 3)."""

from __future__ import annotations

from typing import Any

from tune_robust.sweeps import SweepSpec, register_sweep

# A checkpoint from elsewhere gets the seeds' strongest common suite; smoke runs on the embedded digits.
EVAL_SMOKE = {
    "data": {"dataset": "digits", "val_fraction": 0.0},
    "eval": {"attacks": ("fgsm", "pgd20", "mim", "cw_inf")},
}
EVAL_PAPER = {
    "data": {"dataset": "cifar10", "val_fraction": 0.0},
    "eval": {"attacks": ("fgsm", "pgd20", "pgd100", "mim", "cw_inf", "aa")},
}


@register_sweep
def evaluate() -> SweepSpec:
    """One trial per checkpoint: every attack of eval.attacks, stability, Lipschitz, sanity flags."""
    return SweepSpec(
        name="evaluate",
        description="evaluate checkpoints (--checkpoint PATH / --from-sweep DIR) with the attack suite",
        trainable="evaluate",
        fidelities={"smoke": EVAL_SMOKE, "paper": EVAL_PAPER},
        metric="test_worst_acc",
        rank_by="test_worst_acc",
        inputs="checkpoints",
        notes={
            "smoke": "digits; FGSM, PGD-20, MIM, CW-inf at eps 0.1 + sanity flags",
            "paper": "cifar10; FGSM, PGD-20, PGD-100, MIM, CW-inf, AutoAttack at 8/255 + sanity flags",
        },
    )


# A transfer matrix's smoke fidelity, and RobNet supplement Table 4's: PGD-100 at 8/255 crafted on an
# independently trained copy (another seed) of each source, so even the diagonal is black-box.
TRANSFER_FIDELITIES = {
    "smoke": {"data": {"dataset": "digits", "val_fraction": 0.0}, "eval": {"attacks": ("pgd20",)}},
    "paper": {
        "data": {"dataset": "cifar10", "val_fraction": 0.0},
        "eval": {"attacks": ("pgd100",), "transfer_protocol": "independent_copy"},
    },
}


@register_sweep
def transfer() -> SweepSpec:
    """One trial per source checkpoint: craft on the source, evaluate every checkpoint (a matrix row)."""
    return SweepSpec(
        name="transfer",
        description="transfer (black-box) matrix between checkpoints: source x target accuracy + heatmap",
        trainable="transfer",
        fidelities={
            **TRANSFER_FIDELITIES,
            # RACL Table 3: PGD-10 at 8/255 crafted on the source itself (white-box diagonal).
            "paper_racl": {
                "data": {"dataset": "cifar10", "val_fraction": 0.0},
                "eval": {"attacks": ("pgd10",), "transfer_protocol": "white_box"},
            },
        },
        metric="trial_seconds",
        mode="min",
        rank_by="trial_seconds",
        inputs="pairs",
        notes={
            "smoke": "digits; PGD-20 eps 0.1 crafted on each source",
            "paper": "cifar10; PGD-100 eps 8/255 step 2/255 crafted on an independently trained copy "
            "(another seed) of each source: RobNet supplement Table 4 (--craft-on / --craft-on-sweep)",
            "paper_racl": "cifar10; PGD-10 eps 8/255 crafted on each source itself: RACL Table 3",
        },
    )


# RobustBench's CIFAR-10 L-inf leaderboard re-checked with our suite: the smoke fidelity a few hundred
# test images with PGD-20 (a CPU can run it); the paper fidelity the whole test set with AutoAttack
# (standard), the leaderboard's own attack, and PGD-20 beside it.
ZOO_FIDELITIES: dict[str, dict[str, Any]] = {
    "smoke": {
        "data": {"dataset": "cifar10", "val_fraction": 0.0},
        "eval": {"attacks": ("pgd20",), "limit": 200},
    },
    "paper": {"data": {"dataset": "cifar10", "val_fraction": 0.0}, "eval": {"attacks": ("pgd20", "aa")}},
}


@register_sweep
def robustbench_zoo() -> SweepSpec:
    """One evaluate trial per RobustBench zoo model (all CIFAR-10 L-inf ones unless --checkpoint names
    some), with the leaderboard's numbers beside ours (--leaderboard)."""
    return SweepSpec(
        name="robustbench_zoo",
        description="re-check RobustBench's leaderboard: evaluate its zoo models (robustbench:...) with the "
        "attack suite and sanity flags, beside their published numbers",
        trainable="evaluate",
        fidelities=ZOO_FIDELITIES,
        metric="test_worst_acc",
        rank_by="test_worst_acc",
        inputs="checkpoints",
        default_checkpoints=("robustbench:cifar10/Linf/*",),
        notes={
            "smoke": "cifar10, first 200 test images; PGD-20 at 8/255 + sanity flags",
            "paper": "cifar10, the whole test set; PGD-20 and AutoAttack (standard) at 8/255 + sanity flags",
        },
    )
