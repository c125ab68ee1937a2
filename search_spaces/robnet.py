"""RobNet's one-shot robust architecture search (Guo et al., CVPR'20; supplement Algorithm 1, Sec. 6):
an adversarially trained supernet, then short PGD-AT finetunes of sampled, filtered architectures that
inherit its weights, ranked per computational budget.

Values the supplement does not give are ours and listed in the README ("RobNet search"): the supernet's
epochs, learning rate, schedule and batch size, the finetunes' learning rate, and the size of the
supernet (the finetuned architectures must share it to inherit its weights: we search at RobNet-large's
C = 36, 20 cells, so a finetuned sub-network is the network later retrained).
"""

from __future__ import annotations

import random
from typing import Any

from tune_robust.errors import ConfigError
from tune_robust.models.robnet_codes import EDGES, arch_stats, format_code
from tune_robust.sweeps import Grid, SweepSpec, Upstream, register_sweep

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
    "model": {"arch": "robnet_supernet", "channels": 36, "layers": 20, "share": True},
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
    "model": {"arch": "robnet_supernet", "channels": 4, "layers": 5, "share": True},
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


def _finetune(supernet: dict[str, Any], epochs: int, lr: float) -> dict[str, Any]:
    """A sampled architecture's standalone network at the supernet's size, finetuned with PGD-AT from
    the inherited weights (upstream ``init``: the supernet's checkpoint)."""
    model = supernet["model"]
    return {
        **supernet,
        "model": {"arch": "robnet", "channels": model["channels"], "layers": model["layers"]},
        "train": {**supernet["train"], "epochs": epochs, "lr": lr, "schedule": "constant"},
    }


def finetune_codes(per_budget: int, budgets: dict[str, int], seed: int = 0) -> list[str]:
    """``per_budget`` distinct shared cell codes per budget (its number of separable convs), uniform
    among those passing the density and direct-conv filters: each code's conv edges are a uniform
    subset of that size, its identity bits fair coins (what the supernet's bernoulli-0.5 sampler gives,
    conditioned on the budget), rejected until it passes the filters. Deterministic in ``seed``."""
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
            if s["arch_density"] >= MIN_DENSITY and s["arch_direct_conv_portion"] > MIN_DIRECT:
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
        fidelities={"smoke": SUPERNET_SMOKE, "paper": SUPERNET_PAPER},
        space={"model.sample": Grid(["bernoulli"])},
        notes={
            "smoke": "digits (640 train), 5 cells x 4 channels, 2 epochs PGD-3 AT eps 0.1",
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
            "paper": _finetune(SUPERNET_PAPER, epochs=3, lr=0.01),
        },
        space={"model.code": Grid(finetune_codes(50, BUDGETS))},
        fidelity_space={"smoke": {"model.code": Grid(finetune_codes(1, BUDGETS))}},
        upstream=(Upstream("init", sweep="robnet_supernet"),),
        rank_by="best_robust_acc",
        notes={
            "smoke": "1 code per budget (7/10/13 convs), 1 epoch PGD-3 AT from the smoke supernet",
            "paper": "50 codes per budget, D >= 0.5, direct convs > 0.5, 3 epochs PGD-7 AT (LR 0.01: ours)",
        },
    )
