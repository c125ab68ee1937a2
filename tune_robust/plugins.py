"""Plugins: how every component reaches its registry, the built-in ones and a user's own from outside
this repository (models, attacks, training methods, datasets, sweeps, trainables, search methods, claims).

A plugin is a Python module (``my_lab.robust_models``), a package (each of its public modules is
imported) or a file (``./my_model.py``) that registers components with the usual decorators
(``register_model``, ``register_attack``, ``register_method``, ``register_dataset``, ``register_sweep``,
``register_trainable``, ``register_search``, ``register_claim``) when imported.

The built-ins are plugins too: tune_robust's own pyproject declares one ``tune_robust.plugins`` entry
point per kind (``models = "tune_robust.models"``, ``sweeps = "tune_robust.search_spaces"``, ...), and a
registry imports the one for its kind on first use (:func:`discover`), so listing sweeps never imports a
model and adding a component is adding one file to its package. Three ways to name a user's plugin, all
combined (in this order, duplicates dropped):

- installed packages: the entry-point group ``tune_robust.plugins`` (``[project.entry-points]`` in the
  package's pyproject: ``mine = "my_lab.robust_models"``);
- the environment: ``TUNE_ROBUST_PLUGINS``, entries separated by ``os.pathsep`` (``:`` on Linux);
- the command line: ``--plugin MODULE_OR_FILE.py`` (repeatable).

The driver imports them before a sweep is planned. Every Ray trial imports them again before its config
is parsed (:func:`with_plugins` wraps the trainable): a module plugin by name (it must be installed on
every node), a file plugin from its path, or, on a node where that path does not hold the same file, from
the source text the driver read, so a file plugin reaches workers on other machines without a shared
filesystem. What each plugin was (name, path, SHA-256 of its file) goes into ``sweep.json``, the resume
fingerprint and a ``plugins`` column of every trial row.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import os
import pkgutil
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from tune_robust.errors import ConfigError

ENV_VAR = "TUNE_ROBUST_PLUGINS"
ENTRY_POINT_GROUP = "tune_robust.plugins"


@dataclass(frozen=True)
class Plugin:
    """One imported plugin: a module name, or a file with its path, content hash and source text."""

    name: str
    path: str = ""
    sha256: str = ""
    source: str = ""

    @property
    def is_file(self) -> bool:
        return bool(self.path)

    def record(self) -> dict[str, str]:
        """What the results keep of it (no source text)."""
        return {"name": self.name, "path": self.path, "sha256": self.sha256}

    def label(self) -> str:
        return f"{self.path}@{self.sha256[:12]}" if self.is_file else self.name


# Plugins imported in this process, by name: importing twice (a second sweep in one process, a reused
# Ray worker) must not register every component again.
_LOADED: dict[str, Plugin] = {}


# Plugins being imported right now: a registry first used inside one (its register decorator discovers
# the built-ins and the installed plugins) must not import it a second time.
_LOADING: set[str] = set()

OWN_DISTRIBUTION = "tune_robust"


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def _is_builtin(ep: metadata.EntryPoint) -> bool:
    dist = getattr(ep, "dist", None)
    return dist is not None and dist.name.replace("-", "_") == OWN_DISTRIBUTION


def builtin(kind: str) -> list[str]:
    """The module(s) tune_robust's own entry point ``kind`` names (its built-in components)."""
    return list(dict.fromkeys(ep.value for ep in _entry_points() if _is_builtin(ep) and ep.name == kind))


def requested(cli: Sequence[str] = ()) -> list[str]:
    """A user's plugins: installed entry points, ``TUNE_ROBUST_PLUGINS`` and ``cli``, first occurrence
    kept (the built-ins are not listed: they are the library itself)."""
    names = [ep.value.split(":")[0] for ep in _entry_points() if not _is_builtin(ep)]
    names += [s for s in os.environ.get(ENV_VAR, "").split(os.pathsep) if s.strip()]
    names += list(cli)
    return list(dict.fromkeys(s.strip() for s in names))


def discover(kind: str) -> list[Plugin]:
    """Import the built-in components of ``kind`` and every installed / environment plugin (each once
    per process); a registry calls this the first time it is used (never while a module registers, so
    no package is half-imported when a plugin imports it)."""
    _load_builtins(builtin(kind))
    return load(requested())


def _load_builtins(specs: Sequence[str]) -> None:
    for spec in specs:
        _load_once(_describe(spec), spec)


def load_all_builtins() -> None:
    """Every kind's built-in components (before a user's plugin, so a plugin that reuses a built-in
    name is the one refused, whichever registry it fills)."""
    _load_builtins(list(dict.fromkeys(ep.value for ep in _entry_points() if _is_builtin(ep))))


def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or "/" in spec


def _describe(spec: str) -> Plugin:
    if not _is_file(spec):
        return Plugin(spec)
    path = Path(spec).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"plugin {spec}: no such file (give a .py file or an importable module name)")
    source = path.read_text(encoding="utf-8")
    return Plugin(path.stem, str(path), hashlib.sha256(source.encode()).hexdigest(), source)


def _module_name(plugin: Plugin) -> str:
    return f"tune_robust_plugin_{plugin.name}_{plugin.sha256[:12]}" if plugin.is_file else plugin.name


def _import(plugin: Plugin) -> None:
    if plugin.is_file:
        name = _module_name(plugin)
        module = types.ModuleType(name)
        module.__file__ = plugin.path
        sys.modules[name] = module
        try:
            exec(compile(plugin.source, plugin.path, "exec"), module.__dict__)
        except BaseException:
            del sys.modules[name]
            raise
    else:
        module = importlib.import_module(plugin.name)
        for sub in pkgutil.iter_modules(getattr(module, "__path__", [])):
            if not sub.name.startswith("_"):
                importlib.import_module(f"{plugin.name}.{sub.name}")


def load(specs: Sequence[str]) -> list[Plugin]:
    """Import each plugin once per process, after every built-in; a missing file, an import error or a
    name that clashes with a registered component is one ConfigError naming the plugin."""
    plugins = [_describe(spec) for spec in specs]
    if plugins:
        load_all_builtins()
    return [_load_once(plugin, spec) for plugin, spec in zip(plugins, specs, strict=True)]


def _load_once(plugin: Plugin, shown_as: str) -> Plugin:
    key = _module_name(plugin)
    if key not in _LOADED and key not in _LOADING:
        _LOADING.add(key)
        try:
            _import_checked(plugin, shown_as)
        finally:
            _LOADING.discard(key)
        _LOADED[key] = plugin
    return _LOADED.get(key, plugin)


def _import_checked(plugin: Plugin, spec: str) -> None:
    try:
        _import(plugin)
    except ModuleNotFoundError as e:
        if e.name and plugin.name.startswith(e.name):
            raise ConfigError(
                f"plugin {spec}: no module named {e.name!r} (install it, or pass a .py file path)"
            ) from None
        raise ConfigError(f"plugin {spec} failed to import: ModuleNotFoundError: {e}") from None
    except ValueError as e:
        if "registered twice" in str(e):
            raise ConfigError(f"plugin {spec}: {e}; give the component another name") from None
        raise ConfigError(f"plugin {spec} failed to import: ValueError: {e}") from None
    except ConfigError as e:
        raise ConfigError(f"plugin {spec}: {e}") from None
    except Exception as e:
        raise ConfigError(f"plugin {spec} failed to import: {type(e).__name__}: {e}") from None


def load_in_worker(plugins: Sequence[Plugin]) -> None:
    """A trial's import of the driver's plugins: a file plugin from the source text the driver read
    (the same bytes whether or not this node has the file), a module plugin by name."""
    if plugins:
        load_all_builtins()
    for plugin in plugins:
        _load_once(plugin, plugin.label())


def with_plugins(
    trainable: Callable[[dict[str, Any]], None], plugins: Sequence[Plugin]
) -> Callable[[dict[str, Any]], None]:
    """``trainable`` that first imports ``plugins`` in whichever worker process runs it."""
    if not plugins:
        return trainable
    carried = tuple(plugins)
    from ray import cloudpickle

    for plugin in carried:  # a file plugin's functions (its own trainable) travel by value
        if plugin.is_file and _module_name(plugin) in sys.modules:
            cloudpickle.register_pickle_by_value(sys.modules[_module_name(plugin)])

    @functools.wraps(trainable)
    def run(config: dict[str, Any]) -> None:
        load_in_worker(carried)
        trainable(config)

    return run


def records(plugins: Sequence[Plugin]) -> list[dict[str, str]]:
    return [p.record() for p in plugins]
