"""Fast AT on real MNIST: our ``fast`` method against Wong et al.'s recipe written as a plain loop,
side by side, same data, same network, same evaluation.

The reference loop follows the authors' released MNIST training script (Wong, Rice & Kolter 2020,
``train_mnist.py``): Adam, cyclic LR interpolated per iteration from 0 up to ``lr_max`` at 2/5 of
training and back to 0, batch 100 (last partial batch kept), FGSM with step 0.375 from a uniform start
in the eps-ball that is NOT clipped to [0, 1] before the gradient (only the final example is clipped),
no early stopping, the last epoch's weights, every training image. Ours runs the same recipe through
``Trainer`` (``method.early_stop`` off, ``train.select_by=last``, ``data.val_fraction=0``) and, for the
platform defaults, with its own early stop and best-epoch selection on a 5% validation split.

Both are evaluated with our PGD-50 x 10 restarts (step 0.01, eps 0.3; an example counts as broken if
any restart breaks it) on the first ``--eval-examples`` test images of ../shared/data/mnist-subset.
Prints one JSON line per run; the numbers go to bench/RESULTS.md ("Fast AT on MNIST").

Run: python bench/fast_mnist_reference.py [--epochs 10] [--seeds 0,1,2] [--runs reference,ours,ours_default]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tune_robust.attacks import NoAttack, create_attack
from tune_robust.config import TrialConfig
from tune_robust.data import prepare_data
from tune_robust.evaluation import evaluate
from tune_robust.models import create_model
from tune_robust.training.loop import Trainer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-subset"
EPS, ALPHA, LR_MAX, BATCH = 0.3, 0.375, 5e-3, 100


def reference(epochs: int, seed: int) -> nn.Module:
    """The authors' recipe as a plain loop."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    data = prepare_data("mnist", torch.device("cpu"), str(DATA), val_fraction=0.0)
    x_all = data.train.x.float().div(255.0)
    y_all = data.train.y
    model = create_model("wong_mnist_cnn", num_classes=10, in_channels=1)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=LR_MAX)
    n = len(y_all)
    per_epoch = -(-n // BATCH)

    def lr_at(t: float) -> float:
        return float(np.interp([t], [0, epochs * 2 // 5, epochs], [0, LR_MAX, 0])[0])

    for epoch in range(epochs):
        order = torch.randperm(n)
        for i in range(per_epoch):
            idx = order[i * BATCH : (i + 1) * BATCH]
            x, y = x_all[idx], y_all[idx]
            opt.param_groups[0]["lr"] = lr_at(epoch + (i + 1) / per_epoch)
            delta = torch.empty_like(x).uniform_(-EPS, EPS).requires_grad_(True)
            (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(x + delta), y), delta)
            delta = (delta.detach() + ALPHA * grad.sign()).clamp(-EPS, EPS)
            delta = torch.max(torch.min(1 - x, delta), -x)
            loss = nn.functional.cross_entropy(model((x + delta).clamp(0, 1)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def ours(epochs: int, seed: int, authors: bool) -> nn.Module:
    cfg: dict[str, Any] = {
        "data": {"dataset": "mnist", "data_dir": str(DATA), "val_fraction": 0.0 if authors else 0.05},
        "model": {"arch": "wong_mnist_cnn"},
        "train": {
            "optimizer": "adam",
            "lr": LR_MAX,
            "weight_decay": 0.0,
            "epochs": epochs,
            "batch_size": BATCH,
            "schedule": "cyclic",
            "eval_limit": 500,
            "seed": seed,
            "select_by": "last" if authors else "auto",
        },
        "method": {"name": "fast", "early_stop": not authors},
        "attack": {"name": "fgsm", "eps": EPS, "step": ALPHA, "random_start": True},
        "eval_attack": {"name": "pgd", "eps": EPS, "step": 0.03, "steps": 20},
        "eval": {"attacks": ("pgd20",), "sanity": False, "metrics": False, "limit": 200},
    }
    tr = Trainer(TrialConfig.from_dict(cfg))
    while not tr.finished:
        tr.run_epoch()
    return tr.best_model()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--runs", default="reference,ours,ours_default")
    ap.add_argument("--eval-examples", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    test = prepare_data("mnist", torch.device("cpu"), str(DATA)).test
    pgd = create_attack("pgd", eps=EPS, step=0.01, steps=50, restarts=10)
    for seed in (int(s) for s in args.seeds.split(",")):
        for run in args.runs.split(","):
            start = time.perf_counter()
            if run == "reference":
                model = reference(args.epochs, seed)
            else:
                model = ours(args.epochs, seed, authors=run == "ours")
            train_seconds = time.perf_counter() - start
            torch.manual_seed(1000 + seed)  # the same attack starts for every run of this seed
            res = evaluate(model, test, {"clean": NoAttack(), "pgd50x10": pgd}, limit=args.eval_examples)
            row = {"run": run, "seed": seed, "epochs": args.epochs, "train_seconds": round(train_seconds, 1)}
            print(json.dumps({**row, **{k: v for k, v in res.items() if k.endswith("_acc")}}), flush=True)


if __name__ == "__main__":
    main()
