"""Real-data checks of the training methods, outside Ray so each epoch can be timed.

mnist: ``fast`` and ``pgd_at`` on ../shared/data/mnist-subset (14,262 train / 10,000 test) at eps 0.3,
    evaluated with PGD-50 x 10 restarts (step 0.01, Wong et al.'s MNIST evaluation) on the first
    ``--eval-examples`` test images and with PGD-50 x 1 on the whole test set.
cifar: a narrow PreAct ResNet-18 trained ``standard`` vs ``pgd_at`` (PGD-7, step 2/255) on
    ../shared/data/cifar-10-subset (4,660 train / 932 test), evaluated with PGD-20 (step 2/255) at 8/255.

Prints one JSON line per epoch and one per evaluated model; the numbers go to bench/RESULTS.md.

Run: python bench/realdata_methods.py mnist [--methods fast,pgd_at] [--epochs 10] [--eval-examples 1000]
     python bench/realdata_methods.py cifar [--epochs 15]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from tune_robust.attacks import NoAttack, create_attack
from tune_robust.config import TrialConfig
from tune_robust.evaluation import evaluate
from tune_robust.training.loop import Trainer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def mnist_config(
    method: str, epochs: int, lr: float, pgd_steps: int, arch: str, recipe: dict[str, Any]
) -> dict[str, Any]:
    attack: dict[str, Any]
    if method == "fast":  # Wong et al.: FGSM from a uniform start, step 1.25 eps, cyclic LR
        attack = {"name": "fgsm", "eps": 0.3, "step": 0.375, "random_start": True}
        if recipe.get("clip_start"):
            attack["clip_start"] = True
        schedule = "cyclic"
    else:  # Madry et al. use PGD-40 step 0.01; PGD-k step 0.4 / k keeps the same total travel (1.33 eps)
        step = recipe.get("pgd_step") or 0.4 / pgd_steps
        attack = {"name": "pgd", "eps": 0.3, "step": step, "steps": pgd_steps}
        if recipe.get("freeze_fooled"):
            attack["freeze_fooled"] = True
        schedule = recipe.get("schedule") or "cyclic"
    method_cfg: dict[str, Any] = {"name": method}
    if method == "fast" and recipe.get("no_early_stop"):
        method_cfg["early_stop"] = False
    return {
        "data": {
            "dataset": "mnist",
            "data_dir": str(DATA / "mnist-subset"),
            "val_fraction": recipe.get("val_fraction", 0.05),
        },
        "model": {"arch": arch},
        "train": {
            "optimizer": "adam",
            "lr": lr,
            "weight_decay": 0.0,
            "epochs": epochs,
            "batch_size": 100,
            "schedule": schedule,
            "eval_limit": 500,
            "select_by": recipe.get("select_by", "auto"),
        },
        "method": method_cfg,
        "attack": attack,
        "eval_attack": {"name": "pgd", "eps": 0.3, "step": 0.03, "steps": 20},
        "eval": {"attacks": ("pgd20",), "sanity": False, "metrics": False, "limit": 200},
    }


def cifar_config(method: str, epochs: int, width: int) -> dict[str, Any]:
    return {
        "data": {"dataset": "cifar10", "data_dir": str(DATA / "cifar-10-subset"), "val_fraction": 0.05},
        "model": {"arch": "preact_resnet18", "width": width},
        "train": {
            "lr": 0.1,
            "epochs": epochs,
            "batch_size": 128,
            "schedule": "cosine",
            "warmup_epochs": 1,
            "eval_limit": 233,
        },
        "method": {"name": method},
        "attack": {"name": "pgd", "eps": "8/255", "step": "2/255", "steps": 7}
        if method != "standard"
        else {"name": "none"},
        "eval_attack": {"name": "pgd", "eps": "8/255", "step": "2/255", "steps": 10},
        "eval": {"attacks": ("pgd20",), "sanity": False, "metrics": False, "limit": 100},
    }


def train(cfg: dict[str, Any], tag: str) -> Trainer:
    tr = Trainer(TrialConfig.from_dict(cfg))
    while not tr.finished:
        m = tr.run_epoch()
        keep = ("epoch", "train_loss", "train_acc", "train_seconds", "val_clean_acc", "val_robust_acc")
        row = {k: m[k] for k in keep if k in m}
        row.update({k: m[k] for k in ("probe_pgd_acc", "stopped_early") if k in m})
        print(json.dumps({"run": tag, **row}), flush=True)
    return tr


def report(tr: Trainer, tag: str, attacks: dict[str, Any], limit: int) -> None:
    model = tr.best_model()
    t = time.perf_counter()
    res = evaluate(model, tr.data.test, {"clean": NoAttack(), **attacks}, limit=limit)
    seconds = [h["train_seconds"] for h in tr.history]
    print(
        json.dumps(
            {
                "run": tag,
                "eval_examples": limit or len(tr.data.test),
                "best_epoch": tr.best["epoch"],
                "epochs_run": tr.epoch,
                "stopped_early": tr.stopped,
                "seconds_per_epoch": sum(seconds) / len(seconds),
                "eval_seconds": time.perf_counter() - t,
                **{k: v for k, v in res.items() if k.endswith("_acc")},
            }
        ),
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("task", choices=["mnist", "cifar"])
    ap.add_argument("--methods", default="")
    ap.add_argument("--epochs", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--pgd-steps", type=int, default=10)
    ap.add_argument("--eval-examples", type=int, default=1000)
    ap.add_argument("--full-test", action="store_true", help="also PGD-50 x 1 on the whole test set")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--arch", default="madry_cnn", help="MNIST model (madry_cnn, wong_mnist_cnn, small_cnn)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--select-by", default="auto", help="train.select_by (the authors' MNIST code keeps the last)"
    )
    ap.add_argument(
        "--no-early-stop", action="store_true", help="fast: no probe stop (the authors' MNIST code)"
    )
    ap.add_argument(
        "--clip-start", action="store_true", help="fast: clip the FGSM random start (old behaviour)"
    )
    ap.add_argument("--val-fraction", type=float, default=0.05)
    ap.add_argument("--schedule", default="", help="pgd_at: train.schedule (default cyclic)")
    ap.add_argument("--pgd-step", type=float, default=0.0, help="pgd_at: PGD step (default 0.4 / steps)")
    ap.add_argument(
        "--freeze-fooled",
        action="store_true",
        help="pgd_at: stop moving examples the model already misclassifies (Wong et al.'s MNIST PGD)",
    )
    args = ap.parse_args()
    recipe = {
        "select_by": args.select_by,
        "no_early_stop": args.no_early_stop,
        "clip_start": args.clip_start,
        "val_fraction": args.val_fraction,
        "schedule": args.schedule,
        "pgd_step": args.pgd_step,
        "freeze_fooled": args.freeze_fooled,
    }
    torch.set_num_threads(args.threads)
    if args.task == "mnist":
        for method in (args.methods or "fast,pgd_at").split(","):
            cfg = mnist_config(method, args.epochs or 10, args.lr, args.pgd_steps, args.arch, recipe)
            tr = train(cfg, f"mnist-{method}-{args.arch}")
            print(json.dumps({"run": f"mnist-{method}-{args.arch}", "recipe": recipe}), flush=True)
            strong = create_attack("pgd", eps=0.3, step=0.01, steps=50, restarts=10)
            report(tr, f"mnist-{method}-{args.arch}-pgd50x10", {"pgd50x10": strong}, args.eval_examples)
            if args.full_test:
                single = create_attack("pgd", eps=0.3, step=0.01, steps=50)
                report(tr, f"mnist-{method}-{args.arch}-pgd50", {"pgd50": single}, 0)
    else:
        for method in (args.methods or "standard,pgd_at").split(","):
            tr = train(cifar_config(method, args.epochs or 15, args.width), f"cifar-{method}")
            pgd20 = create_attack("pgd", eps=8 / 255, step=2 / 255, steps=20)
            report(tr, f"cifar-{method}-pgd20", {"pgd20": pgd20}, 0)


if __name__ == "__main__":
    main()
