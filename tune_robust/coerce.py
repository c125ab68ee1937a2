"""Values from configs and command lines, converted by a builder's type annotations.

The bottom layer with ``errors`` and ``registry``: every component family validates its own keyword
options with :func:`coerce_kwargs` against its builder's signature, so nothing here knows any family.
``8/255`` is accepted wherever a float is; ``"eps/4"`` is resolved against an attack's budget.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

from tune_robust.errors import ConfigError


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is tuple:
        args = get_args(tp)
        inner = _type_name(args[0])
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {inner} (e.g. 1,2,3)"
        return f"{len(args)} comma-separated {inner} values"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None)) + " (or none)"
    return getattr(tp, "__name__", str(tp))


def _parse_float(text: str) -> float:
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den)
    return float(text)


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to annotation ``tp``, or raise a ConfigError naming ``key``."""
    origin = get_origin(tp)
    bad = ConfigError(f"{key} expects {_type_name(tp)}, got {value!r}")
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))
        if is_none and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise bad
    if origin is tuple:
        args = get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.strip().strip("[]()").replace(" ", "").split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise bad
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise bad
        return tuple(coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if origin in (dict, Mapping) or tp is dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise bad
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return _parse_float(value)
            except (ValueError, ZeroDivisionError):
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    if tp is Any:
        return value
    raise ConfigError(f"{key}: unsupported annotation {tp!r}")


def _hints(obj: Callable[..., Any]) -> dict[str, Any]:
    target = obj.__init__ if inspect.isclass(obj) and not dataclasses.is_dataclass(obj) else obj
    return typing.get_type_hints(target)


def builder_params(builder: Callable[..., Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Keyword parameters of a builder or dataclass with their annotations (and defaults)."""
    hints = _hints(builder)
    params = {}
    for name, p in inspect.signature(builder).parameters.items():
        if name in skip or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        params[name] = hints.get(name, Any)
    return params


def coerce_kwargs(
    builder: Callable[..., Any], kwargs: Mapping[str, Any], where: str, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    params = builder_params(builder, skip)
    out = {}
    for k, v in kwargs.items():
        if k not in params:
            raise ConfigError(f"{where}: unknown option {k!r}; valid options: {', '.join(sorted(params))}")
        out[k] = coerce(v, params[k], f"{where} option {k!r}")
    return out


@dataclass(frozen=True)
class ComponentSpec:
    """A registered component by name plus its validated keyword arguments."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


_EPS_EXPR = re.compile(r"eps((?:[*/][0-9.]+)*)")


def resolve_eps(value: Any, eps: float, key: str) -> Any:
    """Turn ``"eps/10"``-style strings into numbers relative to the resolved ``eps``."""
    if not isinstance(value, str):
        return value
    m = _EPS_EXPR.fullmatch(value.replace(" ", ""))
    if not m:
        return value
    out = eps
    for op, num in re.findall(r"([*/])([0-9.]+)", m.group(1)):
        try:
            out = out * float(num) if op == "*" else out / float(num)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"{key}: cannot evaluate {value!r}") from None
    return out


def is_eps_relative(raw: Any) -> bool:
    """``"auto"`` or an ``"eps/4"``-style value: kept as text until the attack's budget is known."""
    return isinstance(raw, str) and (raw == "auto" or bool(_EPS_EXPR.fullmatch(raw.replace(" ", ""))))
