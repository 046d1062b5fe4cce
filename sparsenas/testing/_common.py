"""Small helpers shared by the suites: a trivial space, a tiny evaluation context, a check that something raises."""
from __future__ import annotations

import math
from typing import Any, Callable

from ..config import CORE
from ..space import Categorical, EvalContext, SearchSpace


class ProbeSpace(SearchSpace):
    """A trivial space for executor and strategy checks: x in 0..7 and a letter; val_acc = x / 8 without
    training, `cost` = x as a cheap metric; x = `fail_on` raises inside `evaluate`."""

    name = "probe"
    defaults = {"fail_on": 0}

    def dims(self):
        return {"x": Categorical(tuple(range(8))), "letter": Categorical(("a", "b", "c"))}

    def metrics(self):
        return frozenset({"cost", "val_acc", "test_acc"})

    def cheap_metrics(self, arch, context):
        return {"cost": float(arch["x"])}

    def evaluate(self, arch, seed, context):
        if arch["x"] == self.options["fail_on"]:
            raise RuntimeError(f"probe evaluator fails on x={arch['x']}")
        return {"val_acc": arch["x"] / 8, "test_acc": arch["x"] / 8}


class TinySpace(SearchSpace):
    """Six archs: checks that a strategy copes with a space smaller than its budget."""

    name = "tiny"

    def dims(self):
        return {"a": Categorical((0, 1, 2)), "b": Categorical(("x", "y"))}


def tiny_context(**train: Any) -> EvalContext:
    """An evaluation context with the default training settings cut to one epoch on 64 digits samples
    (`train` overrides more keys)."""
    defaults = {section: {k: f.default for k, f in CORE[section].items()} for section in ("train", "data")}
    return EvalContext(train={**defaults["train"], "epochs": 1, **train}, data={**defaults["data"], "limit": 64})


def raises(kind: type[BaseException], fn: Callable[[], Any], what: str) -> BaseException:
    """The exception `fn()` raises, asserting it is a `kind`."""
    try:
        fn()
    except kind as e:
        return e
    raise AssertionError(f"{what}: expected {kind.__name__}, nothing was raised")


def one_line(error: BaseException, what: str) -> str:
    text = str(error)
    assert text and "\n" not in text.strip(), f"{what}: the error must be one line, got {text!r}"
    return text


def check_metrics(metrics: Any, what: str, known: frozenset[str] | None = None) -> None:
    """`metrics` is {str: finite float}, every name among `known` (when known)."""
    assert isinstance(metrics, dict), f"{what} must be a dict, got {type(metrics).__name__}"
    for name, value in metrics.items():
        assert isinstance(name, str), f"{what}: metric name {name!r} is not a string"
        assert isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), \
            f"{what}: metric {name}={value!r} is not a finite number"
        assert known is None or name in known, f"{what}: metric {name!r} is not among space.metrics() {sorted(known)}"
