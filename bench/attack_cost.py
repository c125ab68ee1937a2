"""Attack cost: wall time of PGD-k over (k + 1) x the measured forward+backward time of the same batch.

One PGD step is one forward and one input-gradient backward; the +1 is the forward that scores the
result. A second row per case runs the evaluation's early-stopping PGD (examples leave the batch once
fooled) on the model's own predictions as labels, and prices only the example-passes it ran: its ratio
is per attacked example (the overhead of shrinking the batch). A ratio near 1.0 means the attack adds
no overhead beyond the passes it needs (goal <= 1.1).
The forward+backward reference is the same computation the attack must do: logits, summed
cross-entropy, gradient w.r.t. the input only, model in eval mode, fp32.

Run: python bench/attack_cost.py [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from tune_robust.attacks import create_attack
from tune_robust.models import create_model


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (allocator, oneDNN/cuDNN kernel selection)
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def fwd_bwd(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    xr = x.detach().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(xr), y, reduction="sum")
    torch.autograd.grad(loss, xr)


class Counted(nn.Module):
    """Counts the examples that pass through the model."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.examples = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.examples += len(x)
        return self.inner(x)


def per_example(model: nn.Module, x: torch.Tensor, attack: object, ref: float, repeats: int) -> None:
    """The evaluation's early-stopping PGD (``attack(..., early_stop=True)``) on labels the model gets
    right (its own predictions): wall time over the forward-backward time of the example-passes it
    actually ran (each example-pass priced at ``ref`` / batch size)."""
    from tune_robust.attacks import Starts

    with torch.no_grad():
        y = model(x).argmax(1)
    counted = Counted(model)
    starts = Starts.of_batch(0, len(y))

    def run() -> None:
        counted.examples = 0
        attack.attack(counted, x, y, starts, early_stop=True)  # type: ignore[attr-defined]

    t = timed(run, repeats)
    passes = counted.examples / len(y)  # forward passes per example, the final scoring one included
    ratio = t / (passes * ref)
    label = "  early-stopping, per attacked example"
    print(f"{label:52s} {'':4s} {'':11s} {t * 1e3:10.1f} {ratio:6.3f}  ({passes:.2f} passes per example)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    small = {"widths": (0.5,) * 3}
    cases = [
        ("wrn 1-1-1 w0.5, digits 8x8, batch 256", "wrn", {"depths": (1, 1, 1), **small}, (1, 8, 8), 256),
        ("wrn 5-5-5 w0.5, digits 8x8, batch 256", "wrn", {"depths": (5, 5, 5), **small}, (1, 8, 8), 256),
        ("madry_cnn, mnist 28x28, batch 256", "madry_cnn", {}, (1, 28, 28), 256),
        (
            "wrn 2-2-2 w2 (WRN-16-2), cifar 32x32, batch 128",
            "wrn",
            {"depths": (2, 2, 2), "widths": (2.0,) * 3},
            (3, 32, 32),
            128,
        ),
    ]
    print(f"device {device}, threads {args.threads}, median of {args.repeats}")
    print(f"{'model':52s} {'k':>4s} {'fwd+bwd ms':>11s} {'PGD-k ms':>10s} {'ratio':>6s}")
    for label, arch, kwargs, shape, batch in cases:
        torch.manual_seed(0)
        model = create_model(arch, 10, shape[0], **kwargs).to(device).eval()
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = torch.rand(batch, *shape, device=device).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (batch,), device=device)
        ref = timed(partial(fwd_bwd, model, x, y), args.repeats)
        for k in (10, 20):
            attack = create_attack("pgd", eps=8 / 255, step=2 / 255, steps=k)

            def run(
                m: nn.Module = model, a: object = attack, x: torch.Tensor = x, y: torch.Tensor = y
            ) -> None:
                adv = a.perturb(m, x, y)  # type: ignore[attr-defined]
                with torch.no_grad():
                    m(adv)

            t = timed(run, args.repeats)
            print(f"{label:52s} {k:4d} {ref * 1e3:11.2f} {t * 1e3:10.1f} {t / ((k + 1) * ref):6.3f}")
            per_example(model, x, attack, ref, args.repeats)


if __name__ == "__main__":
    main()
