"""Conformance suite: every registered strategy on every registered space (ask/tell without training), by
sparsenas.testing.check_strategy."""
import itertools

import pytest

import sparsenas.spaces  # noqa: F401
from sparsenas.space import SPACES
from sparsenas.strategies import STRATEGIES, Unique
from sparsenas.testing import OBJECTIVE, TinySpace, check_strategy, drive  # noqa: F401 — used by other tests


def make(strategy_name, space, seed=0):
    return STRATEGIES.get(strategy_name)(space, OBJECTIVE, seed)


# One-shot strategies (those that need a SuperNet space and train inside ask) have their own tests.
ASK_TELL = [n for n in STRATEGIES.names() if not STRATEGIES.get(n).requires]
CASES = list(itertools.product(ASK_TELL, SPACES.names()))


@pytest.mark.parametrize("strategy_name,space_name", CASES)
def test_every_strategy_passes_the_conformance_suite_on_every_space(strategy_name, space_name):
    """Valid proposals, ok/failed/infeasible told, same seed same 12 proposals (another seed others), exact
    resume from the JSON checkpoint of state_dict, a space of six archs."""
    check_strategy(STRATEGIES.get(strategy_name), SPACES.get(space_name)())


def test_random_through_the_loops_dedupe_never_repeats_until_exhausted():
    space = TinySpace()
    archs = drive(Unique(make("random", space)), space, 10)
    assert len(archs) == 6 == len(set(archs))
