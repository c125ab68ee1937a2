"""The Ray side of a run: starting or joining Ray, and what is checked against the machine or cluster
before a trial starts (that a trial fits some node, that GPUs exist, that every node sees the results
dir) and where the dashboard is. The runner calls these with a plan's values; nothing here knows plans.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tune_robust.errors import ConfigError

# The Ray and Optuna versions tune_robust's resume is tested on (kill-and-resume tests read Ray's snapshot
# files and pickle Optuna's study). pyproject.toml pins the same ranges; a test checks they agree.
TESTED_VERSIONS = {"ray": ">=2.60,<2.61", "optuna": ">=5.1,<5.2"}
_SHOWN = {"ray": "Ray", "optuna": "Optuna"}


def version_note() -> str | None:
    """One line to print at start-up when the installed Ray or Optuna lies outside ``TESTED_VERSIONS``
    (a sweep still runs; its resume is what is untested); None when both lie inside."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.specifiers import SpecifierSet

    outside: list[tuple[str, str]] = []
    for name, tested in TESTED_VERSIONS.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        if installed not in SpecifierSet(tested):
            outside.append((f"{_SHOWN[name]} {installed}", f"{_SHOWN[name]} {tested}"))
    if not outside:
        return None
    found = " and ".join(f for f, _ in outside)
    verb = "is" if len(outside) == 1 else "are"
    return (
        f"warning: {found} {verb} outside the versions tune_robust's resume is tested on "
        f"({'; '.join(t for _, t in outside)}); a killed sweep may not resume as tested. "
        "`pip install -e .` in tune_robust installs the tested versions"
    )


def init_ray(address: str | None, verbose: int, extra: Mapping[str, Any]) -> Any:
    """Start a fresh local Ray instance (no ``address``) or join the cluster at ``address``; its context.

    ``verbose`` (the CLI's: 0 quiet, 1 default, 2 -v, 3 -vv): Ray's own driver log shows errors only up to
    the default (not its start-up notes, nor the token-authentication notice of a local instance, which
    asks nothing of the user: a refused token is our own one-line error), warnings with -v, everything
    with -vv, where the trials' output also reaches the console."""
    import logging

    import ray

    # Results go to Parquet through our callback. Ray's JSON logger stays (its ResultGrid reads it);
    # the CSV and TensorBoard ones are dropped: they only add files and driver work per report.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    level = {0: logging.ERROR, 1: logging.ERROR, 2: logging.WARNING}.get(verbose, logging.INFO)
    kwargs: dict[str, Any] = {"log_to_driver": verbose > 2, "logging_level": level, **extra}
    if not address:
        # "local" always starts a fresh instance instead of joining one a killed driver left behind.
        return ray.init(address="local", **kwargs)
    reach(address)
    try:
        return ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ray.exceptions.RayError) as e:
        raise ConfigError(unreachable(address, e)) from None


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT`` or ``ray://HOST:PORT``; None for ``auto``."""
    if address == "auto":
        return None
    if address.startswith("ray://") and ":" not in address.removeprefix("ray://"):
        address += ":10001"  # the Ray Client server's default port
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    return host.strip("[]"), int(port)


def reach(address: str, timeout: float = 5.0) -> None:
    """A TCP connection to the head's port first: seconds, not Ray's retries, when nothing listens."""
    import socket

    target = host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as e:
        raise ConfigError(unreachable(address, e)) from None


def unreachable(address: str, error: BaseException) -> str:
    """One line: what was tried, why it failed, where a head listens, and the token hint for an
    authentication failure."""
    import ray

    chain = f"{error} {error.__cause__ or ''} {error.__context__ or ''}"
    auth = isinstance(error, ray.exceptions.AuthenticationError) or any(
        w in chain.lower() for w in ("authenticat", "auth token", "unauthenticated")
    )
    if isinstance(error, OSError) and error.strerror:
        why = error.strerror
    else:
        why = (str(error).splitlines() or [type(error).__name__])[0][:200]
    port = (host_port(address) or ("", 6379))[1]
    head = (
        f"a head started with `ray start --head --port {port}` listens on its node's IP address (the one "
        f"`ray start` prints; this machine's is {ray.util.get_node_ip_address()}), which --address auto "
        "finds on the head's own machine"
    )
    if auth:
        return (
            f"--address {address}: the Ray cluster there requires token authentication and refused this "
            f"driver ({why}); {head}; a driver given an explicit address sends a token only with "
            "RAY_AUTH_MODE=token set, and it must be the head's (`ray get-auth-token` on the head, into "
            "~/.ray/auth_token or RAY_AUTH_TOKEN here)"
        )
    if not isinstance(error, (ConnectionError, OSError)):  # e.g. a Ray or Python version mismatch
        return f"--address {address}: the Ray cluster there refused this driver ({why})"
    return (
        f"--address {address}: no Ray cluster answered there ({why}); {head}: pass that IP:{port}; "
        "a cluster with token authentication also needs RAY_AUTH_MODE=token and its token "
        "here (`ray get-auth-token` on the head)"
    )


def fits_this_machine(cpus: float, memory: float | None, ray_init: Mapping[str, Any]) -> None:
    """Before Ray starts: a local run's trial must fit the CPUs and memory of this machine (a trial
    that no node can hold stays PENDING forever). ``check_resources`` checks what Ray sees, after."""
    have = ray_init.get("num_cpus")
    if have is None:
        have = cpus_ray_sees()
    if cpus > have:
        raise ConfigError(
            f"--cpus-per-trial {cpus:g}: this machine has {have} CPUs, so no trial could ever start; "
            f"use --cpus-per-trial {have} or less, or --address to join a cluster with bigger nodes"
        )
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    if memory and memory > total:
        raise ConfigError(
            f"--memory-per-trial {memory:g}: this machine has {total:.1f} GiB of memory, so no trial could "
            "ever start; declare less, or --address to join a cluster with bigger nodes"
        )


def cpus_ray_sees(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPU count a local Ray instance gives its node: the machine's CPUs, or fewer where a container
    limits them. Ray reads the limits from the kernel's cgroup files (a CPU quota: cgroup v1's
    ``cpu/cpu.cfs_quota_us`` over ``cpu/cpu.cfs_period_us``, or v2's ``cpu.max``; a CPU set: v1's
    ``cpuset/cpuset.cpus``), takes the smaller, and truncates it; so does this (Ray's own function is
    private). ``RAY_USE_MULTIPROCESSING_CPU_COUNT`` set makes Ray, and this, ignore the limits."""
    count = os.cpu_count() or 1
    if os.environ.get("RAY_USE_MULTIPROCESSING_CPU_COUNT"):
        return count
    limits = [n for n in (_cgroup_quota(cgroup), _cgroup_cpuset(cgroup)) if n]
    return int(min(limits)) if limits else count


def _cgroup_quota(cgroup: Path) -> float | None:
    """CPUs the container's CPU quota allows (at least 1), or None without one."""
    try:
        if (cgroup / "cpu" / "cpu.cfs_quota_us").exists():
            quota = float((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
            quota /= float((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        elif (cgroup / "cpu.max").exists():
            limit, period = (cgroup / "cpu.max").read_text().split()
            if not (limit.isdigit() and period.isdigit()):  # "max": no quota
                return None
            quota = float(limit) / float(period)
        else:
            return None
    except (OSError, ValueError):
        return None
    if quota < 0:  # -1: no quota
        return None
    return quota or 1.0  # Ray's rule: a zero quota counts as one CPU (a fraction is truncated later)


def _cgroup_cpuset(cgroup: Path) -> int | None:
    """The number of CPUs in the container's CPU set (``0-3,6``), or None without one."""
    try:
        text = (cgroup / "cpuset" / "cpuset.cpus").read_text().strip()
        count = 0
        for part in filter(None, text.split(",")):
            first, _, last = part.partition("-")
            count += int(last or first) - int(first) + 1
    except (OSError, ValueError):
        return None
    return count or None


def fits_a_node(need: Mapping[str, float], nodes: Sequence[Mapping[str, Any]]) -> None:
    """Some alive node must hold one trial's ``need`` (``CPU``, ``GPU`` and ``memory`` in bytes; 0: not
    asked for); else Ray would wait forever."""
    if any(all(n["Resources"].get(k, 0.0) >= v for k, v in need.items() if v) for n in nodes):
        return

    def show(k: str, v: float) -> str:
        return f"{v / 2**30:.1f} GiB memory" if k == "memory" else f"{v:g} {k}"

    asked = ", ".join(show(k, v) for k, v in need.items() if v)
    has = "; ".join(
        f"{n.get('NodeManagerAddress', '?')}: " + ", ".join(show(k, n["Resources"].get(k, 0.0)) for k in need)
        for n in nodes
    )
    raise ConfigError(
        f"one trial asks for {asked}, which no node of the Ray cluster can hold ({has}); lower "
        "--cpus-per-trial / --gpus-per-trial / --memory-per-trial, or add a node that big"
    )


def check_resources(need: Mapping[str, float]) -> None:
    """One trial's ``need`` (as ``fits_a_node``) must fit some node of the running cluster."""
    import ray

    total_gpus = ray.cluster_resources().get("GPU", 0)
    if need.get("GPU", 0) > 0 and total_gpus == 0:
        raise ConfigError(
            f"--gpus-per-trial {need['GPU']:g} asked for, but the Ray cluster has no GPUs; "
            f"use --gpus-per-trial 0 or join a GPU cluster with --address"
        )
    fits_a_node(need, [n for n in ray.nodes() if n.get("Alive")])


def check_shared_storage(directory: Path) -> None:
    """On a multi-node cluster every node must see ``directory`` (a sweep's, in the results dir) at the
    same path."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1:
        return
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    marker = directory / ".shared-storage-check"
    marker.write_text("tune_robust")

    @ray.remote(num_cpus=0)
    def sees(path: str) -> bool:
        return os.path.exists(path)

    checks = {
        n["NodeManagerAddress"]: sees.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(str(marker))
        for n in nodes
    }
    missing = [ip for ip, ref in checks.items() if not ray.get(ref, timeout=120)]
    marker.unlink(missing_ok=True)
    if missing:
        raise ConfigError(
            f"--results-dir {directory.parent} is not visible from node(s) {', '.join(missing)}; "
            f"a multi-node sweep needs the results dir on storage every node mounts at the same path "
            f"(NFS or similar), so checkpoints and resumes work"
        )


def no_gpu_locally(gpus: float, address: str | None) -> None:
    """A local run that asks for GPUs needs a CUDA device here."""
    if gpus > 0 and not address:
        import torch

        if torch.cuda.device_count() == 0:
            raise ConfigError(
                f"--gpus-per-trial {gpus:g} asked for, but this machine has no CUDA GPU; "
                f"use --gpus-per-trial 0, or --address to join a cluster that has GPUs"
            )


def dashboard_line(url: str | None, remote: bool) -> str:
    """Where the Ray dashboard is, how to sign in, and how long it lives (printed at the start)."""
    if not url:
        return "Ray dashboard: none (install the [dashboard] extra, ray[default], to get one)"
    # Ray documents RAY_AUTH_MODE=token as the switch for token authentication (its own check is private),
    # and ray.init sets it in this process where it turns token authentication on by default.
    token = os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "token"
    sign_in = " (sign in with the token `ray get-auth-token` prints)" if token else ""
    lives = "while the cluster runs" if remote else "until this sweep ends"
    return f"Ray dashboard {lives}: http://{url}{sign_in}"
