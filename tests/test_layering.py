"""The library is a stack: a module imports only its own layer and those below it (imports inside
functions count too: a lazy import is still a dependency), and no group of modules imports itself round
in a cycle. The layers (docs/extending.md, "The layer stack"):

0 errors, registry, coercion, atomic writes, plugins, faults -> 1 data, models, attacks -> 2 training
methods, evaluation -> 3 trial config, training loop, results, the Ray cluster, snapshots -> 4 sweeps,
planning and running (run), search strategies (searchers: search methods, their Ray searchers, ASHA) ->
5 search_spaces, trainables, analysis -> 6 the command line and its Python twin (cli, api).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Where each installed package's files live (pyproject's package-dir).
FOLDERS = {
    "tune_robust": ROOT / "tune_robust",
    "tune_robust.search_spaces": ROOT / "search_spaces",
    "tune_robust.trainables": ROOT / "trainables",
    "tune_robust.analysis": ROOT / "analysis",
}

# Module prefix -> layer, most specific first.
LAYERS: list[tuple[str, int]] = [
    ("tune_robust.errors", 0),
    ("tune_robust.registry", 0),
    ("tune_robust.coerce", 0),
    ("tune_robust.atomic", 0),
    ("tune_robust.faults", 0),
    ("tune_robust.plugins", 0),
    ("tune_robust.data", 1),
    ("tune_robust.models", 1),
    ("tune_robust.attacks", 1),
    ("tune_robust.training.loop", 3),
    ("tune_robust.training", 2),
    ("tune_robust.evaluation", 2),
    ("tune_robust.config", 3),
    ("tune_robust.results", 3),
    ("tune_robust.cluster", 3),
    ("tune_robust.snapshot", 3),
    ("tune_robust.sweeps", 4),
    ("tune_robust.run", 4),
    ("tune_robust.searchers", 4),
    ("tune_robust.search_spaces", 5),
    ("tune_robust.trainables", 5),
    ("tune_robust.analysis", 5),
    ("tune_robust.cli", 6),
    ("tune_robust.api", 6),
    ("tune_robust.__main__", 6),
    ("tune_robust", 0),
]


def layer(module: str) -> int | None:
    for prefix, n in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return n
    return None


def modules() -> dict[str, Path]:
    """Every library module by its installed name."""
    out: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[0] in ("search_spaces", "trainables", "analysis") and package == "tune_robust":
                continue
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            out[".".join([package, *parts])] = path
    return out


def imported(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)  # submodules imported by name
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {t for t in imported(path) if t in mods and t != name} for name, path in mods.items()}


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for me, targets in graph().items():
        mine = layer(me)
        assert mine is not None, f"{me} has no layer: add it to LAYERS"
        for target in targets:
            theirs = layer(target)
            assert theirs is not None, f"{target} has no layer: add it to LAYERS"
            if theirs > mine:
                found.add((me, target))
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules that import each other (a package's
    ``__init__`` importing its own submodules does not count: that is what a package is)."""

    def parent_of(a: str, b: str) -> bool:
        return b.startswith(a + ".")

    found, state = [], dict.fromkeys(edges, 0)

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if parent_of(node, nxt):
                continue
            if state[nxt] == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif state[nxt] == 0:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(edges):
        if state[node] == 0:
            visit(node, [node])
    return found


def test_no_upward_imports():
    assert not sorted(upward_imports()), "a lower layer imports a higher one"


def test_no_import_cycles():
    assert not cycles(graph())


def test_every_module_has_a_layer_and_the_scan_sees_the_application_folders():
    names = set(modules())
    assert {"tune_robust.cli", "tune_robust.search_spaces.wrn", "tune_robust.trainables.adversarial"} <= names
    assert {"tune_robust.analysis.summary", "tune_robust.searchers.optuna_samplers"} <= names
    assert all(layer(n) is not None for n in names)


def test_the_checks_see_an_upward_import_and_a_cycle(tmp_path):
    fake = tmp_path / "probe.py"
    fake.write_text("def f():\n    from tune_robust.run import plan\n")
    assert "tune_robust.run" in imported(fake)
    assert layer("tune_robust.run") > layer("tune_robust.attacks.pgd")  # type: ignore[operator]
    assert cycles({"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a": {"a.x"}}) == [
        ["a.x", "a.y", "a.z", "a.x"]
    ]
    assert cycles({"a": {"a.x"}, "a.x": {"a"}}) == []
