"""One small registry class, used once per kind (datasets, models, attacks, training methods, sweeps).

A registry maps a name to a *builder* (a function or class), never to a built object, so importing a
registry is cheap and nothing heavy happens until ``create`` is called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from tune_robust.errors import ConfigError

T = TypeVar("T")


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

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

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

    def unregister(self, name: str) -> None:
        """Drop ``name`` (a test's temporary component; unknown names are an error)."""
        self.get(name)
        del self._entries[name]

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(sorted(self._entries))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
