"""GPU throughput of PGD-AT: WRN-34-10, PGD-10 adversarial training on CIFAR-shaped data.

``train``: images/s of our training loop (tune_robust's Trainer: the split on the device, batch-wise
augmentation, input-only attack gradients with BatchNorm in eval mode while crafting) under bf16
autocast with channels_last, optionally ``torch.compile``d, and that as a fraction of the device's dense
bf16 peak. The work per image is counted as (2 x steps + 3) forward passes' FLOPs (each attack step is
a forward and an input-only backward, about 2 forwards; the weight update is a forward and a full
backward, about 3), with 2 x MACs FLOPs per forward, the MACs from our own counter.

``share``: total throughput of 4 trials each given 0.25 of the GPU (4 processes on one device, which is
what Ray's fractional GPUs are: the same CUDA_VISIBLE_DEVICES, no partitioning) against 1 trial with the
whole GPU.

Goals: >= 40% of peak; 4 x 0.25 >= 85% of 1 x 1.0. No GPU has been lent to this project when this was
written; bench/RESULTS.md says whether it has run.

Run: python bench/gpu_throughput.py train [--compile] [--batch 128] [--steps 30]
     python bench/gpu_throughput.py share [--compile]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def trial_config(data_dir: str, batch: int, images: int) -> dict:
    return {
        "data": {"dataset": "cifar10", "data_dir": data_dir, "train_limit": images},
        "model": {"arch": "wrn", "depths": (5, 5, 5), "widths": (10.0, 10.0, 10.0)},  # WRN-34-10
        "train": {"epochs": 1, "batch_size": batch, "lr": 0.1, "amp": "bf16", "eval_every": 1000},
        "method": {"name": "pgd_at"},
        "attack": {"name": "pgd", "eps": "auto", "step": "eps/4", "steps": 10},
        "eval_attack": {"name": "none"},
    }


def measure(data_dir: str, batch: int, steps: int, compile_: bool) -> dict:
    """Images/s of one training epoch of ``steps`` batches, after a warm-up epoch (allocator, cuDNN
    autotuning and compilation happen there)."""
    from tune_robust.config import TrialConfig
    from tune_robust.models import profile_model
    from tune_robust.training.loop import Trainer

    raw = trial_config(data_dir, batch, batch * steps)
    cfg = TrialConfig.from_dict(raw)
    trainer = Trainer(cfg)
    if compile_:
        trainer.model = torch.compile(trainer.model)  # type: ignore[assignment]
    trainer.train_epoch()
    torch.cuda.synchronize()
    timed = trainer.train_epoch()
    arch = {k: v for k, v in raw["model"].items() if k != "arch"}
    _, macs = profile_model("wrn", (3, 32, 32), 10, **arch)
    return {
        "images_per_s": timed["train_examples"] / timed["train_seconds"],
        "macs": macs,
        "attack_steps": 10,
    }


def train(args: argparse.Namespace) -> None:
    name = torch.cuda.get_device_name()
    r = measure(args.data_dir, args.batch, args.steps, args.compile)
    flops_per_image = (2 * r["attack_steps"] + 3) * 2 * r["macs"]
    achieved = r["images_per_s"] * flops_per_image / 1e12
    peak = peak_tflops(name, args.peak_tflops)
    frac = f"{achieved / peak:.1%} of {peak:.0f}" if peak else "unknown peak (pass --peak-tflops)"
    if args.json:
        print(json.dumps(r))
        return
    print(
        f"{name}: WRN-34-10 PGD-10 AT, batch {args.batch}, bf16 autocast, channels_last, "
        f"compile={args.compile}: {r['images_per_s']:.0f} images/s, {achieved:.0f} TFLOP/s = {frac} "
        f"TFLOP/s dense bf16"
    )


def share(args: argparse.Namespace) -> None:
    cmd = [
        sys.executable,
        __file__,
        "train",
        "--json",
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
    ]
    cmd += ["--data-dir", args.data_dir] + (["--compile"] if args.compile else [])

    def run(n: int) -> float:
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
        outs = [p.communicate()[0] for p in procs]
        return sum(json.loads(o.strip().splitlines()[-1])["images_per_s"] for o in outs)

    one = run(1)
    four = run(4)
    print(f"1 trial x 1.0 GPU: {one:.0f} images/s; 4 trials x 0.25 GPU: {four:.0f} images/s in total")
    print(f"ratio {four / one:.3f} (goal >= 0.85)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("train", "share"))
    ap.add_argument(
        "--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/cifar-10-subset")
    )
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--peak-tflops", type=float)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/gpu_throughput.py needs a CUDA GPU")
    torch.backends.cudnn.benchmark = True
    (train if args.what == "train" else share)(args)


if __name__ == "__main__":
    main()
