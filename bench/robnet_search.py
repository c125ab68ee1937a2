"""RobNet's one-shot search, measured (results in bench/RESULTS.md).

- ``step``: a PGD-7 AT epoch of the supernet running one sampled code against the standalone network
  of that code with the inherited weights (the same training loop, same batches): what weight sharing
  costs per step; and the supernet sampling a new code every batch (Algorithm 1).
- ``fsp``: a cell-free supernet trained briefly, then 300 sampled cell-free codes screened by their FSP
  distance (tune_robust.evaluation.fsp, the sweep's normalisation): how many survive at the
  supplement's 0.006 and at our smoke threshold, and the distances' quantiles. On the embedded digits
  (the smoke supernet: 5 cells, last 3) and on the CIFAR-10 subset (20 cells, last 10, at C = 8).
- ``throughput``: robnet_supernet then robnet_finetune at the smoke fidelity through the runner at 2
  concurrent trials: finetune trials per hour on this machine.

Run: python bench/robnet_search.py step fsp throughput --cifar ../shared/data/cifar-10-subset
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from tune_robust.config import TrialConfig
from tune_robust.evaluation.fsp import fsp_distance
from tune_robust.models import count_params, create_model
from tune_robust.models.oneshot import inherit
from tune_robust.models.robnet import RobNetSpace, RobNetSupernet
from tune_robust.search_spaces.robnet import (
    FSP_PAPER,
    FSP_SMOKE,
    SUPERNET_PAPER,
    SUPERNET_SMOKE,
    _finetune,
    free_codes,
)
from tune_robust.training.loop import Trainer


def cifar_supernet(
    data_dir: str, channels: int, layers: int, share: bool, train_limit: int, epochs: int
) -> dict[str, Any]:
    cfg = copy.deepcopy(SUPERNET_PAPER)
    cfg["data"] = {
        "dataset": "cifar10",
        "data_dir": data_dir,
        "train_limit": train_limit,
        "val_fraction": 0.05,
    }
    cfg["model"] = {"arch": "robnet_supernet", "channels": channels, "layers": layers, "share": share}
    cfg["train"] = {**cfg["train"], "epochs": epochs, "batch_size": 64, "eval_every": 1000}
    cfg["eval"] = {"attacks": ("pgd20",), "sanity": False, "metrics": False, "limit": 200}
    return cfg


def bench_step(data_dir: str) -> None:
    torch.set_num_threads(2)
    cfg = cifar_supernet(data_dir, channels=16, layers=8, share=True, train_limit=512, epochs=1)
    sup = Trainer(TrialConfig.from_dict(cfg))
    net = sup.model
    assert isinstance(net, RobNetSupernet)
    codes = [RobNetSpace(8, True).sample(torch.Generator().manual_seed(s)) for s in range(3)]
    print("CIFAR subset, 512 images, batch 64, PGD-7 AT, C=16, 8 cells, 2 threads")
    print(f"supernet parameters {count_params(sup.model) / 1e6:.3f}M")
    rows = []
    for code in codes:
        text = RobNetSpace(8, True).to_text(code)
        fcfg = _finetune(cfg, epochs=1, lr=0.01)
        fcfg = {**fcfg, "model": {**fcfg["model"], "code": text}}
        alone = Trainer(TrialConfig.from_dict(fcfg), data=sup.data)
        inherit(sup.model, alone.model)
        net.sampling = False  # run this code only
        net.use(code)
        t_alone = min(alone.train_epoch()["train_seconds"] for _ in range(2))
        t_sup = min(sup.train_epoch()["train_seconds"] for _ in range(2))
        rows.append((t_sup, t_alone))
        print(
            f"  code {text[:20]}...: params {count_params(alone.model) / 1e6:.3f}M, standalone "
            f"{t_alone:.2f} s/epoch, supernet on it {t_sup:.2f} s ({t_sup / t_alone:.2f}x)"
        )
    net.sampling = True
    t_sampled = min(sup.train_epoch()["train_seconds"] for _ in range(2))
    mean_alone = statistics.mean(a for _, a in rows)
    print(
        f"  supernet sampling per batch (Algorithm 1): {t_sampled:.2f} s/epoch vs the 3 standalone "
        f"networks' mean {mean_alone:.2f} s ({t_sampled / mean_alone:.2f}x)"
    )


def screen(
    sup: Trainer, codes: list[str], channels: int, layers: int, cells: int, examples: int
) -> list[float]:
    split = sup.data.val.head(examples)
    from tune_robust.data import batches

    out = []
    for text in codes:
        model = create_model(
            "robnet", sup.data.num_classes, int(split.x.shape[1]), code=text, channels=channels, layers=layers
        )
        inherit(sup.model, model)
        d = fsp_distance(model, batches(split, 128), sup.train_attack)
        out.append(sum(d[-cells:]) / cells)
    return out


def report(name: str, dist: list[float], thresholds: dict[str, float]) -> None:
    q = statistics.quantiles(dist, n=20)
    print(
        f"{name}: {len(dist)} codes; FSP distance min {min(dist):.4g}, 5% {q[0]:.4g}, "
        f"median {statistics.median(dist):.4g}, 95% {q[-1]:.4g}, max {max(dist):.4g}"
    )
    for label, t in thresholds.items():
        print(f"  survive at {label} = {t:g}: {sum(d <= t for d in dist)} of {len(dist)}")
    keep = round(68 / 300 * len(dist))  # the supplement kept 68 of 300
    print(
        f"  threshold keeping {keep} of {len(dist)} (the supplement's share, 68/300): "
        f"{sorted(dist)[keep - 1]:.4g}"
    )


def bench_fsp(data_dir: str | None, n: int) -> None:
    torch.set_num_threads(2)
    t0 = time.time()
    smoke = Trainer(
        TrialConfig.from_dict({**SUPERNET_SMOKE, "model": {**SUPERNET_SMOKE["model"], "share": False}})
    )
    while not smoke.finished:
        smoke.run_epoch()
    dist = screen(smoke, free_codes(n, 5), 4, 5, FSP_SMOKE["fsp_cells"], FSP_SMOKE["fsp_examples"])
    report(
        f"digits smoke supernet (5 cells x 4 channels, 2 epochs; last 3 cells, 128 val images) "
        f"[{time.time() - t0:.0f} s]",
        dist,
        {"0.006 (supplement)": FSP_PAPER["fsp_threshold"], "smoke": FSP_SMOKE["fsp_threshold"]},
    )
    if data_dir is None:
        return
    t0 = time.time()
    cfg = cifar_supernet(data_dir, channels=8, layers=20, share=False, train_limit=4000, epochs=3)
    sup = Trainer(TrialConfig.from_dict(cfg))
    while not sup.finished:
        m = sup.run_epoch()
    print(
        f"CIFAR cell-free supernet C=8, 20 cells, 3 epochs PGD-7 AT on 4,000 images: last epoch "
        f"train acc {m['train_acc']:.3f} [{time.time() - t0:.0f} s]"
    )
    t0 = time.time()
    dist = screen(sup, free_codes(n, 20), 8, 20, FSP_PAPER["fsp_cells"], 64)
    report(
        f"CIFAR subset (last 10 of 20 cells, 64 val images, PGD-7 8/255) [{time.time() - t0:.0f} s]",
        dist,
        {"0.006 (supplement)": FSP_PAPER["fsp_threshold"]},
    )


def bench_throughput() -> None:
    from tune_robust.api import RunOptions, plan, run_plan

    with tempfile.TemporaryDirectory() as d:
        opts = RunOptions(results_dir=d, verbose=0, sets=("model.share=true",))
        run_plan(plan("robnet_supernet", opts))
        t0 = time.time()
        p = plan("robnet_finetune", RunOptions(results_dir=d, verbose=0, cpus_per_trial=1))
        run_plan(p)
        wall = time.time() - t0
        import pandas as pd

        df = pd.read_parquet(Path(d) / "robnet_finetune" / "trials.parquet")
        print(
            f"robnet_finetune smoke: {len(df)} trials at 2 concurrent in {wall:.1f} s wall "
            f"(Ray start included): "
            f"{len(df) / wall * 3600:.0f} trials/hour; per trial {df['wall_seconds'].mean():.1f} s"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("parts", nargs="+", choices=["step", "fsp", "throughput"])
    ap.add_argument("--cifar", default=None, help="CIFAR-10 folder (e.g. ../shared/data/cifar-10-subset)")
    ap.add_argument("--codes", type=int, default=300)
    args = ap.parse_args()
    for part in args.parts:
        if part == "step":
            if not args.cifar:
                raise SystemExit("step needs --cifar")
            bench_step(args.cifar)
        elif part == "fsp":
            bench_fsp(args.cifar, args.codes)
        else:
            bench_throughput()


if __name__ == "__main__":
    main()
