"""Typed option fields: a schema is {key: Field(default, types, check, rule, choices)}; `validate_section` checks
a mapping against it and completes it with defaults, failing with one line (ConfigError). Imports nothing of
the package but its errors, so every layer can declare and check its options.

Plug-ins (spaces, strategies, supernet searches) declare their options as a class attribute `options_schema`
({key: Field}), or only `defaults` ({key: default value}, each typed by its value); `schema_of(cls)` is the
schema either way, and their base classes' `__init__` check the options with it, so a class built directly is
checked exactly like one built from a config."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

from .errors import ConfigError


@dataclass(frozen=True)
class Field:
    """One option: its default, the types it may have, a `check` of a (non-null) value and the `rule` it states
    ("must be >= 1"), and `choices`: the names a string value (or each item of a list value) must be one of —
    a sequence, or a function returning one (e.g. a registry's `names`, read when a value is checked, so names
    registered later count)."""

    default: Any
    types: tuple[type, ...]
    check: Callable[[Any], bool] | None = None
    rule: str = ""
    choices: Iterable[str] | Callable[[], Iterable[str]] | None = None

    def names(self) -> list[str] | None:
        """The choices, or None when the field has none."""
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)


NUM = (int, float)
OPT_INT = (int, type(None))
OPT_NUM = (int, float, type(None))
OPT_STR = (str, type(None))
OPT_BOOL = (bool, type(None))


def positive(v):
    return v is None or v > 0


def non_negative(v):
    return v is None or v >= 0


def fraction(v):
    return 0 < v < 1


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and number_ok(v)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def interval(low: float | None = None, high: float | None = None, *, low_open: bool = False,
             high_open: bool = False) -> tuple[Callable[[Any], bool], str]:
    """A check that a number is in [low, high] (either end open with `low_open`/`high_open`, absent when None)
    and its words ("in (0, 1]", "> 0", ">= 1")."""
    def check(v):
        return ((low is None or (v > low if low_open else v >= low))
                and (high is None or (v < high if high_open else v <= high)))

    if high is None:
        words = f"{'>' if low_open else '>='} {low:g}"
    elif low is None:
        words = f"{'<' if high_open else '<='} {high:g}"
    else:
        words = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return check, words


def count(default: int | None, low: int = 1) -> Field:
    """An integer option >= `low`."""
    return Field(default, (int,), lambda v: v >= low, f"must be an integer >= {low}")


def number(default: float | None, low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False, types: tuple[type, ...] = NUM) -> Field:
    """A number option in [low, high] (see `interval`)."""
    check, words = interval(low, high, low_open=low_open, high_open=high_open)
    return Field(default, types, check, f"must be {words}")


def numbers(default: list, low: float | None = None, high: float | None = None, *, low_open: bool = False,
            high_open: bool = False) -> Field:
    """A non-empty list of numbers, each in [low, high] (see `interval`)."""
    check, words = interval(low, high, low_open=low_open, high_open=high_open)
    return Field(default, (list,), lambda v: bool(v) and all(is_number(x) and check(x) for x in v),
                 f"must be a non-empty list of numbers {words}")


def counts(default: list, low: int = 1) -> Field:
    """A non-empty list of integers >= `low`."""
    return Field(default, (list,), lambda v: bool(v) and all(is_int(x) and x >= low for x in v),
                 f"must be a non-empty list of integers >= {low}")


def one_of(default: str, choices: Iterable[str] | Callable[[], Iterable[str]]) -> Field:
    """A name option: one of `choices` (a sequence, or a function returning one, e.g. a registry's `names`)."""
    return Field(default, (str,), choices=choices)


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
    return {key: check_value(section, key, values.get(key, copy.deepcopy(field.default)), field)
            for key, field in schema.items()}


def check_value(section: str, key: str, value: Any, field: Field) -> Any:
    """`value` of option `key` checked against `field` (ConfigError, one line) and normalised: an int where the
    default is a float becomes a float, a tuple where a list is expected (built in Python) a list."""
    if isinstance(value, tuple) and list in field.types:
        value = list(value)
    if not type_ok(value, field.types) or not number_ok(value):
        want = " or ".join("null" if t is type(None) else t.__name__ for t in field.types)
        raise ConfigError(f"{section}.{key} must be {want}, got {value!r}")
    names = field.names()
    if names is not None and isinstance(value, str) and value not in names:
        raise ConfigError(f"{section}.{key} must be one of {', '.join(names)}, got {value!r}")
    if names is not None and isinstance(value, list):
        bad = [item for item in value if not isinstance(item, str) or item not in names]
        if bad:
            raise ConfigError(f"{section}.{key} has unknown {bad[0]!r} (known: {', '.join(names)})")
    if field.check is not None and value is not None and not field.check(value):
        raise ConfigError(f"{section}.{key} {field.rule}, got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and isinstance(field.default, float):
        value = float(value)
    return value


def schema_from_defaults(defaults: dict[str, Any]) -> dict[str, Field]:
    """Schema of a plug-in's options: each key typed by its default value."""
    return {k: Field(v, _inferred_types(v)) for k, v in defaults.items()}


def schema_of(cls: type) -> dict[str, Field]:
    """The options schema of a plug-in class: the `options_schema` of the nearest class (in its MRO) that declares
    one, or that class's `defaults` — a key it shares with an ancestor's schema keeps that field with the new
    default, any other key is typed by its default value."""
    mro = cls.__mro__
    for i, klass in enumerate(mro):
        own = vars(klass)
        if "options_schema" in own:
            return dict(own["options_schema"])
        if "defaults" in own:
            parent = schema_of(mro[i + 1]) if i + 1 < len(mro) else {}
            inferred = schema_from_defaults(own["defaults"])
            return {k: replace(parent[k], default=f.default) if k in parent else f for k, f in inferred.items()}
    return {}


def declare_defaults(cls: type) -> None:
    """For `__init_subclass__` of a plug-in base: a class that declares `options_schema` gets the matching
    `defaults` ({key: default}), which callers may read as for a plug-in that declares only `defaults`."""
    if "options_schema" in vars(cls):
        cls.defaults = {k: f.default for k, f in cls.options_schema.items()}
