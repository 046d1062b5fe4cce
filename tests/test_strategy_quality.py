"""Every registered learning strategy searches better than random search (sparsenas.testing.quality): on the
synthetic problems of known structure and on the NAS-Bench-201 table, by a margin at p < 0.01, seeded."""
import pytest
import torch

from conftest import SHARED_DATA
from sparsenas.strategies import STRATEGIES
from sparsenas.testing import PROBLEMS, applicable, check_beats_random, nb201_problem
from sparsenas.testing.quality import GridSpace

NB201_TABLE = SHARED_DATA / "nb201" / "nb201_cifar.csv"
LEARNING = sorted(n for n in STRATEGIES.names() if n != "random" and applicable(STRATEGIES.get(n), GridSpace((2,))))
# strategies that search every objective (the others optimise the first one: no hypervolume claim)
MULTI_OBJECTIVE = {"tpe", "opgfn"}
SINGLE_OBJECTIVE = {"evolution"}
# (strategy, options, seeds): faster opgfn settings (fewer steps, a smaller net, fewer redraws when every
# candidate was queried) and more seeds where runs are cheap; tpe also with its NSGA-II sampler
SETTINGS = {"opgfn": ({"init_samples": 20, "train_steps_init": 100, "train_steps": 30, "replay_steps": 5,
                       "hidden": 32, "max_retries": 2}, 10),
            "evolution": ({}, 20), "tpe[nsga2]": ({"sampler": "nsga2"}, 20)}
BUDGET = 100


def _variants(multi_objective: bool = False) -> list[str]:
    names = [n for n in LEARNING if not multi_objective or n in MULTI_OBJECTIVE]
    return names + ["tpe[nsga2]"] * ("tpe" in names)


def _check(variant: str, problem) -> None:
    options, seeds = SETTINGS.get(variant, ({}, 10))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        print(check_beats_random(STRATEGIES.get(variant.split("[")[0]), problem, options, range(seeds), BUDGET))
    finally:
        torch.set_num_threads(threads)


def test_every_learning_strategy_is_classed_by_the_objectives_it_searches():
    assert set(LEARNING) <= MULTI_OBJECTIVE | SINGLE_OBJECTIVE, "add a new strategy to MULTI_/SINGLE_OBJECTIVE"
    assert {"evolution", "opgfn", "tpe"} <= set(LEARNING)


@pytest.mark.parametrize("variant, problem", [(v, p) for v in _variants() for p in ("additive", "interactions",
                                               "constrained") if v != "tpe[nsga2]" or p == "constrained"])
def test_beats_random_search_on_a_single_objective_problem(variant, problem):  # NSGA-II: only with a constraint
    _check(variant, PROBLEMS[problem]())


@pytest.mark.parametrize("variant", _variants(multi_objective=True))
def test_reaches_a_larger_hypervolume_than_random_search_with_two_objectives(variant):
    _check(variant, PROBLEMS["two_objectives"]())


@pytest.mark.skipif(not NB201_TABLE.is_file(), reason=f"{NB201_TABLE} not present")
@pytest.mark.parametrize("variant", LEARNING)
def test_beats_random_search_on_nb201(variant, nb201):
    _check(variant, nb201)


@pytest.fixture(scope="module")
def nb201():
    return nb201_problem(str(NB201_TABLE))
