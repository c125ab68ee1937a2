"""The cluster path: a 2-node local Ray cluster (one node with a fake GPU) runs sweeps through --address."""

from __future__ import annotations

import pandas as pd
import pytest

from tune_robust.cli import main


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    gpu_node = c.add_node(num_cpus=1, num_gpus=1)  # a fake GPU: Ray schedules it, torch never sees it
    c.wait_for_nodes()
    yield c, gpu_node
    c.shutdown()


@pytest.mark.slow  # ~50 s: with the slow tests, so the default run stays under 10 minutes on 2 cores
def test_trials_spread_over_both_nodes_and_fractional_gpus(cluster, tmp_path, capsys):
    c, gpu_node = cluster
    common = ["--results-dir", str(tmp_path), "--address", c.address, "-q", "--set", "train.epochs=2"]
    assert main(["wrn_depth_grid", "--max-trials", "4", *common]) == 0, capsys.readouterr().err
    trials = pd.read_parquet(tmp_path / "wrn_depth_grid" / "trials.parquet")
    assert len(trials) == 4 and (trials["status"] == "TERMINATED").all()
    assert trials["node_id"].nunique() == 2  # 1 CPU per node and 1 CPU per trial: both nodes worked
    assert (trials["cpus"] == 1).all() and (trials["gpus"] == 0).all()

    # Fractional GPUs: only the fake-GPU node qualifies; two 0.5-GPU trials share its one GPU.
    frac = tmp_path / "frac"
    args = ["--max-trials", "2", "--gpus-per-trial", "0.5", "--cpus-per-trial", "0.5"]
    code = main(["wrn_depth_grid", *args, *common[2:], "--results-dir", str(frac)])
    assert code == 0, capsys.readouterr().err
    trials = pd.read_parquet(frac / "wrn_depth_grid" / "trials.parquet")
    assert len(trials) == 2 and (trials["status"] == "TERMINATED").all()
    assert (trials["gpus"] == 0.5).all()
    assert set(trials["node_id"]) == {gpu_node.node_id}
    assert (trials["device"] == "cpu").all()  # the GPU is fake, so torch ran on the CPU


@pytest.mark.slow
def test_plugin_sweep_on_the_cluster(cluster, tmp_path):
    """A plugin file's model, attack and sweep run in the cluster's workers (a subprocess driver, so the
    plugin stays out of this process's registries)."""
    import subprocess
    import sys
    from pathlib import Path

    from test_plugins import PLUGIN

    c, _ = cluster
    plugin = tmp_path / "lab" / "cluster_plugin.py"
    plugin.parent.mkdir()
    plugin.write_text(PLUGIN)
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(root / "sweep.py"), "plugin_sweep", "--plugin", str(plugin)]
    cmd += ["--address", c.address, "--results-dir", str(tmp_path), "-q"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "plugin_sweep" / "trials.parquet")
    assert len(trials) == 2 and (trials["status"] == "TERMINATED").all()
    assert set(trials["node_id"]) <= {n.node_id for n in c.list_all_nodes()}
    assert trials["plugins"].notna().all()
