"""What installing puts on the path, what `--list` imports, and how built-ins are discovered."""

from __future__ import annotations

import subprocess
import sys

from tune_robust import plugins


def python(code: str, cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_only_tune_robust_is_installed(tmp_path):
    """Outside the checkout no generic top-level name exists; the folders live under tune_robust."""
    code = (
        "import importlib.util as u\n"
        "print([n for n in ('analysis', 'trainables', 'search_spaces', 'sweep') if u.find_spec(n)])\n"
        "import tune_robust.analysis, tune_robust.trainables, tune_robust.search_spaces\n"
    )
    out = python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_import_and_list_load_no_heavy_module(tmp_path):
    code = (
        "import sys, io, contextlib\n"
        "import tune_robust\n"
        "heavy = ('torch', 'ray', 'pandas', 'optuna')\n"
        "assert not [m for m in heavy if m in sys.modules], 'import tune_robust'\n"
        "from tune_robust.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    assert main(['--list']) == 0\n"
        "assert 'wrn_depth_grid' in out.getvalue() and 'arch_reconfig' in out.getvalue()\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_registry_discovers_its_builtins_on_first_use_and_only_its_kind(tmp_path):
    code = (
        "import sys\n"
        "from tune_robust.sweeps import SWEEPS\n"
        "assert 'wrn_depth_grid' in SWEEPS\n"
        "assert 'tune_robust.models.wrn' not in sys.modules  # listing sweeps builds no model\n"
        "from tune_robust.models import create_model\n"
        "create_model('wrn', depths=(1, 1, 1))  # no import list: the registry finds its package\n"
        "assert 'tune_robust.models.wrn' in sys.modules\n"
    )
    out = python(code, tmp_path)
    assert out.returncode == 0, out.stderr


def test_builtins_are_tune_robusts_own_entry_points_and_not_recorded_as_plugins():
    assert plugins.builtin("models") == ["tune_robust.models"]
    assert plugins.builtin("sweeps") == ["tune_robust.search_spaces"]
    assert not [name for name in plugins.requested() if name.startswith("tune_robust")]


def test_every_package_folder_is_installed():
    """pyproject lists the packages by hand (package-dir maps three folders): a new subpackage missing
    from the list would work in the editable install and be absent from a wheel."""
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"tune_robust": root / "tune_robust", **{k: root / v for k, v in cfg["package-dir"].items()}}
    on_disk = set()
    for package, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            if package == "tune_robust" and rel[:1] and rel[0] in ("search_spaces", "trainables", "analysis"):
                continue
            on_disk.add(".".join([package, *rel]))
    assert on_disk == set(cfg["packages"])


def test_an_environment_plugin_can_import_the_package_that_discovers_it(tmp_path):
    """Discovery never runs inside a half-imported package: a plugin written the documented way
    (``from tune_robust.attacks import Attack, register_attack``) loads when a registry is first used."""
    plugin = tmp_path / "lab_attack.py"
    plugin.write_text(
        "from dataclasses import dataclass\n"
        "from tune_robust.attacks import Attack, register_attack\n"
        "@register_attack('lab_identity')\n"
        "@dataclass(frozen=True)\n"
        "class LabIdentity(Attack):\n"
        "    def perturb(self, model, x, y):\n"
        "        return x\n"
    )
    code = "import tune_robust.training\nfrom tune_robust.attacks import ATTACKS\n"
    code += "assert 'lab_identity' in ATTACKS\n"
    import os

    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, plugins.ENV_VAR: str(plugin)},
    )
    assert out.returncode == 0, out.stderr
