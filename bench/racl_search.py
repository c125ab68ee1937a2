"""RACL's search, measured (results in bench/RESULTS.md).

- ``cost``: one search epoch (architecture step + weight step per batch) of the RACL supernet against
  plain PC-DARTS on the same supernet (``pcdarts_supernet``: softmax weights, no Lipschitz terms), same
  data, batches and settings, alternating runs; and how much of RACL's epoch its Lipschitz terms take
  (power iteration, the log-normal bound and the ADMM terms, timed inside the same epochs).
- ``constraint``: the expected ln bound (mu + Phi^-1(eta) sigma^2 - ln lambda*, the constraint c) per
  epoch on the embedded digits for each rho of Table 5 and without confidence learning: the Table 5
  direction (a larger rho pushes c down faster).

Run: python bench/racl_search.py cost constraint --cifar ../shared/data/cifar-10-subset
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Any

import torch

from tune_robust.config import TrialConfig
from tune_robust.models.racl import RACLSupernet
from tune_robust.search_spaces.racl import SEARCH_PAPER, SEARCH_SMOKE
from tune_robust.training.loop import Trainer


def cifar_search(data_dir: str, arch: str, train_limit: int) -> dict[str, Any]:
    """The paper's search settings on the CIFAR-10 subset, at C = 16 over 8 cells (the paper's
    supernet), architecture steps from the first epoch."""
    cfg = copy.deepcopy(SEARCH_PAPER)
    data = {"dataset": "cifar10", "data_dir": data_dir, "train_limit": train_limit, "val_fraction": 0.02}
    cfg["data"] = data
    model = {"arch": arch, "channels": 16, "layers": 8}
    cfg["model"] = model if arch == "pcdarts_supernet" else {**cfg["model"], **model}
    cfg["train"] = {**cfg["train"], "epochs": 10, "batch_size": 64, "eval_every": 1000}
    cfg["arch_step"] = {**cfg["arch_step"], "warmup_epochs": 0}
    return cfg


def timed_epoch(trainer: Trainer) -> tuple[float, float]:
    """(train seconds of one epoch, seconds inside the supernet's Lipschitz terms)."""
    net = trainer.model
    spent = [0.0]
    if isinstance(net, RACLSupernet) and type(net).arch_penalty is RACLSupernet.arch_penalty:
        inner = net.arch_penalty

        def penalty() -> Any:
            t = time.perf_counter()
            out = inner()
            spent[0] += time.perf_counter() - t
            return out

        net.arch_penalty = penalty  # type: ignore[method-assign]
    seconds = trainer.train_epoch()["train_seconds"]
    return seconds, spent[0]


def bench_cost(data_dir: str, train_limit: int, repeats: int) -> None:
    torch.set_num_threads(2)
    racl = Trainer(TrialConfig.from_dict(cifar_search(data_dir, "racl_supernet", train_limit)))
    plain = Trainer(TrialConfig.from_dict(cifar_search(data_dir, "pcdarts_supernet", train_limit)))
    print(
        f"CIFAR subset, {len(racl.data.train)} weight + {len(racl.arch_step.split) if racl.arch_step else 0} "
        f"architecture images, batch 64, C=16, 8 cells, K=4, 2 threads; {repeats} alternating epochs each"
    )
    r, p, lip = [], [], []
    for _ in range(repeats):
        seconds, inside = timed_epoch(racl)
        r.append(seconds)
        lip.append(inside)
        p.append(timed_epoch(plain)[0])
    rm, pm, lm = statistics.median(r), statistics.median(p), statistics.median(lip)
    print(f"  PC-DARTS search epoch: median {pm:.1f} s (all: {', '.join(f'{x:.1f}' for x in p)})")
    runs = ", ".join(f"{x:.1f}" for x in r)
    print(f"  RACL search epoch:     median {rm:.1f} s (all: {runs}): {rm / pm:.2f}x")
    print(f"  of which the Lipschitz terms (power iteration, bound, ADMM): {lm:.1f} s ({lm / rm:.0%})")


def bench_constraint(epochs: int) -> None:
    torch.set_num_threads(2)
    settings: dict[str, dict[str, Any]] = {
        "without CL": {"confidence": False, "rho": 0.001},
        "rho 0.0001": {"rho": 0.0001},
        "rho 0.001": {"rho": 0.001},
        "rho 0.01": {"rho": 0.01},
    }
    print(f"digits smoke search ({epochs} epochs, eta 0.9, architecture LR 0.05): constraint c per epoch")
    for label, model in settings.items():
        cfg = copy.deepcopy(SEARCH_SMOKE)
        cfg["model"] = {**cfg["model"], **model}
        cfg["train"] = {**cfg["train"], "epochs": epochs}
        trainer = Trainer(TrialConfig.from_dict(cfg))
        cs = []
        while not trainer.finished:
            m = trainer.run_epoch()
            cs.append(m.get("search_constraint", float("nan")))
        assert isinstance(trainer.model, RACLSupernet)
        values = ", ".join(f"{c:7.2f}" for c in cs)
        print(f"  {label:12s}: c = {values}; theta {float(trainer.model.theta):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("parts", nargs="+", choices=["cost", "constraint"])
    ap.add_argument("--cifar", default=None, help="CIFAR-10 folder (e.g. ../shared/data/cifar-10-subset)")
    ap.add_argument("--train-limit", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args()
    for part in args.parts:
        if part == "cost":
            if not args.cifar:
                raise SystemExit("cost needs --cifar")
            bench_cost(args.cifar, args.train_limit, args.repeats)
        else:
            bench_constraint(args.epochs)


if __name__ == "__main__":
    main()
