"""Real MNIST (../shared/data/mnist-subset): on an adversarially trained small CNN, PGD is stronger than
FGSM and AutoAttack at least as strong as PGD."""

from __future__ import annotations

import pytest
import torch

from tune_robust.attacks import PRESETS
from tune_robust.config import TrialConfig
from tune_robust.evaluation.suite import run_suite
from tune_robust.training.loop import Trainer

EPS = 0.1


@pytest.mark.slow
def test_pgd_beats_fgsm_and_autoattack_beats_pgd_on_real_mnist(mnist_dir):
    torch.set_num_threads(2)
    attacks = tuple({**PRESETS[name], "eps": EPS} for name in ("fgsm", "pgd20", "aa"))
    cfg = TrialConfig.from_dict(
        {
            "data": {
                "dataset": "mnist",
                "data_dir": str(mnist_dir),
                "val_fraction": 0.0,
                "train_limit": 6000,
            },
            "model": {"arch": "madry_cnn"},
            "method": {"name": "pgd_at"},
            "train": {"epochs": 2, "batch_size": 100, "lr": 0.05, "schedule": "cosine"},
            "attack": {"name": "pgd", "eps": EPS, "step": "eps/4", "steps": 7},
            "eval": {"attacks": attacks, "limit": 100, "sanity_examples": 100},
        }
    )
    trainer = Trainer(cfg)
    for _ in range(cfg.train.epochs):
        trainer.train_epoch()
    m = run_suite(trainer.model, trainer.data.test, cfg.eval, 10, "mnist").metrics
    print({k: v for k, v in m.items() if k.startswith(("test_", "sanity_", "suspect"))})
    assert m["test_clean_acc"] > 0.9
    assert m["test_pgd_acc"] < m["test_fgsm_acc"]  # labels: dict entries are labelled by attack name
    assert m["test_autoattack_acc"] <= m["test_pgd_acc"]
    assert m["test_pgd_acc"] > 0.2  # adversarially trained: not trivially broken at eps 0.1
    assert m["suspect_gradient_masking"] is False
