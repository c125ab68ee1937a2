"""RNAS-CL on real images (results in bench/RESULTS.md).

On the CIFAR-10 subset (../shared/data/cifar-10-subset): a PGD-AT teacher trained here, then the same
S3 student space searched and trained twice, as RNAS-CL (CE + KL + cross-layer attention from the
teacher) and as "Standard" (CE only, no teacher), with the same budget; PGD-20 (8/255, step eps/10) and
clean accuracy of the teacher and both students on the first ``--test`` test images. The claim checked:
the RNAS-CL student is more robust than the Standard one.

Run: python bench/rnascl_realdata.py --cifar ../shared/data/cifar-10-subset
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from tune_robust.attacks import NoAttack, create_attack
from tune_robust.config import TrialConfig
from tune_robust.evaluation import evaluate
from tune_robust.search_spaces.rnascl import SEARCH_PAPER, TEACHER_PAPER, TRAIN_PAPER
from tune_robust.training.loop import Trainer


def data(cifar: str, train_limit: int) -> dict[str, Any]:
    return {"dataset": "cifar10", "data_dir": cifar, "train_limit": train_limit, "val_fraction": 0.05}


def run(cfg: dict[str, Any]) -> Trainer:
    trainer = Trainer(TrialConfig.from_dict(cfg))
    while not trainer.finished:
        trainer.run_epoch()
    return trainer


def accuracy(trainer: Trainer, n_test: int) -> tuple[float, float]:
    pgd20 = create_attack("pgd", eps=8 / 255, step=0.8 / 255, steps=20)
    model = trainer.best_model().eval()
    res = evaluate(model, trainer.data.test, {"clean": NoAttack(), "pgd20": pgd20}, limit=n_test)
    return float(res["clean_acc"]), float(res["worst_acc"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cifar", required=True)
    ap.add_argument("--train-limit", type=int, default=4000)
    ap.add_argument("--teacher-epochs", type=int, default=10)
    ap.add_argument("--search-epochs", type=int, default=6)
    ap.add_argument("--train-epochs", type=int, default=10)
    ap.add_argument("--test", type=int, default=932)
    ap.add_argument("--teacher", help="a teacher state dir this script saved before (skips training it)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    out = Path(tempfile.mkdtemp())
    t0 = time.time()
    teacher = copy.deepcopy(TEACHER_PAPER)
    teacher["data"] = data(args.cifar, args.train_limit)
    teacher["model"] = {"arch": "wrn", "depths": (2, 2, 2), "widths": (2.0, 2.0, 2.0)}
    teacher["attack"] = {"name": "pgd", "eps": "auto", "step": "eps/4", "steps": 7}
    teacher["train"] = {**teacher["train"], "epochs": args.teacher_epochs, "schedule": "cosine"}
    teacher["eval"] = {"attacks": ("pgd20",), "sanity": False, "metrics": False}
    if args.teacher:  # a saved teacher: its state, restored (the epochs already run)
        t = Trainer(TrialConfig.from_dict(teacher))
        t.load(args.teacher)
        out = Path(args.teacher).parent
    else:
        t = run(teacher)
        t.save(out / "teacher")
    clean, robust = accuracy(t, args.test)
    print(
        f"teacher WRN (2,2,2) x 2, PGD-7 AT {args.teacher_epochs} epochs on {len(t.data.train)} images: "
        f"clean {clean:.3f}, PGD-20 {robust:.3f} [{time.time() - t0:.0f} s]"
    )
    for label, terms in (
        ("Standard", {"kl": False, "attention": False}),
        ("RNAS-CL", {"kl": True, "attention": True}),
    ):
        t1 = time.time()
        search = copy.deepcopy(SEARCH_PAPER)
        search["data"] = data(args.cifar, args.train_limit)
        search["train"] = {**search["train"], "epochs": args.search_epochs, "schedule": "cosine"}
        search["method"] = {**search["method"], **terms}
        search["upstream"] = {"teacher": str(out / "teacher" / "model.pt")}
        searched = run(search)
        record = searched.arch_record(searched.model)
        assert record is not None
        train = copy.deepcopy(TRAIN_PAPER)
        train["data"] = data(args.cifar, args.train_limit)
        train["model"] = record["model"]
        train["method"] = {**train["method"], **record["method"]}
        train["train"] = {**train["train"], "epochs": args.train_epochs, "schedule": "cosine"}
        train["upstream"] = search["upstream"]
        student = run(train)
        clean, robust = accuracy(student, args.test)
        print(
            f"{label:8s}: student {record['model']['channels']} ({student.params / 1e6:.3f}M), "
            f"clean {clean:.3f}, PGD-20 {robust:.3f} [{time.time() - t1:.0f} s]",
            flush=True,
        )


if __name__ == "__main__":
    main()
