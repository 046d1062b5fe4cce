"""Conformance suite of a strategy (ask / tell / state_dict / load_state_dict), without any training: the
results it is told are made up, cycling through ok, failed and infeasible; one ok trial in five was stopped early
by a scheduler (`epochs`, `stopped_early=1`)."""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..checkpoint import decode, encode
from ..journal import TrialResult
from ..objective import Objective
from ..space import Arch, SearchSpace
from ..strategies import Strategy, Unique
from ._common import TinySpace

OBJECTIVE = Objective(["val_acc"], ["flops"])
STATUSES = ("ok", "ok", "failed", "ok", "infeasible")


def fake_result(trial: int, arch: Arch, rng: np.random.Generator) -> TrialResult:
    """A made-up result of `trial`: its status cycles through STATUSES; ok ones have random metrics, those of
    trials 3, 8, 13, ... as if a scheduler had stopped them after one epoch."""
    status = STATUSES[trial % len(STATUSES)]
    metrics = {"val_acc": float(rng.random()), "flops": float(rng.random())} if status == "ok" else {}
    if trial % len(STATUSES) == 3:
        metrics |= {"epochs": 1.0, "stopped_early": 1.0}
    return TrialResult(trial, arch, str(arch.arch_id), status, metrics, error=None if status == "ok" else "boom")


def drive(strategy: Strategy, space: SearchSpace, n: int, start: int = 0) -> list[str]:
    """Ask and tell up to `n` trials (numbered from `start`), asserting every proposal is a valid Arch of
    `space`; returns their arch ids (fewer when the strategy has nothing left to propose)."""
    rng = np.random.default_rng(1234 + start)
    archs = []
    for trial in range(start, start + n):
        arch = strategy.ask()
        if arch is None:
            break
        assert isinstance(arch, Arch), f"{strategy.name}: ask() must return an Arch or None, got {arch!r}"
        assert space.validate(arch) == arch
        archs.append(arch.arch_id)
        strategy.tell(fake_result(trial, arch, rng))
    return archs


def applicable(strategy_cls: type[Strategy], space: SearchSpace) -> bool:
    """Whether `space` has every capability the strategy `requires`."""
    return all(isinstance(space, cap) for cap in strategy_cls.requires)


def check_strategy(strategy_cls: type[Strategy], space: SearchSpace, options: dict[str, Any] | None = None,
                   objective: Objective = OBJECTIVE, budget: int = 12, seed_matters: bool = True) -> None:
    """Assert the contract of an ask/tell strategy on `space` (built with `options`):

    - `ask()` returns valid Archs of the space and `tell()` accepts ok (full or stopped early), failed and
      infeasible results;
    - the same seed gives the same proposals, `budget` of them; another seed other ones (`seed_matters`);
    - `state_dict()` survives the run directory's JSON checkpoint (`sparsenas.checkpoint.encode`, JSON text,
      `decode`), and a new strategy that loads it proposes exactly what the original would have;
    - on a space of six archs, it proposes at least one and never fails while asked for more than six; through
      the search loop's de-duplication (`Unique`) it proposes each of the six exactly once, then None."""
    options = dict(options or {})

    def make(seed: int, on: SearchSpace = space) -> Strategy:
        return strategy_cls(on, objective, seed, **options)

    a, b = drive(make(7), space, budget), drive(make(7), space, budget)
    assert a == b, f"{strategy_cls.__name__}: the same seed must give the same proposals"
    assert len(a) == budget, f"{strategy_cls.__name__}: proposed {len(a)} of {budget} archs on a larger space"
    if seed_matters:
        assert drive(make(8), space, budget) != a, f"{strategy_cls.__name__}: another seed gave the same proposals"
    check_resume(make, space, budget // 2)
    tiny = TinySpace()
    archs = drive(make(0, tiny), tiny, 20)
    assert 1 <= len(archs) <= 20
    archs = drive(Unique(make(0, tiny)), tiny, 20)
    assert len(archs) == len(set(archs)) == 6, f"{strategy_cls.__name__}: through Unique, {archs} on a space of six"


def check_resume(make, space: SearchSpace, half: int) -> None:
    """`make(seed)` builds the strategy; stopping after `half` trials and resuming from the JSON checkpoint of
    its state continues exactly as an uninterrupted run."""
    full = make(3)
    expected = drive(full, space, half) + drive(full, space, half, start=half)
    first = make(3)
    head = drive(first, space, half)
    text = json.dumps(encode(first.state_dict()))  # raises TypeError for state that JSON cannot carry
    resumed = make(3)
    resumed.load_state_dict(decode(json.loads(text)))
    assert head + drive(resumed, space, half, start=half) == expected, \
        f"{type(full).__name__}: a strategy resumed from its checkpoint proposes other archs"
