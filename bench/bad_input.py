"""What each bad input gets from ``sweep.py``, and how fast (results in bench/RESULTS.md).

Each case runs ``python sweep.py wrn_depth_grid ...`` in a fresh process and records the exit code,
the wall time to that exit, and the last stderr line. Without the up-front checks these were: a
traceback ending in MemoryError (exit 1) for a damaged CIFAR batch, a FileNotFoundError traceback for a
missing results parent, a sweep that hung with its trial pending for --cpus-per-trial 64, and a
ConnectionError traceback after about 20 s for an address nothing answers at.

Run: python bench/bad_input.py
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def damaged_cifar(root: Path) -> Path:
    """Official-layout CIFAR-10 batches (random images), data_batch_3 replaced by 1,000 bytes that
    announce a 2**62-byte object (unpickling it raises MemoryError)."""
    from tune_robust.data.cifar import write_cifar10

    images = np.random.default_rng(0).integers(0, 256, (24, 3, 32, 32), dtype=np.uint8)
    labels = np.tile(np.arange(4), 6)
    d = write_cifar10(root, (images[:20], labels[:20]), (images[20:], labels[20:]))
    (d / "data_batch_3").write_bytes(b"\x80\x04\x8e" + (2**62).to_bytes(8, "little") + b"x" * 989)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    results = str(tmp / "results")
    cases = {
        "damaged CIFAR batch": ["--dataset", "cifar10", "--data-dir", str(damaged_cifar(tmp / "data"))],
        "results parent missing": ["--results-dir", str(tmp / "missing" / "results")],
        "--cpus-per-trial 64": ["--cpus-per-trial", "64"],
        "--memory-per-trial 100000": ["--memory-per-trial", "100000"],
        "--address nothing listens": ["--address", f"127.0.0.1:{free_port()}"],
    }
    print("| case | exit | seconds | last stderr line |\n|---|---|---|---|")
    for name, extra in cases.items():
        cmd = [sys.executable, str(ROOT / "sweep.py"), "wrn_depth_grid", "--max-trials", "1", "-q"]
        cmd += ["--results-dir", results] if "--results-dir" not in extra else []
        t0 = time.perf_counter()
        out = subprocess.run([*cmd, *extra], cwd=ROOT, capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - t0
        last = (out.stderr.strip().splitlines() or [""])[-1]
        print(f"| {name} | {out.returncode} | {seconds:.1f} | {last[:160]}... |", flush=True)


if __name__ == "__main__":
    main()
