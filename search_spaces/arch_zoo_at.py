"""RobNet supplement Table 3: human-designed architectures under the same PGD-7 adversarial training,
evaluated with PGD-100 at 8/255 (VGG-16, ResNet-18/50, MobileNetV2, ResNeXt-29 2x64d, WRN-28-10,
DenseNet-121). The smoke fidelity trains narrow versions of the same families on the embedded digits."""

from __future__ import annotations

from typing import Any

from tune_robust.sweeps import SweepSpec, Variants, register_sweep

# RobNet supplement Table 1 (CIFAR): SGD momentum 0.9, 200 epochs, lr 0.1 decayed x0.1 at 100 and 150;
# PGD-7 AT at 8/255 with step 2/255 (RobNet main text). Weight decay is not in the paper: RobNet's
# released training code uses 1e-4 with none on BatchNorm weights and biases, and crafts its PGD with
# the network in train mode (BatchNorm on batch statistics); both are followed here.
PAPER = {
    "data": {"dataset": "cifar10", "val_fraction": 0.02},
    "train": {
        "epochs": 200,
        "batch_size": 128,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "exclude_norm_bias_decay": True,
        "schedule": "step",
        "milestones": (100, 150),
    },
    "method": {"name": "pgd_at", "craft_mode": "train"},
    "attack": {"name": "pgd", "eps": "auto", "step": "2/255", "steps": 7},
    "eval_attack": {"name": "pgd", "eps": "auto", "step": "2/255", "steps": 20},
    "eval": {"attacks": ("fgsm", "pgd20_step2", "pgd100")},
}
SMOKE = {
    "data": {"dataset": "digits", "val_fraction": 0.15},
    "train": {"epochs": 4, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "warmup_epochs": 1},
    "method": {"name": "pgd_at"},
    "attack": {"name": "pgd", "eps": "auto", "step": "eps/3*1.25", "steps": 3},
    "eval_attack": {"name": "pgd", "eps": "auto", "step": "eps/5", "steps": 10},
    "eval": {"attacks": ("fgsm", "pgd20"), "sanity_examples": 128},
}
# Table 3 rows, in the table's order (its parameter counts are asserted in tests/test_zoo.py).
PAPER_MODELS: list[dict[str, Any]] = [
    {"model": {"arch": "vgg16"}},
    {"model": {"arch": "resnet18"}},
    {"model": {"arch": "resnet50"}},
    {"model": {"arch": "mobilenet_v2"}},
    {"model": {"arch": "resnext29_2x64d"}},
    {"model": {"arch": "wrn_28_10"}},
    {"model": {"arch": "densenet121"}},
]
# The same families at widths that train in seconds on 8x8 digits on a CPU.
SMOKE_MODELS: list[dict[str, Any]] = [
    {"model": {"arch": "vgg16", "widths": (0.125, 0.125, 0.125, 0.125, 0.125)}},
    {"model": {"arch": "resnet18", "width": 8}},
    {"model": {"arch": "resnet50", "width": 4}},
    {"model": {"arch": "mobilenet_v2", "width_mult": 0.25}},
    {"model": {"arch": "resnext29_2x64d", "bottleneck_width": 4}},
    {"model": {"arch": "wrn", "depths": (4, 4, 4), "widths": (10.0, 10.0, 10.0), "width_scale": 0.05}},
    {"model": {"arch": "densenet121", "growth": 4}},
]


@register_sweep
def arch_zoo_at() -> SweepSpec:
    """Seven human-designed architectures, one PGD-7 AT recipe, PGD-100 evaluation."""
    return SweepSpec(
        name="arch_zoo_at",
        description="RobNet supp. Table 3 architectures under PGD-7 AT, evaluated with PGD-100 (7 configs)",
        trainable="adversarial_training",
        fidelities={"smoke": SMOKE, "paper": PAPER},
        space={"arch": Variants(PAPER_MODELS)},
        fidelity_space={"smoke": {"arch": Variants(SMOKE_MODELS)}},
        notes={
            "smoke": "digits, narrow versions of the 7 families, 4 epochs PGD-3 AT eps 0.1, FGSM + PGD-20",
            "paper": "cifar10, 200 epochs PGD-7 AT (step 2/255), FGSM / PGD-20 / PGD-100 at 8/255",
        },
    )
