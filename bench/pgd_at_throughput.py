"""PGD-AT epoch throughput: tune_robust's loop vs a canonical research loop, same WRN, data and threads.

Two baselines, both with a torch DataLoader over a Dataset whose __getitem__ converts one uint8 image to
float and applies pad-4 random crop + flip per sample (what most adversarial-training repositories do):
- "strong": the careful research loop: PGD takes input-only gradients (``torch.autograd.grad`` on the
  perturbation) with BatchNorm in eval mode while crafting (the strongest honest baseline);
- "textbook": PGD calls ``loss.backward()`` on the model (computing parameter gradients it throws away)
  with the model left in train mode.
Ours keeps the split on the device as uint8, augments batch-wise, and takes input-only gradients with
BatchNorm in eval mode while crafting.

With ``--bf16`` both ours (``train.amp=bf16``) and the strong loop also run under CPU bf16 autocast
(a CPU with native bf16 kernels: AVX512-BF16 or AMX), so that precision is compared like for like.

Run: python bench/pgd_at_throughput.py [--data-dir ../shared/data/cifar-10-subset] [--images 1024] [--bf16]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from tune_robust.config import TrialConfig
from tune_robust.data import load_dataset
from tune_robust.models import create_model
from tune_robust.training.loop import Trainer


class CropFlipDataset(Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray, seed: int = 0) -> None:
        self.x, self.y = x, y
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = np.pad(self.x[i], ((0, 0), (4, 4), (4, 4)))
        oy, ox = self.rng.integers(0, 9, 2)
        img = img[:, oy : oy + 32, ox : ox + 32]
        if self.rng.random() < 0.5:
            img = img[:, :, ::-1]
        return torch.from_numpy(img.astype(np.float32) / 255.0), int(self.y[i])


def textbook_pgd(model, x, y, eps, alpha, iters):
    delta = torch.zeros_like(x).uniform_(-eps, eps)
    delta.requires_grad = True
    for _ in range(iters):
        loss = F.cross_entropy(model(x + delta), y)
        loss.backward()
        assert delta.grad is not None
        delta.data = (delta + alpha * delta.grad.detach().sign()).clamp(-eps, eps)
        delta.data = (x + delta.data).clamp(0, 1) - x
        delta.grad.zero_()
    return (x + delta).detach()


def input_grad_pgd(model, x, y, eps, alpha, iters):
    """The careful loop's PGD: gradients w.r.t. the perturbation only, BatchNorm in eval mode."""
    model.eval()
    delta = torch.zeros_like(x).uniform_(-eps, eps)
    delta = ((x + delta).clamp(0, 1) - x).requires_grad_(True)
    for _ in range(iters):
        loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
        delta = ((x + delta).clamp(0, 1) - x).requires_grad_(True)
    model.train()
    return (x + delta).detach()


def canonical_epoch(ds, kwargs, batch_size, eps, alpha, steps, workers, pgd=textbook_pgd, amp=False) -> float:
    """One epoch of the canonical loop; ``amp``: the whole step under CPU bf16 autocast."""
    torch.manual_seed(0)
    model = create_model("wrn", num_classes=10, in_channels=3, **kwargs)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True)
    model.train()
    start = time.perf_counter()
    for x, y in loader:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            x_adv = pgd(model, x, y, eps, alpha, steps)
            loss = F.cross_entropy(model(x_adv), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def ours_epoch(data_dir, n, kwargs, batch_size, eps, alpha, steps, amp="off") -> float:
    cfg = TrialConfig.from_dict(
        {
            "data": {"dataset": "cifar10", "data_dir": data_dir, "val_fraction": 0.0, "train_limit": n},
            "model": {"arch": "wrn", **kwargs},
            "train": {"epochs": 1, "batch_size": batch_size, "schedule": "constant", "amp": amp},
            "attack": {"name": "pgd", "eps": eps, "step": alpha, "steps": steps},
        }
    )
    tr = Trainer(cfg)
    return tr.train_epoch()["train_seconds"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/cifar-10-subset")
    )
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument(
        "--bf16", action="store_true", help="also time both loops under CPU bf16 autocast (train.amp=bf16)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kwargs = {"depths": (2, 2, 2), "widths": (1.0, 1.0, 1.0)}
    eps, alpha, bs = 8 / 255, 2 / 255, 128
    full = load_dataset("cifar10", args.data_dir)
    ds = CropFlipDataset(full.train_x[: args.images], full.train_y[: args.images])
    print(
        f"WRN d2-2-2 w1-1-1, CIFAR-10 {args.images} images, batch {bs}, "
        f"PGD-{args.steps}, {args.threads} threads"
    )
    ours = {
        amp: min(
            ours_epoch(args.data_dir, args.images, kwargs, bs, eps, alpha, args.steps, amp)
            for _ in range(args.repeats)
        )
        for amp in ("off", *(("bf16",) if args.bf16 else ()))
    }
    for amp, sec in ours.items():
        print(f"tune_robust loop ({amp:>4}):      {sec:7.2f} s/epoch  {args.images / sec:7.1f} img/s")
    rows = [("strong", input_grad_pgd, w, False) for w in (0, 2)]
    rows += [("strong", input_grad_pgd, 0, True)] if args.bf16 else []
    rows += [("textbook", textbook_pgd, w, False) for w in (0, 2)]
    for label, pgd, workers, amp in rows:
        canon = min(
            canonical_epoch(ds, kwargs, bs, eps, alpha, args.steps, workers, pgd, amp)
            for _ in range(args.repeats)
        )
        vs = "  ".join(f"ours {a} is {canon / sec:.2f}x faster" for a, sec in ours.items())
        print(
            f"{label} loop (workers={workers}, {'bf16' if amp else 'fp32'}): {canon:7.2f} s/epoch  "
            f"{args.images / canon:7.1f} img/s  -> {vs}"
        )


if __name__ == "__main__":
    main()
