"""Proxy fidelity of RobNet's finetune ranking on real images (results in bench/RESULTS.md).

Does the ranking of sampled architectures after a short PGD-AT finetune from the supernet's weights
(the supplement's 3 epochs) agree with the ranking after longer training of the same architectures from
scratch? On the CIFAR-10 subset at a CPU-sized scale: a cell-based supernet of 5 cells x 4 channels
trained with PGD-7 at 8/255 (Algorithm 1), codes from ``finetune_codes`` (the sweep's filters and
budgets), each finetuned ``--proxy-epochs`` from the inherited weights and, separately, trained
``--long-epochs`` from scratch; test PGD-10 accuracy on the first ``--test`` test images; Kendall tau
and Spearman rho between the two rankings (tune_robust.analysis.rank_correlation).

Run: python bench/robnet_proxy.py --cifar ../shared/data/cifar-10-subset
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import torch

from tune_robust.analysis import rank_correlation
from tune_robust.attacks import NoAttack, create_attack
from tune_robust.config import TrialConfig
from tune_robust.evaluation import evaluate
from tune_robust.search_spaces.robnet import BUDGETS, SUPERNET_PAPER, _finetune, finetune_codes
from tune_robust.training.loop import Trainer


def base(data_dir: str, train_limit: int, epochs: int) -> dict[str, Any]:
    cfg = copy.deepcopy(SUPERNET_PAPER)
    cfg["data"] = {
        "dataset": "cifar10",
        "data_dir": data_dir,
        "train_limit": train_limit,
        "val_fraction": 0.05,
    }
    cfg["model"] = {"arch": "robnet_supernet", "channels": 4, "layers": 5, "share": True}
    cfg["train"] = {**cfg["train"], "epochs": epochs, "batch_size": 64, "lr": 0.05, "eval_every": 1000}
    cfg["eval"] = {"attacks": ("pgd20",), "sanity": False, "metrics": False}
    return cfg


def robust(trainer: Trainer, n_test: int) -> float:
    pgd10 = create_attack("pgd", eps=8 / 255, step=2 / 255, steps=10)
    res = evaluate(trainer.model, trainer.data.test, {"clean": NoAttack(), "pgd10": pgd10}, limit=n_test)
    return float(res["worst_acc"])


def run(cfg: dict[str, Any], data: Any) -> Trainer:
    trainer = Trainer(TrialConfig.from_dict(cfg), data=data)
    while not trainer.finished:
        trainer.run_epoch()
    return trainer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cifar", required=True)
    ap.add_argument("--train-limit", type=int, default=1500)
    ap.add_argument("--supernet-epochs", type=int, default=6)
    ap.add_argument("--per-budget", type=int, default=3)
    ap.add_argument("--proxy-epochs", type=int, default=3)
    ap.add_argument("--long-epochs", type=int, default=10)
    ap.add_argument("--test", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    cfg = base(args.cifar, args.train_limit, args.supernet_epochs)
    sup = run(cfg, None)
    sup_dir = "/tmp/robnet_proxy_supernet"
    sup.save(sup_dir)
    pgd10 = create_attack("pgd", eps=8 / 255, step=2 / 255, steps=10)
    res = evaluate(sup.best_model(), sup.data.test, {"clean": NoAttack(), "pgd10": pgd10}, limit=args.test)
    print(
        f"supernet: {args.supernet_epochs} epochs on {len(sup.data.train)} images; its probe sub-network: "
        f"test clean {res['clean_acc']:.3f}, PGD-10 {res['worst_acc']:.3f} [{time.time() - t0:.0f} s]"
    )
    codes = finetune_codes(args.per_budget, BUDGETS, seed=1)
    proxy, long = {}, {}
    for code in codes:
        t1 = time.time()
        ft = _finetune(cfg, epochs=args.proxy_epochs, lr=0.01)
        ft = {**ft, "model": {**ft["model"], "code": code}, "upstream": {"init": f"{sup_dir}/model.pt"}}
        proxy[code] = robust(run(ft, sup.data), args.test)
        scratch = _finetune(cfg, epochs=args.long_epochs, lr=0.05)
        scratch = {**scratch, "model": {**scratch["model"], "code": code}}
        scratch["train"] = {**scratch["train"], "schedule": "cosine"}
        long[code] = robust(run(scratch, sup.data), args.test)
        print(
            f"  {code}: proxy {proxy[code]:.3f}, long {long[code]:.3f} [{time.time() - t1:.0f} s]", flush=True
        )
    import pandas as pd

    rc = rank_correlation(pd.Series(proxy), pd.Series(long))
    top_proxy = max(proxy, key=lambda c: proxy[c])
    rank_of_pick = sorted(long, key=lambda c: -long[c]).index(top_proxy) + 1
    print(
        f"{len(codes)} codes: Kendall tau {rc['kendall_tau']:.3f} (p {rc['kendall_p']:.2g}), Spearman rho "
        f"{rc['spearman_rho']:.3f} (p {rc['spearman_p']:.2g}); the proxy's pick ranks {rank_of_pick} of "
        f"{len(codes)} after long training [total {time.time() - t0:.0f} s]"
    )


if __name__ == "__main__":
    main()
