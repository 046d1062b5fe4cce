"""Typed option fields: a schema is {key: Field(default, types, check, rule)}; `validate_section` checks a
mapping against it and completes it with defaults, failing with one line (ConfigError). Imports nothing of
the package but its errors, so every layer can declare and check its options."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ConfigError


@dataclass(frozen=True)
class Field:
    default: Any
    types: tuple[type, ...]
    check: Callable[[Any], bool] | None = None
    rule: str = ""


def positive(v):
    return v is None or v > 0


def non_negative(v):
    return v is None or v >= 0


def fraction(v):
    return 0 < v < 1


NUM = (int, float)
OPT_INT = (int, type(None))
OPT_NUM = (int, float, type(None))
OPT_STR = (str, type(None))


def type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def _inferred_types(default: Any) -> tuple[type, ...]:
    if default is None:
        return (object,)
    if isinstance(default, float):
        return NUM
    return (type(default),)


def number_ok(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def show(key: str) -> str:
    """A key as it can stand in a one-line message."""
    return key if key.isprintable() else repr(key)


def validate_section(section: str, values: dict, schema: dict[str, Field]) -> dict:
    """Check `values` against `schema` and return it completed with defaults."""
    if not isinstance(values, dict):
        raise ConfigError(f"config section {section!r} must be a mapping, got {type(values).__name__}")
    unknown = sorted(set(values) - set(schema))
    if unknown:
        raise ConfigError(f"unknown config key {section}.{show(unknown[0])} (known: {', '.join(sorted(schema))})")
    out = {}
    for key, field in schema.items():
        value = values.get(key, copy.deepcopy(field.default))
        if not type_ok(value, field.types) or not number_ok(value):
            want = " or ".join("null" if t is type(None) else t.__name__ for t in field.types)
            raise ConfigError(f"{section}.{key} must be {want}, got {value!r}")
        if field.check is not None and value is not None and not field.check(value):
            raise ConfigError(f"{section}.{key} {field.rule}, got {value!r}")
        if isinstance(value, int) and not isinstance(value, bool) and isinstance(field.default, float):
            value = float(value)
        out[key] = value
    return out


def schema_from_defaults(defaults: dict[str, Any]) -> dict[str, Field]:
    """Schema of a plug-in's options: each key typed by its default value."""
    return {k: Field(v, _inferred_types(v)) for k, v in defaults.items()}
