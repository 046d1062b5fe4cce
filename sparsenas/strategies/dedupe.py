"""The loop's de-duplication: `Unique(strategy)`, so that no arch is evaluated twice in a run and "the space is
used up" is one signal, whatever the strategy (the shape of Ray Tune's `ConcurrencyLimiter` and `Repeater`:
a wrapper with the strategy's own interface). A strategy is then only its algorithm.

`ask()` asks the wrapped strategy. A proposal that was already evaluated in this run or is still running is
not returned: the strategy hears of it through `duplicate(arch, known)` — `known` is the arch's first result
when the strategy sets `duplicate_results` (TPE tells it to Optuna as that trial's value), else None — and is
asked again, up to `max_retries` times; then a uniform sample of the archs not seen yet is returned instead
(the wrapper's own RNG, seeded by the run seed). `ask()` returns None once every arch of the space has been
proposed (exhausted), or when the strategy itself has nothing to propose. A proposal that is not an Arch (a
one-shot strategy's supernet job) passes through untouched.

Options, read from the wrapped strategy's options where it declares them (so presets and
`--set strategy.dedupe=false` keep working) or given to `Unique` directly: `dedupe` (default true; false
passes every proposal through — e.g. the paper's REA, which may re-evaluate an arch) and `max_retries`
(default 100).

With `budget` (the run's `search.budget`), a budget that does not go beyond the strategy's warm-up
(`Strategy.warmup()`: uniform samples before it learns anything) is reported once: logged as a warning when
`Unique` is built and kept in `warnings` for the run's TensorBoard text.

The wrapper's state (seen arch ids; first results when the strategy asks for them; its RNG) is part of
`state_dict()`, plain data for the JSON checkpoint, so a resumed run continues exactly.
"""
from __future__ import annotations

import itertools
import logging
import math
from typing import Any

import numpy as np

from ..journal import TrialResult
from ..errors import ConfigError
from ..schema import Field, count
from ..space import Arch, Categorical, Int
from .base import Strategy

log = logging.getLogger("sparsenas")

DEFAULTS = {"dedupe": True, "max_retries": 100}


def dedupe_fields(max_retries: int = DEFAULTS["max_retries"], dedupe: bool | None = DEFAULTS["dedupe"],
                  min_retries: int = 0) -> dict[str, Field]:
    """The options a strategy declares so that `Unique` reads them from its options: `max_retries` (and `dedupe`
    unless it is None), with the strategy's own defaults."""
    fields = {} if dedupe is None else {"dedupe": Field(dedupe, (bool,))}
    return {**fields, "max_retries": count(max_retries, min_retries)}
ENUMERATE_MAX = 100_000  # a space at most this large is enumerated when random draws find nothing unseen


class Unique:
    """`strategy` with the loop's de-duplication and exhaustion signal (see the module docstring)."""

    def __init__(self, strategy: Strategy, *, budget: int | None = None, dedupe: bool | None = None,
                 max_retries: int | None = None):
        self.strategy = strategy
        self.space = strategy.space
        self.size = strategy.space.size()
        options = strategy.options
        self.dedupe = bool(options.get("dedupe", DEFAULTS["dedupe"]) if dedupe is None else dedupe)
        self.max_retries = int(options.get("max_retries", DEFAULTS["max_retries"]) if max_retries is None
                               else max_retries)
        self.rng = np.random.default_rng(strategy.seed)
        self.seen: set[str] = set()               # arch ids proposed (running or finished) or told
        self.known: dict[str, list] = {}          # arch id → [trial, status, metrics] of its first result
        self.warnings = [] if budget is None else budget_warnings(strategy, budget)
        for text in self.warnings:
            log.warning("sparsenas: %s", text)

    @property
    def name(self) -> str:
        return self.strategy.name

    def __getattr__(self, attr: str) -> Any:  # the wrapped strategy's own attributes (options, objective, ...)
        if attr == "strategy":
            raise AttributeError(attr)
        return getattr(self.strategy, attr)

    # -- ask / tell -------------------------------------------------------------------------------------------
    def exhausted(self) -> bool:
        return self.dedupe and len(self.seen) >= self.size

    def ask(self) -> Any:
        if self.exhausted():
            return None
        for _ in range(self.max_retries):
            proposal = self.strategy.ask()
            if proposal is None or not isinstance(proposal, Arch) or not self.dedupe:
                return proposal
            if proposal.arch_id not in self.seen:
                self.seen.add(proposal.arch_id)
                return proposal
            self.strategy.duplicate(proposal, self._known(proposal))
        arch = self._unseen()
        if arch is not None:
            self.seen.add(arch.arch_id)
        return arch

    def tell(self, result: TrialResult) -> None:
        self.seen.add(result.arch_id)
        if self.strategy.duplicate_results and result.arch_id not in self.known:
            self.known[result.arch_id] = [result.trial, result.status, dict(result.metrics)]
        self.strategy.tell(result)

    def _known(self, arch: Arch) -> TrialResult | None:
        first = self.known.get(arch.arch_id)
        if first is None:
            return None
        trial, status, metrics = first
        return TrialResult(trial, arch, self.space.label(arch), status, dict(metrics))

    def _unseen(self) -> Arch | None:
        """A uniform sample among the archs not seen yet (None when there is none)."""
        for _ in range(self.max_retries):
            arch = self.space.sample(self.rng)
            if arch.arch_id not in self.seen:
                return arch
        if self.size > ENUMERATE_MAX:
            return None  # random draws keep hitting seen archs of a space too large to list: give up
        rest = [arch for arch in enumerate_space(self.space) if arch.arch_id not in self.seen]
        return rest[int(self.rng.integers(len(rest)))] if rest else None

    # -- state ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy.state_dict(), "seen": sorted(self.seen), "known": dict(self.known),
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.strategy.load_state_dict(state["strategy"])
        self.seen = set(state["seen"])
        self.known = {str(k): list(v) for k, v in state["known"].items()}
        self.rng.bit_generator.state = state["rng"]


def enumerate_space(space) -> list[Arch]:
    """Every arch of a space of Categorical and Int dims (that the space accepts), in a fixed order."""
    dims = space.dims()
    values = []
    for dim in dims.values():
        if isinstance(dim, Categorical):
            values.append(list(dim.choices))
        elif isinstance(dim, Int):
            values.append(list(range(dim.low, dim.high + 1, dim.step)))
        else:
            return []
    out = []
    for combo in itertools.product(*values):
        try:
            out.append(space.validate(dict(zip(dims, combo))))
        except ConfigError:  # a combination the space rejects is not an arch of it
            continue
    return out


def budget_warnings(strategy: Strategy, budget: int) -> list[str]:
    """A warning when `budget` trials do not go beyond the strategy's warm-up (all of them uniform samples)."""
    warmup = strategy.warmup()
    if warmup is None:
        return []
    option, n = warmup
    if not (isinstance(n, (int, float)) and math.isfinite(n)) or budget > n:
        return []
    return [f"strategy {strategy.name}: search.budget={budget} does not go beyond its warm-up "
            f"({option}={n} uniform samples before it uses what it learned), so this run is a random search; "
            f"raise search.budget above {n} or lower strategy.{option}"]
