"""Bad input and faults a new user meets: each is one ``error:`` line (exit 2) before Ray starts, or a
sweep that survives and says what happened. README's reliability table lists them; the slow ones (a
real SIGINT, a damaged trial state at --resume) run a sweep twice."""

from __future__ import annotations

import errno
import fcntl
import gzip
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT, kill_sweep_when, read_parquet

from tune_robust.cli import main
from tune_robust.cluster import cpus_ray_sees, fits_a_node, unreachable
from tune_robust.config import TrialConfig
from tune_robust.data import load_dataset
from tune_robust.data.cifar import write_cifar10
from tune_robust.errors import ConfigError, DataError
from tune_robust.results.writer import ResultsWriter
from tune_robust.run import RunOptions, plan
from tune_robust.run.resume import driver_lock, write_state
from tune_robust.training.loop import STATE_FILE, Trainer

SMALL = ["--max-trials", "1", "--set", "train.epochs=2", "-q"]


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one ``error:`` line (after any of Ray's own log lines), with no traceback."""
    # (A Ray logger a previous in-process Ray run left on an earlier test's closed capture stream
    # reports "--- Logging error ---" blocks; they are the test harness's, not ours.)
    err = re.sub(
        r"--- Logging error ---.*?\nArguments: [^\n]*\n?", "", capsys.readouterr().err, flags=re.S
    ).strip()
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and err.endswith(lines[0]) and "Traceback" not in err, err
    return lines[0]


def _cifar(root: Path) -> Path:
    """Official-layout CIFAR-10 batches of random images, 4 per batch."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 3, 32, 32), dtype=np.uint8)
    labels = np.tile(np.arange(4), 6)
    return write_cifar10(root, (images[:20], labels[:20]), (images[20:], labels[20:]))


# A BINBYTES8 opcode announcing 2**62 bytes: unpickling it is the MemoryError of the report.
HUGE = b"\x80\x04\x8e" + (2**62).to_bytes(8, "little") + b"x" * 989


@pytest.mark.parametrize(
    "content", [HUGE, np.random.default_rng(3).bytes(1000), b""], ids=["huge", "random", "empty"]
)
def test_a_damaged_cifar_batch_is_one_error_naming_the_file_and_its_checksum(tmp_path, capsys, content):
    d = _cifar(tmp_path / "data")
    (d / "data_batch_3").write_bytes(content)
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", tmp_path / "data")
    message = str(e.value)
    assert str(d / "data_batch_3") in message and f"({len(content):,} bytes)" in message
    assert "54ebc095f3ab1f0389bbae665268c751" in message and "not the official file's" in message
    results = tmp_path / "results"
    argv = ["wrn_depth_grid", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), *SMALL]
    assert main([*argv, "--results-dir", str(results)]) == 2
    assert "data_batch_3" in _error_line(capsys)
    assert not results.exists()  # refused before anything was written


def test_a_truncated_mnist_file_names_the_file(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, dims in [("train-images-idx3-ubyte", (2, 28, 28)), ("train-labels-idx1-ubyte", (2,))]:
        header = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
        (raw / f"{stem}.gz").write_bytes(gzip.compress(header + bytes(int(np.prod(dims))), mtime=0))
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / f"{stem}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(100))[:20])  # cut short
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz .*cannot be read as an MNIST idx file"):
        load_dataset("mnist", tmp_path)


def test_a_results_dir_that_cannot_be_used_is_refused_before_ray(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    unwritable = Path("/sys") if os.geteuid() == 0 else tmp_path / "ro"  # root ignores permission bits
    if unwritable != Path("/sys"):
        unwritable.mkdir()
        unwritable.chmod(0o500)
    cases = {
        tmp_path / "missing" / "results": "does not exist",
        tmp_path / "a_file" / "results": "is a file, not a directory",
        unwritable / "results": "cannot write in",
    }
    for results, why in cases.items():
        assert main(["wrn_depth_grid", "--results-dir", str(results), *SMALL]) == 2
        line = _error_line(capsys)
        assert str(results) in line and why in line, line
        assert not results.exists()


def test_a_trial_no_node_can_hold_is_refused(tmp_path, capsys):
    cores = cpus_ray_sees()
    too_many = str(max(64, cores + 1))  # the report: 64 on a 2-core machine
    assert main(["wrn_depth_grid", "--results-dir", str(tmp_path), "--cpus-per-trial", too_many, *SMALL]) == 2
    assert f"this machine has {cores} CPUs" in _error_line(capsys)
    assert not (tmp_path / "wrn_depth_grid").exists()
    # GPUs and declared memory are checked against each alive node of the (joined) cluster.
    nodes = [
        {"NodeManagerAddress": "10.0.0.1", "Resources": {"CPU": 8.0, "GPU": 2.0, "memory": 64 * 2**30}},
        {"NodeManagerAddress": "10.0.0.2", "Resources": {"CPU": 32.0, "memory": 256 * 2**30}},
    ]
    cluster = RunOptions(max_trials=1, address="10.0.0.1:6379")  # (plan does not connect)
    fits = plan("wrn_depth_grid", replace(cluster, gpus_per_trial=2, memory_per_trial=60))
    fits_a_node(fits.needs, nodes)
    for changes, shown in [
        ({"gpus_per_trial": 4}, "4 GPU"),
        ({"gpus_per_trial": 1, "memory_per_trial": 100}, "100.0 GiB memory"),
        ({"cpus_per_trial": 16, "gpus_per_trial": 1}, "16 CPU"),
    ]:
        with pytest.raises(ConfigError, match="no node of the Ray cluster can hold") as e:
            fits_a_node(plan("wrn_depth_grid", replace(cluster, **changes)).needs, nodes)
        assert shown in str(e.value) and "10.0.0.2: 32 CPU, 0 GPU, 256.0 GiB memory" in str(e.value)


def test_declared_memory_beyond_this_machine_is_refused(tmp_path, capsys):
    argv = ["wrn_depth_grid", "--results-dir", str(tmp_path), *SMALL]
    assert main([*argv, "--memory-per-trial", "100000"]) == 2
    assert "--memory-per-trial 100000: this machine has" in _error_line(capsys)  # before Ray
    # Within the machine but beyond what Ray gives its node (it keeps some for the object store).
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    assert main([*argv, "--memory-per-trial", f"{total * 0.99:.1f}"]) == 2
    assert "which no node of the Ray cluster can hold" in _error_line(capsys)
    assert not (tmp_path / "wrn_depth_grid").exists()  # refused before anything was written


def test_an_address_nothing_answers_is_one_line_with_the_hints(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.time()
    argv = ["wrn_depth_grid", "--results-dir", str(tmp_path), "--address", f"127.0.0.1:{port}", *SMALL]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert time.time() - started < 60  # Ray's own connect retries take about 20 s more than this check
    assert f"--address 127.0.0.1:{port}" in line and "node's IP address" in line
    assert "ray get-auth-token" in line
    assert main(["wrn_depth_grid", "--results-dir", str(tmp_path), "--address", "nohost", *SMALL]) == 2
    assert "expected auto, HOST:PORT" in _error_line(capsys)
    import ray

    refused = unreachable(
        "10.0.0.5:6379", ray.exceptions.AuthenticationError("Unauthenticated: token mismatch")
    )
    assert refused.startswith("--address 10.0.0.5:6379: the Ray cluster there requires token authentication")
    assert "RAY_AUTH_MODE=token" in refused and "ray get-auth-token" in refused
    mismatch = unreachable("10.0.0.5:6379", RuntimeError("Version mismatch: the cluster runs Ray 2.40"))
    assert mismatch.endswith(
        "the Ray cluster there refused this driver (Version mismatch: the cluster runs Ray 2.40)"
    )


def test_a_second_driver_on_the_same_sweep_is_refused_and_a_dead_ones_lock_is_free(tmp_path, capsys):
    p = plan("wrn_depth_grid", RunOptions(results_dir=str(tmp_path), max_trials=1))
    with driver_lock(p, "python sweep.py wrn_depth_grid (the first)"):
        assert main(["wrn_depth_grid", "--results-dir", str(tmp_path), *SMALL]) == 2
        line = _error_line(capsys)
        assert f"pid {os.getpid()}" in line and "(the first)" in line and "another driver" in line
    # A driver killed with -9 while holding the lock: the kernel releases it with the process.
    lock = tmp_path / ".wrn_depth_grid.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import fcntl,time; f=open({str(lock)!r},'a'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('held', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with open(lock) as f, pytest.raises(BlockingIOError):
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with driver_lock(p, "the next driver"):
        assert "the next driver" in lock.read_text()


def test_a_finished_sweep_is_not_touched_without_resume_nor_resumed_with_other_options(tmp_path, capsys):
    first = plan("wrn_depth_grid", RunOptions(results_dir=str(tmp_path), max_trials=1))
    write_state(first, "python sweep.py wrn_depth_grid --max-trials 1")
    state = (tmp_path / "wrn_depth_grid" / "sweep.json").read_text()
    assert main(["wrn_depth_grid", "--results-dir", str(tmp_path), *SMALL]) == 2
    assert "already holds results" in _error_line(capsys)
    assert main(["wrn_depth_grid", "--results-dir", str(tmp_path), *SMALL, "--resume"]) == 2  # other epochs
    line = _error_line(capsys)
    assert "run with other options" in line and line.endswith("python sweep.py wrn_depth_grid --max-trials 1")
    assert (tmp_path / "wrn_depth_grid" / "sweep.json").read_text() == state


def _trainer(tmp_path: Path) -> Trainer:
    cfg = {
        "model": {"arch": "wrn", "depths": (1, 1, 1), "widths": (0.25, 0.25, 0.25)},
        "train": {"epochs": 2},
    }
    cfg["data"] = {"train_limit": 64, "val_fraction": 0.25}
    cfg["eval"] = {"attacks": ("fgsm",), "sanity": False, "metrics": False}
    return Trainer(TrialConfig.from_dict(cfg))


def test_a_damaged_state_file_restarts_the_trial_from_epoch_0_with_a_warning(tmp_path):
    first = _trainer(tmp_path)
    first.run_epoch()
    first.save(tmp_path)
    state = tmp_path / STATE_FILE
    size = state.stat().st_size
    state.write_bytes(state.read_bytes()[: size // 2])  # cut in half
    again = _trainer(tmp_path)
    warning = again.load(tmp_path)
    assert warning is not None and str(state) in warning and "started again from epoch 0" in warning
    assert again.epoch == 0 and not state.exists() and (tmp_path / f"{STATE_FILE}.corrupt").exists()
    fresh = _trainer(tmp_path)  # the restarted trial is exactly a new one
    assert all(
        torch.equal(a, b)
        for a, b in zip(again.model.state_dict().values(), fresh.model.state_dict().values(), strict=True)
    )
    missing = _trainer(tmp_path).load(tmp_path)  # restarted again before its first save
    assert missing is not None and "is missing" in missing
    again.run_epoch()
    again.save(tmp_path)
    assert _trainer(tmp_path).load(tmp_path) is None


def test_a_state_file_the_machine_cannot_load_is_not_set_aside(tmp_path, monkeypatch):
    first = _trainer(tmp_path)
    first.run_epoch()
    first.save(tmp_path)

    def storage_error(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(torch, "load", storage_error)
    with pytest.raises(OSError, match="Input/output error"):
        _trainer(tmp_path).load(tmp_path)  # the trial fails (and is retried), its state is kept
    assert (tmp_path / STATE_FILE).exists() and not (tmp_path / f"{STATE_FILE}.corrupt").exists()


def test_a_failed_parquet_write_leaves_the_previous_file_readable(tmp_path, monkeypatch, caplog):
    writer = ResultsWriter(tmp_path, "s")
    writer.add_trial({"trial_id": "a", "status": "TERMINATED", "best_robust_acc": 0.5})
    before = (tmp_path / "trials.parquet").read_bytes()
    real = pd.DataFrame.to_parquet

    def disk_full(self: pd.DataFrame, path: Path, **kwargs: object) -> None:
        Path(path).write_bytes(b"PAR1" + b"\0" * 10)  # part of a file, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", disk_full)
    # A finishing trial's writes (its tables, then its row) fail; the sweep goes on.
    writer.add_tables("b", {"lipschitz": [{"layer": "conv1", "bound": 2.0}]})
    writer.add_trial({"trial_id": "b", "status": "TERMINATED", "best_robust_acc": 0.6})
    assert (tmp_path / "trials.parquet").read_bytes() == before
    assert pd.read_parquet(tmp_path / "trials.parquet")["trial_id"].tolist() == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["trials.parquet"]  # no partial file left behind
    assert "No space left on device" in caplog.text and "previous file is intact" in caplog.text
    monkeypatch.setattr(pd.DataFrame, "to_parquet", real)
    writer.flush()  # space again: the rows kept in memory are written
    assert pd.read_parquet(tmp_path / "trials.parquet")["trial_id"].tolist() == ["a", "b"]
    assert pd.read_parquet(tmp_path / "lipschitz.parquet")["trial_id"].tolist() == ["b"]


def _sweep(results: Path, *extra: str) -> list[str]:
    sets = ["--set", "train.epochs=3", "--set", "data.train_limit=640", "--results-dir", str(results), "-q"]
    return [sys.executable, str(ROOT / "sweep.py"), "wrn_depth_grid", "--max-trials", "3", *sets, *extra]


@pytest.mark.slow
def test_ctrl_c_keeps_finished_trials_says_how_to_resume_and_resume_finishes(tmp_path):
    trials = tmp_path / "wrn_depth_grid" / "trials.parquet"
    proc = subprocess.Popen(
        _sweep(tmp_path), cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.time() + 300
        while len(read_parquet(trials)) < 1:
            assert time.time() < deadline and proc.poll() is None, "no trial finished"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal signals the whole process group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done = pd.read_parquet(trials)
    assert proc.returncode == 130, err[-2000:]
    assert 1 <= len(done) < 3 and (done["status"] == "TERMINATED").all()
    assert (done["epochs_run"] == 3).all() and done["best_robust_acc"].notna().all()  # only finished ones
    assert f"interrupted: {len(done)} of 3 trials finished" in err and "--resume" in err.splitlines()[-1]
    resumed = subprocess.run(
        _sweep(tmp_path, "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = pd.read_parquet(trials)
    assert len(after) == 3 and (after["status"] == "TERMINATED").all() and after["model.depths"].is_unique
    assert set(done["trial_id"]) <= set(after["trial_id"])


@pytest.mark.slow
def test_a_damaged_trial_state_at_resume_restarts_that_trial_only(tmp_path):
    states = tmp_path / "wrn_depth_grid" / "tune"
    rows = tmp_path / "wrn_depth_grid" / "trials.parquet"

    def unfinished() -> list[Path]:
        """State files of trials mid-training: no row yet, and in the experiment snapshot the resume
        will read, the one kept whole at each snapshot (a trial the snapshot missed is not resumed: its
        config runs again as a new trial)."""
        done = {str(Path(str(c))) for c in read_parquet(rows).get("checkpoint_path", [])}
        kept = tmp_path / "wrn_depth_grid" / "snapshot"
        snapshot = "".join(p.read_text() for p in kept.glob("experiment_state-*.json"))
        return sorted(
            p
            for p in states.glob("*/state/state.pt")
            if str(p.parent) not in done and p.parent.parent.name.split("_")[2] in snapshot
        )

    def two_states_one_midway() -> bool:
        return len(list(states.glob("*/state/state.pt"))) >= 2 and bool(unfinished())

    kill_sweep_when(
        _sweep(tmp_path, "--cpus-per-trial", "1"),
        two_states_one_midway,
        300,
        "a trial midway and another",
        env={"TUNE_GLOBAL_CHECKPOINT_S": "0"},  # a snapshot at every step: the trial is in it at once
    )
    # Ray's worker processes can outlive the killed driver by a moment and save one more epoch: wait
    # until no state file changes, so the damage below is what the resume finds.
    stamps: list[float] = []
    deadline = time.time() + 60
    while time.time() < deadline:
        now = [p.stat().st_mtime for p in sorted(states.glob("*/state/state.pt"))]
        if now == stamps:
            break
        stamps = now
        time.sleep(3)
    damaged = unfinished()[0]
    other = next(p for p in sorted(states.glob("*/state/state.pt")) if p != damaged)
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    resumed = subprocess.run(
        _sweep(tmp_path, "--cpus-per-trial", "1", "--resume"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    df = pd.read_parquet(tmp_path / "wrn_depth_grid" / "trials.parquet")
    assert len(df) == 3 and (df["status"] == "TERMINATED").all() and (df["epochs_run"] == 3).all()
    by_dir = {
        Path(str(c)).parent.name: r for c, r in zip(df["checkpoint_path"], df.to_dict("records"), strict=True)
    }
    hit = by_dir[damaged.parent.parent.name]
    assert "could not be read" in str(hit["resume_warning"]) and hit["resumed_from_epoch"] == 0
    assert pd.isna(by_dir[other.parent.parent.name]["resume_warning"])
    assert "could not be read" in resumed.stdout  # the closing summary's warnings


@pytest.mark.slow
def test_a_real_head_by_explicit_address_is_one_line_with_the_token_hint_and_auto_works(tmp_path):
    """The issue's report: a head from `ray start --head --port P` on this machine. Without
    RAY_AUTH_MODE=token a driver given 127.0.0.1:P sends no token and the head refuses it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_cli = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen(
        [
            ray_cli,
            "start",
            "--head",
            "--port",
            str(port),
            "--num-cpus",
            "2",
            "--block",
            "--disable-usage-stats",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    try:
        deadline = time.time() + 120
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.time() < deadline and head.poll() is None, "the head did not start"
            time.sleep(0.5)
        cmd = [
            sys.executable,
            str(ROOT / "sweep.py"),
            "wrn_depth_grid",
            *SMALL,
            "--results-dir",
            str(tmp_path),
        ]
        by_ip = subprocess.run(
            [*cmd, "--address", f"127.0.0.1:{port}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        errors = [line for line in by_ip.stderr.splitlines() if line.startswith("error: ")]
        assert by_ip.returncode == 2 and len(errors) == 1 and "Traceback" not in by_ip.stderr, by_ip.stderr[
            -3000:
        ]
        assert f"--address 127.0.0.1:{port}" in errors[0] and "node's IP address" in errors[0]
        assert "requires token authentication" in errors[0] and "ray get-auth-token" in errors[0]
        auto = subprocess.run(
            [*cmd, "--address", "auto"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300
        )
        assert auto.returncode == 0, auto.stderr[-3000:]
        assert len(pd.read_parquet(tmp_path / "wrn_depth_grid" / "trials.parquet")) == 1
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
