"""Validate behaviour parameters against the behaviour's ``Params`` dataclass.

Each behaviour declares its parameters as a frozen dataclass with type hints
and defaults; ``build_params`` turns a JSON object into an instance, refusing
unknown or missing keys and values of the wrong type with a message that names
the behaviour and the parameter. Supported hints: bool, int, float, str,
Literal[...], tuple[T, ...], dict[str, str] and unions of those (incl. None).
Range checks that types cannot express live in the dataclass's ``__post_init__``
(raising ``ValueError``).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """The censor configuration is invalid; the message says where and why."""


def build_params(behaviour: str, cls: type, raw: dict[str, Any]) -> Any:
    """An instance of the dataclass ``cls`` from ``raw`` (validated)."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{behaviour}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
        )
    values = {}
    for name, f in fields.items():
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{behaviour}: missing required parameter {name!r}")
            continue
        try:
            values[name] = _coerce(raw[name], hints[name])
        except TypeError as e:
            raise ConfigError(f"{behaviour}.{name}: {e}") from None
    try:
        return cls(**values)
    except ValueError as e:
        raise ConfigError(f"{behaviour}: {e}") from None


def _coerce(value: Any, hint: Any) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        errors = []
        for arm in get_args(hint):
            try:
                return _coerce(value, arm)
            except TypeError as e:
                errors.append(str(e))
        raise TypeError(" or ".join(errors))
    if hint is type(None):
        if value is None:
            return None
        raise TypeError(f"expected null, got {value!r}")
    if origin is Literal:
        if value in get_args(hint):
            return value
        raise TypeError(f"expected one of {list(get_args(hint))}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {value!r}")
        (item,) = get_args(hint)[:1]
        return tuple(_coerce(v, item) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {value!r}")
        kt, vt = get_args(hint)
        return {_coerce(k, kt): _coerce(v, vt) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {value!r}")
        try:
            return build_params(hint.__name__, hint, value)
        except ConfigError as e:
            raise TypeError(str(e)) from None
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError(f"expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError(f"expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise TypeError(f"expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise TypeError(f"expected a string, got {value!r}")
    raise TypeError(f"unsupported parameter type {hint!r}")  # a bug in a Params class

