"""The strategy protocol: ask / tell / state_dict / load_state_dict (Optuna-style ask-and-tell)."""
from __future__ import annotations

from typing import Any, ClassVar

from ..journal import TrialResult
from ..objective import Objective
from ..registry import Registry
from ..schema import Field, declare_defaults, schema_of, validate_section
from ..space import Arch, SearchSpace


class Strategy:
    """Proposes archs of `space` and learns from their results.

    `ask()` returns the next arch (a one-shot strategy: a `SupernetJob`; None when it has nothing left to propose); `tell(result)` receives every
    finished trial, whatever its status; `state_dict()` is everything needed so that, after
    `load_state_dict`, the strategy continues exactly as it would have. Seeded by the run seed.
    A trial a scheduler stopped early is told `ok` with its last epoch's metrics, `epochs` and `stopped_early=1`
    (partial fidelity: `full_fidelity(result)` is False); each strategy's docstring says what it does with it.
    `requires` lists the space capabilities (mixin classes) the strategy needs. Options are declared as a
    space's (`options_schema` or `defaults`, see `sparsenas.schema.schema_of`); `__init__` checks them (one-line
    ConfigError `strategy.KEY ...`, as from a config) and keeps them typed and complete in `self.options`."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    options_schema: ClassVar[dict[str, Field]]
    requires: ClassVar[tuple[type, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        declare_defaults(cls)

    def __init__(self, space: SearchSpace, objective: Objective, seed: int, **options: Any):
        self.space = space
        self.objective = objective
        self.seed = seed
        self.options = validate_section("strategy", options, schema_of(type(self)))

    def ask(self) -> Arch | None:
        raise NotImplementedError

    def tell(self, result: TrialResult) -> None:
        raise NotImplementedError

    # -- hooks of the loop's de-duplication (`Unique`, strategies/dedupe.py); the defaults fit most strategies --
    #: whether `duplicate()` needs the first result of an already evaluated arch (the loop then keeps one per
    #: arch in its checkpoint)
    duplicate_results: ClassVar[bool] = False

    def duplicate(self, arch: Arch, known: TrialResult | None) -> None:
        """`arch`, just returned by `ask()`, will not be evaluated: it was already evaluated in this run (`known`
        is its first result when `duplicate_results` is set) or is still running (None). `ask()` comes next.
        Default: nothing; a strategy that counts its proposals undoes the count here."""

    def warmup(self) -> tuple[str, int] | None:
        """(option, n) when the first n proposals are uniform samples, made before the strategy learns from any
        result; the loop warns when the run's budget does not go beyond them. Default: None (no warm-up)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


def full_fidelity(result: TrialResult) -> bool:
    """Whether `result` is of a trial trained to the end: not stopped early by a scheduler (`stopped_early=1`)."""
    return result.metrics.get("stopped_early", 0) != 1


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
register_strategy = STRATEGIES.register
