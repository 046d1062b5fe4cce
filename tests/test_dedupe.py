"""The loop's de-duplication (`Unique`, strategies/dedupe.py): no duplicate ever reaches the loop, "space
exhausted" is signalled exactly when every arch was proposed (also across a resume), duplicates are told to the
strategies that learn from them, and a budget within a strategy's warm-up is warned about once."""
import json
import logging

import numpy as np
import pytest

from sparsenas.checkpoint import decode, encode
from sparsenas.journal import TrialResult
from sparsenas.space import Arch, Categorical, SearchSpace
from sparsenas.strategies import STRATEGIES, Strategy, Unique
from sparsenas.testing import OBJECTIVE, TinySpace, drive, fake_result

ASK_TELL = [n for n in STRATEGIES.names() if not STRATEGIES.get(n).requires]
SMALL = {"tpe": {"n_startup_trials": 4}, "evolution": {"population": 4, "sample_size": 2},
         "opgfn": {"init_samples": 4, "batch_size": 3, "train_steps": 2, "train_steps_init": 2, "replay_steps": 1,
                   "hidden": 8}}


class GridSpace(SearchSpace):
    name = "grid"

    def dims(self):
        return {f"d{i}": Categorical([0, 1, 2]) for i in range(4)}  # 81 archs


class Stubborn(Strategy):
    """Proposes the same few archs forever; records what the loop tells it about duplicates."""

    name = "stubborn"

    def __init__(self, space, objective, seed, learns=False, **options):
        super().__init__(space, objective, seed, **options)
        self.duplicate_results = learns
        self.archs = [space.sample(np.random.default_rng(i)) for i in range(2)]
        self.asked, self.told, self.duplicates = 0, [], []

    def ask(self):
        self.asked += 1
        return self.archs[self.asked % 2]

    def duplicate(self, arch, known):
        self.duplicates.append((arch.arch_id, None if known is None else (known.status, known.metrics)))

    def tell(self, result):
        self.told.append(result.arch_id)

    def state_dict(self):
        return {"asked": self.asked}

    def load_state_dict(self, state):
        self.asked = state["asked"]


def exhaust(unique, space, rng, tell=True, limit=200):
    """Ask (and tell) until None; returns the arch ids and checks that None stays None."""
    ids = []
    for trial in range(limit):
        arch = unique.ask()
        if arch is None:
            assert unique.ask() is None and unique.exhausted()
            return ids
        assert space.validate(arch) == arch
        ids.append(arch.arch_id)
        if tell:
            unique.tell(fake_result(trial, arch, rng))
    raise AssertionError(f"no exhausted signal after {limit} asks of a space of {space.size()} archs")


@pytest.mark.parametrize("name", ASK_TELL)
def test_every_strategy_proposes_each_arch_once_then_none(name):
    space = GridSpace()
    unique = Unique(STRATEGIES.get(name)(space, OBJECTIVE, 3, **SMALL.get(name, {})))
    ids = exhaust(unique, space, np.random.default_rng(0))
    assert len(ids) == len(set(ids)) == 81


@pytest.mark.parametrize("name", ASK_TELL)
def test_running_trials_count_as_seen(name):
    """Asked but not told yet (parallel workers): never proposed again; six asks use up a space of six."""
    space = TinySpace()
    ids = exhaust(Unique(STRATEGIES.get(name)(space, OBJECTIVE, 0, **SMALL.get(name, {}))), space, None, tell=False)
    assert len(ids) == len(set(ids)) == 6


@pytest.mark.parametrize("learns", [False, True])
def test_a_strategy_that_repeats_itself_gets_unseen_archs_and_hears_of_its_duplicates(learns):
    space = GridSpace()
    stubborn = Stubborn(space, OBJECTIVE, 0, learns=learns)
    unique = Unique(stubborn, max_retries=5)
    rng = np.random.default_rng(1)
    first = unique.ask()                        # running: a repeat of it is told as such (known None)
    second = unique.ask()
    assert {first, second} == set(stubborn.archs)
    third = unique.ask()                        # both stubborn archs are taken: a uniform unseen one
    assert third not in stubborn.archs and len(stubborn.duplicates) == 5
    assert all(arch_id in {first.arch_id, second.arch_id} and known is None for arch_id, known in stubborn.duplicates)
    unique.tell(TrialResult(0, first, "", "ok", {"val_acc": 0.5, "flops": 2.0}))
    stubborn.duplicates.clear()
    unique.ask()
    known = ("ok", {"val_acc": 0.5, "flops": 2.0}) if learns else None
    assert (first.arch_id, known) in stubborn.duplicates
    ids = [first.arch_id, second.arch_id, third.arch_id] + exhaust(unique, space, rng)
    assert len(ids) == len(set(ids)) == 80  # the fourth ask above is in `seen` but not in ids


def test_seen_and_known_survive_the_json_checkpoint():
    space = GridSpace()
    unique = Unique(Stubborn(space, OBJECTIVE, 0, learns=True), max_retries=3)
    rng = np.random.default_rng(2)
    head = [unique.ask() for _ in range(30)]
    for trial, arch in enumerate(head):
        unique.tell(fake_result(trial, arch, rng))
    text = json.dumps(encode(unique.state_dict()))
    resumed = Unique(Stubborn(space, OBJECTIVE, 0, learns=True), max_retries=3)
    resumed.load_state_dict(decode(json.loads(text)))
    expected = exhaust(unique, space, np.random.default_rng(3))
    assert exhaust(resumed, space, np.random.default_rng(3)) == expected
    assert len(set(expected) | {a.arch_id for a in head}) == 81 == len(expected) + 30


def test_dedupe_false_passes_duplicates_through_and_options_come_from_the_strategy():
    space = TinySpace()
    unique = Unique(STRATEGIES.get("evolution")(space, OBJECTIVE, 0, population=2, dedupe=False))
    assert not unique.dedupe and unique.max_retries == 100
    ids = drive(unique, space, 30)
    assert len(ids) == 30 and len(set(ids)) <= 6
    assert Unique(STRATEGIES.get("random")(space, OBJECTIVE, 0)).max_retries == 1000


def test_tpe_is_told_the_known_result_of_a_duplicate():
    space = TinySpace()
    unique = Unique(STRATEGIES.get("tpe")(space, OBJECTIVE, 0, n_startup_trials=2))
    rng = np.random.default_rng(0)
    first: dict[str, TrialResult] = {}
    for trial in range(6):
        arch = unique.ask()
        result = fake_result(trial, arch, rng)
        first.setdefault(arch.arch_id, result)
        unique.tell(result)
    assert unique.ask() is None
    study = unique.strategy.study
    assert len(study.trials) > 6  # the sampler repeated itself on a space of six
    for frozen in study.trials:
        result = first[Arch(frozen.params).arch_id]
        stopped = result.metrics.get("stopped_early") == 1  # told PRUNED, without values (two objectives)
        assert frozen.state.name == ("FAIL" if result.status == "failed" else "PRUNED" if stopped else "COMPLETE")
        if result.status == "ok" and not stopped:
            assert frozen.values == [result.metrics["val_acc"], result.metrics["flops"]]


def test_differentiable_jobs_pass_through():
    class Job(Stubborn):
        def ask(self):
            return "a supernet job"

    assert Unique(Job(TinySpace(), OBJECTIVE, 0)).ask() == "a supernet job"


@pytest.mark.parametrize("name,option", [("tpe", "n_startup_trials"), ("evolution", "population"),
                                         ("opgfn", "init_samples")])
def test_a_budget_within_the_warm_up_is_warned_about_once(name, option, caplog):
    space = GridSpace()
    n = STRATEGIES.get(name).defaults[option]
    with caplog.at_level(logging.WARNING, logger="sparsenas"):
        unique = Unique(STRATEGIES.get(name)(space, OBJECTIVE, 0), budget=n)
        drive(unique, space, 3)
    assert len(caplog.records) == 1 and unique.warnings == [caplog.records[0].getMessage().removeprefix("sparsenas: ")]
    assert f"search.budget={n}" in unique.warnings[0] and f"{option}={n}" in unique.warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sparsenas"):
        assert Unique(STRATEGIES.get(name)(space, OBJECTIVE, 0), budget=n + 1).warnings == []
        assert Unique(STRATEGIES.get("random")(space, OBJECTIVE, 0), budget=1).warnings == []
    assert not caplog.records


def test_nsga2_warm_up_is_its_first_generation():
    tpe = STRATEGIES.get("tpe")(GridSpace(), OBJECTIVE, 0, sampler="nsga2", population_size=8)
    assert tpe.warmup() == ("population_size", 8)
    assert "population_size=8" in Unique(tpe, budget=5).warnings[0]
