"""Sweep overhead: N equal trials through the runner (Ray Tune, 1 CPU each) vs the same work serially.

"Equal" trials are the smoke wrn_depth_grid trial at depths 3-3-3 with N different seeds. The serial
baseline runs them one after another in this process with all cores for torch (and, for reference,
with one thread). The runner's time includes starting Ray and writing Parquet.

Run: python bench/sweep_overhead.py [--trials 8]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tune_robust.api import RunOptions, plan, run_plan
from tune_robust.config import TrialConfig
from tune_robust.training.loop import Trainer


def serial(configs: Sequence[Mapping[str, Any]], threads: int) -> float:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    for cfg in configs:
        tr = Trainer(TrialConfig.from_dict(cfg))
        while not tr.finished:
            tr.run_epoch()
        tr.final_metrics()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        p = plan("wrn_depth_grid", RunOptions(sets=("model.depths=3,3,3",), results_dir=tmp, verbose=0))
        configs = []
        for seed in range(args.trials):
            cfg = copy.deepcopy(dict(p.configs[0]))
            cfg["train"]["seed"] = seed
            configs.append(cfg)
        # The one pinned config above, once per seed.
        p = dataclasses.replace(
            p,
            configs=tuple(configs),
            points=tuple({"train.seed": seed} for seed in range(args.trials)),
            strategy=dataclasses.replace(p.strategy, num_samples=args.trials),
        )
        start = time.perf_counter()
        summary = run_plan(p)
        ray_time = time.perf_counter() - start
        assert summary["n_finished"] == args.trials, summary
    serial2 = serial(p.configs, torch.get_num_threads() if torch.get_num_threads() > 1 else 2)
    serial1 = serial(p.configs, 1)
    print(f"{args.trials} smoke trials (WRN d3-3-3 w0.5, digits, 5 epochs PGD-3 AT), 2 cores")
    print(f"runner, 1 CPU per trial (2 concurrent): {ray_time:7.1f} s (incl. Ray start-up)")
    print(
        f"serial, one process, 2 torch threads:   {serial2:7.1f} s"
        f"  -> runner/serial = {ray_time / serial2:.2f}"
    )
    print(
        f"serial, one process, 1 torch thread:    {serial1:7.1f} s"
        f"  -> runner/serial = {ray_time / serial1:.2f}"
    )


if __name__ == "__main__":
    main()
