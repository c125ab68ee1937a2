"""The library is a stack: a module imports only its own layer and those below it (imports inside
functions count too: a lazy import is still a dependency).

KNOWN lists the upward imports that exist today (issue 13 removes them). A new upward import fails this
test; so does a KNOWN entry that is gone (delete it from the list, so the list stays the truth).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Module prefix -> layer, most specific first.
LAYERS: list[tuple[str, int]] = [
    ("tune_robust.errors", 0),
    ("tune_robust.registry", 0),
    ("tune_robust.faults", 0),
    ("tune_robust.data", 1),
    ("tune_robust.models", 1),
    ("tune_robust.attacks", 1),
    ("tune_robust.training.loop", 3),
    ("tune_robust.training", 2),
    ("tune_robust.evaluation", 2),
    ("tune_robust.config", 3),
    ("tune_robust.results", 3),
    ("tune_robust.checkpoints", 3),
    ("tune_robust.plugins", 4),
    ("tune_robust.sweeps", 4),
    ("tune_robust.runner", 4),
    ("tune_robust.search", 4),
    ("tune_robust.__main__", 6),
    ("tune_robust", 0),
    ("search_spaces", 5),
    ("trainables", 5),
    ("analysis", 5),
    ("sweep", 6),
]

KNOWN = {
    ("tune_robust.attacks._base", "tune_robust.config"),
    ("tune_robust.attacks.transfer", "tune_robust.checkpoints"),
    ("tune_robust.evaluation.suite", "tune_robust.config"),
    ("tune_robust.models._registry", "tune_robust.config"),
    ("tune_robust.training._base", "tune_robust.config"),
    ("tune_robust.runner", "trainables"),
    ("tune_robust.runner", "analysis.stats"),
    ("tune_robust.runner", "analysis.plots"),
    ("tune_robust.sweeps", "search_spaces"),
}


def layer(module: str) -> int | None:
    for prefix, n in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return n
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    sources = [
        ROOT / "sweep.py",
        *[
            p
            for d in ("tune_robust", "search_spaces", "trainables", "analysis")
            for p in (ROOT / d).rglob("*.py")
        ],
    ]
    for path in sources:
        me = module_name(path)
        mine = layer(me)
        assert mine is not None, f"{me} has no layer: add it to LAYERS"
        for target in imported(path):
            theirs = layer(target)
            if theirs is not None and theirs > mine:
                found.add((me, target))
    return found


def test_no_new_upward_imports():
    found = upward_imports()
    new = sorted(found - KNOWN)
    assert not new, f"lower layer imports a higher one: {new}"
    gone = sorted(KNOWN - found)
    assert not gone, f"fixed upward imports still listed in KNOWN (remove them): {gone}"


def test_the_scan_sees_an_upward_import(tmp_path):
    fake = tmp_path / "probe.py"
    fake.write_text("def f():\n    from tune_robust.runner import plan\n")
    assert "tune_robust.runner" in imported(fake)
    assert layer("tune_robust.runner") > layer("tune_robust.attacks.pgd")  # type: ignore[operator]
