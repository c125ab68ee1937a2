"""The evaluation suite before and after the cost floor, side by side in one run.

Trains a few configs of the default grid (``wrn_depth_grid`` at smoke fidelity: digits, 5 epochs of
PGD-3 AT) once, then runs the end-of-trial suite of that fidelity (FGSM + PGD-20 on the 359 test images,
stability, Lipschitz, sanity flags on 128) on each trained model twice: with the code of a baseline
commit (a git worktree, in a subprocess) and with this checkout (another subprocess), the latter also
with ``eval.cost_floor=false`` (every example through every iteration, same starts). Prints the suite's
seconds per trial, the ratio, every accuracy column of both, and how many columns and flags differ:
from the baseline (other random starts, any-iterate counting) and from the run without the floor
(which must be none).

Run: python bench/eval_cost.py [--base 5a38940] [--depths 1-1-1,3-3-3,...] [--metrics on|off]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEPTHS = "1-1-1,3-3-3,5-5-5,9-9-9,1-9-1,9-1-9"

# Runs in a subprocess with the tree to measure first on sys.path: the suite on each saved model.
SUITE = r"""
import json, sys, time, torch
from tune_robust.config import TrialConfig
from tune_robust.data import prepare_data
from tune_robust.evaluation.suite import run_suite
from tune_robust.models.checkpoint import load_checkpoint
torch.set_num_threads(2)
cfg = TrialConfig.from_dict(json.loads(sys.argv[1]))
data = prepare_data("digits", torch.device("cpu"))
out = []
for path in sys.argv[2:]:
    model = load_checkpoint(path)
    torch.manual_seed(0)
    t = time.perf_counter()
    res = run_suite(model, data.test, cfg.eval, data.num_classes, "digits")
    out.append({"seconds": time.perf_counter() - t, **{k: v for k, v in res.metrics.items()
                if isinstance(v, (int, float, bool, str)) or v is None}})
print(json.dumps(out))
"""


def smoke_config(depths: tuple[int, ...], metrics: bool) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from search_spaces.wrn import SMOKE_DIGITS

    cfg: dict[str, Any] = copy.deepcopy(SMOKE_DIGITS)
    cfg["model"] = {**cfg["model"], "depths": depths}
    cfg["eval"] = {**cfg["eval"], "metrics": metrics}
    return cfg


def train(depths: list[tuple[int, ...]], out: Path, metrics: bool) -> list[str]:
    import torch

    from tune_robust.config import TrialConfig
    from tune_robust.training.loop import Trainer

    torch.set_num_threads(2)
    paths = []
    for d in depths:
        trainer = Trainer(TrialConfig.from_dict(smoke_config(d, metrics)))
        while not trainer.finished:
            trainer.run_epoch()
        trainer.save(out / "-".join(map(str, d)))
        paths.append(str(out / "-".join(map(str, d)) / "model.pt"))
    return paths


def suite(tree: Path, cfg: dict, paths: list[str]) -> list[dict]:
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", SUITE, json.dumps(cfg), *paths],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="5a38940", help="baseline commit (before the cost floor)")
    ap.add_argument("--depths", default=DEFAULT_DEPTHS)
    ap.add_argument("--metrics", choices=("on", "off"), default="on")
    args = ap.parse_args()
    metrics = args.metrics == "on"
    depths = [tuple(int(v) for v in d.split("-")) for d in args.depths.split(",")]
    tmp = Path(tempfile.mkdtemp())
    base = tmp / "base"
    subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base], cwd=ROOT, check=True)
    try:
        paths = train(depths, tmp, metrics)
        cfg = smoke_config(depths[0], metrics)
        before = suite(base, cfg, paths)
        after = suite(ROOT, cfg, paths)
        no_floor = suite(ROOT, {**cfg, "eval": {**cfg["eval"], "cost_floor": False}}, paths)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=True)
    print(f"suite of wrn_depth_grid smoke (metrics {args.metrics}); baseline {args.base} vs this checkout")
    print(f"{'depths':8s} {'before s':>9s} {'after s':>8s} {'ratio':>6s}  accuracy columns before -> after")
    cols = [k for k in before[0] if k.startswith("test_") and k.endswith("_acc")]
    flags = [k for k in before[0] if k.startswith("sanity_") and k != "sanity_messages"]
    differ = flag_differ = 0
    for d, b, a in zip(depths, before, after, strict=True):
        accs = ", ".join(f"{c[5:-4]} {b[c]:.4f}->{a[c]:.4f}" for c in cols)
        differ += sum(b[c] != a[c] for c in cols)
        flag_differ += sum(b[f] != a[f] for f in flags)
        name = "-".join(map(str, d))
        print(f"{name:8s} {b['seconds']:9.2f} {a['seconds']:8.2f} {a['seconds'] / b['seconds']:6.3f}  {accs}")
    tb, ta = sum(b["seconds"] for b in before), sum(a["seconds"] for a in after)
    print(f"total    {tb:9.2f} {ta:8.2f} {ta / tb:6.3f}")
    print(f"accuracy values that differ: {differ} of {len(cols) * len(depths)}; ", end="")
    print(f"sanity flags that differ: {flag_differ} of {len(flags) * len(depths)}")
    for d, b, a in zip(depths, before, after, strict=True):
        changed = [f"{f[7:]} {b[f]}->{a[f]}" for f in flags if b[f] != a[f]]
        if changed:
            print(f"  flags of {'-'.join(map(str, d))}: {', '.join(changed)}")
    tn = sum(n["seconds"] for n in no_floor)
    keys = [k for k in after[0] if k.startswith(("test_", "sanity_", "stability_", "lipschitz_"))]
    same = sum(a[k] == n[k] for a, n in zip(after, no_floor, strict=True) for k in keys)
    print(f"this checkout without the floor (eval.cost_floor=false): {tn:.2f} s in total; the floor's run")
    print(f"  takes {ta / tn:.3f} of it, with {same} of {len(keys) * len(depths)} columns identical")
    if metrics:
        for key in ("lipschitz_logits", "stability_pgd20"):
            same = sum(b.get(key) == a.get(key) for b, a in zip(before, after, strict=True))
            print(f"{key}: identical in {same} of {len(depths)}")


if __name__ == "__main__":
    main()
