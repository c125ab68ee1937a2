"""What keeping each experiment snapshot whole costs (tune_robust.snapshot.keep), side by side with
Ray writing the same snapshot to its staging folder, which it does at every snapshot anyway.

Input: the ``tune`` folder of a finished sweep (the full default grid's holds a 10 MB trial list for
125 trials: ``python sweep.py wrn_depth_grid --results-dir /tmp/gridrun``). Both sides run ``--repeats``
times in a scratch folder; the medians are printed. Ray's side is its own writers: ``json.dump`` with
Ray's encoder for the trial list and ``_atomic_save`` (cloudpickle) for the search state. It is a lower
bound of Ray's snapshot: Ray also serialises every trial to JSON before writing, not timed here.

Run: python bench/snapshot_keep.py /tmp/gridrun/wrn_depth_grid/tune [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import ray.cloudpickle as cloudpickle
from ray.tune.utils.serialization import TuneFunctionEncoder
from ray.tune.utils.util import _atomic_save

from tune_robust import snapshot


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("tune", type=Path, help="a finished sweep's <sweep>/tune folder")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    files = [snapshot.newest(args.tune, k) for k in (snapshot.EXPERIMENT, *snapshot.SEARCH)]
    if any(p is None for p in files):
        raise SystemExit(
            f"{args.tune} lacks a trial list or search state; pass a finished sweep's tune folder"
        )
    state_file, gen_file, searcher_file = (p for p in files if p is not None)
    state = json.loads(state_file.read_text())
    gen = cloudpickle.loads(gen_file.read_bytes())
    searcher_bytes = searcher_file.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        staging, kept = Path(tmp) / "staging", Path(tmp) / "kept"
        staging.mkdir()

        def ray_writes() -> None:
            with open(staging / state_file.name, "w") as f:
                json.dump(state, f, cls=TuneFunctionEncoder)
            _atomic_save(gen, str(staging), gen_file.name, f"tmp-{gen_file.name}")
            (staging / searcher_file.name).write_bytes(searcher_bytes)  # the searcher's own save

        ray_writes()
        names = [p.name for p in (state_file, gen_file, searcher_file)]
        ray_s = _median_seconds(ray_writes, args.repeats)
        keep_s = _median_seconds(lambda: snapshot.keep(staging, names, kept), args.repeats)
    size = sum(p.stat().st_size for p in (state_file, gen_file, searcher_file))
    print(
        f"snapshot: {len(state['trial_data'])} trials, {size / 1e6:.2f} MB in 3 files;",
        f"median of {args.repeats}",
    )
    print(f"  Ray writes it to staging   {ray_s * 1e3:8.1f} ms")
    print(f"  keep() copies it whole     {keep_s * 1e3:8.1f} ms   ({keep_s / ray_s:.2f}x Ray's write)")
    print(f"  at Ray's shortest snapshot period (10 s): {keep_s / 10 * 100:.2f}% of the driver's time")


if __name__ == "__main__":
    main()
