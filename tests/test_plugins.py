"""Plugins: a user's model, attack and sweep from a file outside the repository, through Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from tune_robust import plugins

PLUGIN = textwrap.dedent(
    '''
    """A researcher's own module: a model, an attack and a sweep that uses both."""
    from dataclasses import dataclass

    import torch
    from torch import nn

    from tune_robust.attacks import Attack, register_attack
    from tune_robust.models import register_model
    from tune_robust.sweeps import Grid, SweepSpec, register_sweep


    class TinyNet(nn.Module):
        def __init__(self, num_classes, in_channels, hidden):
            super().__init__()
            layers = [nn.Flatten(), nn.LazyLinear(hidden), nn.ReLU(), nn.Linear(hidden, num_classes)]
            self.body = nn.Sequential(*layers)

        def forward(self, x):
            return self.body(x)


    @register_model
    def plugin_tiny_mlp(num_classes: int = 10, in_channels: int = 1, hidden: int = 32) -> nn.Module:
        net = TinyNet(num_classes, in_channels, hidden)
        net(torch.zeros(1, in_channels, 8, 8))  # materialise the lazy layer
        return net


    @register_attack("plugin_sign_noise")
    @dataclass(frozen=True)
    class SignNoise(Attack):
        """Random corners of the eps-ball (a weak, gradient-free attack)."""

        eps: float = 0.1

        def perturb(self, model, x, y):
            return (x + self.eps * torch.randint_like(x, 0, 2).mul(2).sub(1)).clamp(0, 1)


    @register_sweep
    def plugin_sweep() -> SweepSpec:
        return SweepSpec(
            name="plugin_sweep",
            description="a plugin's model swept under a plugin's attack",
            trainable="adversarial_training",
            fidelities={
                "smoke": {
                    "data": {"dataset": "digits", "val_fraction": 0.15},
                    "model": {"arch": "plugin_tiny_mlp"},
                    "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "warmup_epochs": 0},
                    "method": {"name": "standard"},
                    "attack": {"name": "none"},
                    "eval": {"attacks": ("fgsm", "plugin_sign_noise"), "sanity": False, "metrics": False},
                }
            },
            space={"model.hidden": Grid([16, 32])},
        )
    '''
)


@pytest.fixture(scope="module")
def plugin_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("elsewhere") / "my_lab_plugin.py"
    path.write_text(PLUGIN)
    return path


@pytest.mark.slow  # ~40 s; with the 2-node cluster version (tests/test_cluster.py), in the slow run
def test_plugin_sweep_runs_through_ray_and_resumes(plugin_file, tmp_path):
    # In fresh processes (as a user runs it), so the plugin never enters this process's registries
    common = ["--plugin", str(plugin_file), "--results-dir", str(tmp_path), "-q"]
    out = run_cli("plugin_sweep", *common)
    assert out.returncode == 0, out.stderr
    df = pd.read_parquet(tmp_path / "plugin_sweep" / "trials.parquet")
    # Both trials ran in Ray workers that knew neither the model nor the attack until the plugin loaded
    assert len(df) == 2 and (df["status"] == "TERMINATED").all()
    assert sorted(df["model.hidden"]) == [16, 32] and (df["model.arch"] == "plugin_tiny_mlp").all()
    assert df["test_plugin_sign_noise_acc"].between(0, 1).all()
    # A random corner of the ball hurts a model less than FGSM's worst corner does
    assert (df["test_plugin_sign_noise_acc"] >= df["test_fgsm_acc"]).all()
    sha = plugins._describe(str(plugin_file)).sha256
    assert df["plugins"].str.contains(sha[:12]).all()
    state = json.loads((tmp_path / "plugin_sweep" / "sweep.json").read_text())
    record = {"name": "my_lab_plugin", "path": str(plugin_file), "sha256": sha}
    assert state["fingerprint"]["plugins"] == [record]
    assert state["options"]["plugins"] == [record]  # no source text in the results
    # Resume with the same plugin: nothing reruns; with a changed plugin file: refused, results kept
    out = run_cli("plugin_sweep", "--resume", *common)
    assert out.returncode == 0, out.stderr
    again = pd.read_parquet(tmp_path / "plugin_sweep" / "trials.parquet")
    assert again["trial_id"].tolist() == df["trial_id"].tolist()
    changed = plugin_file.parent / "changed" / plugin_file.name
    changed.parent.mkdir()
    changed.write_text(PLUGIN.replace("hidden: int = 32", "hidden: int = 33"))
    out = run_cli("plugin_sweep", "--resume", "--plugin", str(changed), "--results-dir", str(tmp_path))
    assert out.returncode == 2 and "other options" in out.stderr
    assert len(pd.read_parquet(tmp_path / "plugin_sweep" / "trials.parquet")) == 2


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(
        [sys.executable, str(root / "sweep.py"), *args],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_plugin_from_the_environment_is_listed(plugin_file):
    out = run_cli("--list", env={plugins.ENV_VAR: str(plugin_file)})
    assert out.returncode == 0, out.stderr
    assert "plugin_sweep" in out.stdout


@pytest.mark.parametrize(
    ("source", "expect"),
    [
        (None, "no such file"),
        ("import torch\nraise RuntimeError('lab GPU not found')\n", "RuntimeError: lab GPU not found"),
        (
            "from tune_robust.models import register_model\n@register_model\ndef resnet18():\n    pass\n",
            "model 'resnet18' is registered twice",
        ),
    ],
)
def test_bad_plugin_is_one_error_before_ray(tmp_path, source, expect):
    path = tmp_path / "bad_plugin.py"
    if source is not None:
        path.write_text(source)
    out = run_cli("wrn_depth_grid", "--plugin", str(path), "--results-dir", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.count("error:") == 1 and expect in out.stderr, out.stderr
    assert "Ray" not in out.stderr and not (tmp_path / "wrn_depth_grid").exists()


def test_missing_module_plugin(tmp_path):
    out = run_cli("--list", "--plugin", "no_such_lab_module")
    assert out.returncode == 2 and "no module named 'no_such_lab_module'" in out.stderr


def test_worker_imports_a_file_plugin_from_the_drivers_source(tmp_path):
    # A node without the file (another machine): the worker runs the source text the driver read.
    source = "from tune_robust.models import MODELS\nMARK = 'ran from source'\n"
    plugin = plugins.Plugin("far_away", str(tmp_path / "not_on_this_node.py"), "ab" * 32, source)
    plugins.load_in_worker([plugin])
    module = sys.modules[plugins._module_name(plugin)]
    assert module.MARK == "ran from source" and module.__file__ == plugin.path
    plugins.load_in_worker([plugin])  # a reused worker: imported once, no second registration
    del sys.modules[plugins._module_name(plugin)], plugins._LOADED[plugins._module_name(plugin)]


def test_plugin_sources_combine_in_order(monkeypatch):
    class EntryPoint:
        value = "lab_pkg.models:register_all"

    monkeypatch.setattr(
        plugins.metadata,
        "entry_points",
        lambda group: [EntryPoint()] if group == plugins.ENTRY_POINT_GROUP else [],
    )
    monkeypatch.setenv(plugins.ENV_VAR, os.pathsep.join(["env_mod", "lab_pkg.models"]))
    assert plugins.requested(["cli_file.py", "env_mod"]) == ["lab_pkg.models", "env_mod", "cli_file.py"]


SEARCH_PLUGIN = textwrap.dedent(
    """
    from tune_robust.searchers._points import PointsSearcher
    from tune_robust.searchers import SearchMethod, register_search


    @register_search("corners_first")
    class CornersFirst(SearchMethod):
        \"\"\"The shallowest and the deepest config first (a researcher's own order).\"\"\"

        def num_samples(self, grid_size, requested):
            return 2 if requested is None else super().num_samples(grid_size, requested)

        def searcher(self, inputs):
            return PointsSearcher([inputs.configs[0], inputs.configs[-1]][: inputs.num_samples])
    """
)


def test_a_plugins_search_method_plans_a_sweep(tmp_path):
    path = tmp_path / "my_search.py"
    path.write_text(SEARCH_PLUGIN)
    out = run_cli("wrn_depth_grid", "--plugin", str(path), "--search", "corners_first", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("2 trials")
    out = run_cli("wrn_depth_grid", "--search", "corners_first", "--dry-run")
    assert out.returncode == 2 and "unknown search method 'corners_first'" in out.stderr
