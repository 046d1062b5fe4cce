"""Conformance suite: every registered strategy on every registered space (ask/tell without training)."""
import itertools

import numpy as np
import pytest

import sparsenas.spaces  # noqa: F401
from sparsenas.journal import TrialResult
from sparsenas.objective import Objective
from sparsenas.space import SPACES, Categorical, SearchSpace
from sparsenas.strategies import STRATEGIES

OBJECTIVE = Objective(["val_acc"], ["flops"])
STATUSES = ["ok", "ok", "failed", "ok", "infeasible"]


def fake_result(trial, arch, rng):
    status = STATUSES[trial % len(STATUSES)]
    metrics = {"val_acc": float(rng.random()), "flops": float(rng.random())} if status == "ok" else {}
    return TrialResult(trial, arch, str(arch.arch_id), status, metrics,
                       error=None if status == "ok" else "boom")


def drive(strategy, space, n, start=0):
    rng = np.random.default_rng(1234 + start)
    archs = []
    for trial in range(start, start + n):
        arch = strategy.ask()
        if arch is None:
            break
        assert space.validate(arch) == arch
        archs.append(arch.arch_id)
        strategy.tell(fake_result(trial, arch, rng))
    return archs


def make(strategy_name, space, seed=0):
    return STRATEGIES.get(strategy_name)(space, OBJECTIVE, seed)


def applicable(strategy_name, space):
    return all(isinstance(space, cap) for cap in STRATEGIES.get(strategy_name).requires)


# One-shot strategies (those that need a SuperNet space and train inside ask) have their own tests.
ASK_TELL = [n for n in STRATEGIES.names() if not STRATEGIES.get(n).requires]
CASES = list(itertools.product(ASK_TELL, SPACES.names()))


@pytest.mark.parametrize("strategy_name,space_name", CASES)
def test_same_seed_same_sequence(strategy_name, space_name):
    space = SPACES.get(space_name)()
    a = drive(make(strategy_name, space, 7), space, 12)
    b = drive(make(strategy_name, space, 7), space, 12)
    c = drive(make(strategy_name, space, 8), space, 12)
    assert a == b and len(a) == 12
    assert a != c


@pytest.mark.parametrize("strategy_name,space_name", CASES)
def test_state_dict_round_trip_resumes_identically(strategy_name, space_name):
    space = SPACES.get(space_name)()
    full = make(strategy_name, space, 3)
    expected = drive(full, space, 6) + drive(full, space, 6, start=6)
    first = make(strategy_name, space, 3)
    head = drive(first, space, 6)
    resumed = make(strategy_name, space, 3)
    resumed.load_state_dict(first.state_dict())
    assert head + drive(resumed, space, 6, start=6) == expected


class TinySpace(SearchSpace):
    name = "tiny"

    def dims(self):
        return {"a": Categorical([0, 1, 2]), "b": Categorical(["x", "y"])}


@pytest.mark.parametrize("strategy_name", ASK_TELL)
def test_accepts_failed_and_infeasible_and_handles_a_small_space(strategy_name):
    space = TinySpace()
    strategy = make(strategy_name, space)
    archs = drive(strategy, space, 20)
    assert 1 <= len(archs) <= 20


def test_random_never_repeats_until_exhausted():
    space = TinySpace()
    archs = drive(make("random", space), space, 10)
    assert len(archs) == 6 == len(set(archs))
