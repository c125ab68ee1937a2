"""One small registry class, used once per kind (datasets, models, attacks, training methods, sweeps,
trainables, search methods).

A registry maps a name to a *builder* (a function or class), never to a built object, so importing a
registry is cheap and nothing heavy happens until ``create`` is called. A registry fills itself on first
use through :func:`tune_robust.plugins.discover`: the built-in components of its kind (tune_robust's own
``tune_robust.plugins`` entry point named ``plugin``) and every installed or ``TUNE_ROBUST_PLUGINS``
plugin, one discovery path for built-ins and plugins alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar, cast

from tune_robust.errors import ConfigError

T = TypeVar("T")
C = TypeVar("C")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest known name, or ``""`` when none is close."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry(Generic[T]):
    """Name -> builder mapping with a helpful error for unknown names.

    Example:
        >>> models: Registry[Callable[..., int]] = Registry("model")
        >>> @models.register("one")
        ... def one() -> int:
        ...     return 1
        >>> models.get("one")()
        1
    """

    def __init__(self, kind: str, plugin: str = "") -> None:
        self.kind = kind
        # Name of tune_robust's own entry point that provides the built-in components of this kind.
        self.plugin = plugin
        self._entries: dict[str, T] = {}
        self._discovered = not plugin

    def _discover(self) -> None:
        if not self._discovered:
            self._discovered = True  # before importing: the imported modules register into this registry
            from tune_robust.plugins import discover

            try:
                discover(self.plugin)
            except BaseException:
                self._discovered = False
                raise

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            key = name or getattr(obj, "__name__", None)
            if not key:
                raise ValueError(f"cannot infer a {self.kind} name for {obj!r}; pass name=")
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = obj
            return obj

        return decorator

    def register_class(self, name: str) -> Callable[[C], C]:
        """Register a class under ``name`` and set its ``name`` attribute (attacks, methods, searches)."""

        def decorator(cls: C) -> C:
            cls.name = name  # type: ignore[attr-defined]
            self.register(name)(cast(T, cls))
            return cls

        return decorator

    def unregister(self, name: str) -> None:
        """Drop ``name`` (a test's temporary component; unknown names are an error)."""
        self.get(name)
        del self._entries[name]

    def get(self, name: str) -> T:
        if name not in self._entries:
            self._discover()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none (is tune_robust installed? pip install -e .)"
            hint = did_you_mean(name, self._entries)
            raise ConfigError(f"unknown {self.kind} {name!r}{hint}; known {self.kind}s: {known}") from None

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        if name not in self._entries:
            self._discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._discover()
        return len(self._entries)
