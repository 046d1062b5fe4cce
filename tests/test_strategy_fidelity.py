"""Strategies told a trial a scheduler stopped early (`ok`, its last epoch's metrics, `epochs`, `stopped_early=1`):
evolution never makes it a parent, TPE tells it to Optuna as PRUNED, OP-GFN does not train on it."""
import json

import numpy as np
import pytest
import scheduler_plugin  # noqa: F401 — registers the `curves` space
from optuna.trial import TrialState

from sparsenas.assemble import resolve
from sparsenas.journal import TrialResult
from sparsenas.objective import Objective
from sparsenas.search import Search
from sparsenas.space import Arch
from sparsenas.spaces.nb201 import NB201Space
from sparsenas.strategies import STRATEGIES
from sparsenas.strategies.base import full_fidelity
from sparsenas.testing import OBJECTIVE, TinySpace, check_resume

ACC = Objective(["val_acc"])


def result(trial, arch, val_acc, stopped_at=None, flops=1.0):
    metrics = {"val_acc": val_acc, "flops": flops}
    if stopped_at is not None:
        metrics |= {"epochs": float(stopped_at), "stopped_early": 1.0}
    return TrialResult(trial, arch, arch.arch_id, "ok", metrics)


def distinct_archs(space, n, seed=0):
    rng, archs = np.random.default_rng(seed), {}
    while len(archs) < n:
        arch = space.sample(rng)
        archs[arch.arch_id] = arch
    return list(archs.values())


def test_full_fidelity_reads_stopped_early():
    arch = TinySpace().sample(np.random.default_rng(0))
    assert full_fidelity(result(0, arch, 0.5)) and not full_fidelity(result(0, arch, 0.5, stopped_at=2))


def test_evolution_never_takes_a_stopped_trial_as_parent():
    """Stopped trials with a higher (partial) val_acc than every full one, told before and after the full ones:
    every sample of the population yields the best full-fidelity member."""
    space = NB201Space()
    evo = STRATEGIES.get("evolution")(space, ACC, 0, population=4, sample_size=4)
    archs = distinct_archs(space, 8)
    full, stopped = archs[:4], archs[4:]
    told = [result(0, stopped[0], 0.95, 1), result(1, stopped[1], 0.96, 2)]
    told += [result(2 + i, a, 0.1 * (i + 1)) for i, a in enumerate(full)]
    told += [result(6, stopped[2], 0.97, 1), result(7, stopped[3], 0.98, 3)]
    for r in told:
        evo.ask()
        evo.tell(r)
    assert [m[0] for m in evo.population] == [a.to_json() for a in full]  # the stopped ones pushed none out
    for _ in range(10):
        assert evo._parent() == full[3]
    child = evo.ask()  # past the warm-up: a one-dim mutation of the best full member
    assert sum(child[k] != full[3][k] for k in space.dims()) == 1


@pytest.mark.parametrize("objective,sampler", [(ACC, "tpe"), (OBJECTIVE, "tpe"), (OBJECTIVE, "nsga2")],
                         ids=["tpe", "motpe", "nsga2"])
def test_tpe_tells_a_stopped_trial_to_optuna_as_pruned(objective, sampler):
    space = NB201Space()
    tpe = STRATEGIES.get("tpe")(space, objective, 0, sampler=sampler, n_startup_trials=3, population_size=2)
    for trial in range(6):
        arch = tpe.ask()
        tpe.tell(result(trial, arch, 0.1 * trial, stopped_at=2 if trial % 2 else None, flops=float(trial)))
    states = [t.state for t in tpe.study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED] * 3
    pruned = tpe.study.get_trials()[3]
    if len(objective.names) == 1:  # the partial value, reported at the epoch it was stopped at
        assert pruned.intermediate_values == {2: pytest.approx(0.3)} and pruned.value == pytest.approx(0.3)
    else:  # Optuna's Trial.report takes one objective: nothing reported
        assert pruned.intermediate_values == {} and pruned.values is None
    assert space.validate(tpe.ask()) is not None  # TPE / MOTPE / NSGA-II still propose past the pruned trials
    assert tpe.study.get_trials()[-1].state == TrialState.RUNNING


def test_tpe_pruned_trials_survive_resume():
    space = NB201Space()

    def make(seed):
        return STRATEGIES.get("tpe")(space, ACC, seed, n_startup_trials=2)

    check_resume(make, space, 6)  # check_resume's results include stopped trials (sparsenas.testing)


def test_opgfn_does_not_train_on_a_stopped_trial_and_never_proposes_it_again():
    space = TinySpace()
    gfn = STRATEGIES.get("opgfn")(space, ACC, 0, init_samples=2, batch_size=2, train_steps=2, train_steps_init=2,
                                  replay_steps=1, hidden=8)
    archs = distinct_archs(space, 6)
    for trial, arch in enumerate(archs[:4]):
        gfn.tell(result(trial, arch, 0.9 if trial % 2 else 0.1, stopped_at=1 if trial % 2 else None))
    assert [gfn.enc.arch(v) for v in gfn.hist_values] == [archs[0], archs[2]]
    assert gfn.partial == [archs[1].arch_id, archs[3].arch_id]
    gfn.asked = 2  # past the warm-up: the next asks come from trained proposals
    assert {gfn.ask().arch_id, gfn.ask().arch_id} == {archs[4].arch_id, archs[5].arch_id}
    state = gfn.state_dict()
    again = STRATEGIES.get("opgfn")(space, ACC, 1, **gfn.options)
    again.load_state_dict(state)
    assert again.partial == gfn.partial


@pytest.mark.parametrize("name, options", [
    ("tpe", {"n_startup_trials": 3}), ("evolution", {"population": 4, "sample_size": 2}),
    ("opgfn", {"init_samples": 3, "batch_size": 2, "train_steps": 2, "train_steps_init": 2, "hidden": 8})])
def test_a_scheduled_search_tells_each_strategy_which_trials_were_stopped(tmp_path, name, options):
    """Through the search loop with ASHA (the `curves` space of tests/scheduler_plugin.py): the stopped trials of
    the journal are exactly those the strategy holds as partial-fidelity."""
    config = resolve([{"space": {"name": "curves"}, "strategy": {"name": name, **options},
                       "search": {"budget": 12, "seed": 7}, "train": {"epochs": 9}, "scheduler": {"name": "asha"}}])
    search = Search(config, tmp_path / "run", progress=False)
    search.run()
    recs = [json.loads(line) for line in (tmp_path / "run" / "trials.jsonl").read_text().splitlines()]
    stopped = {r["arch_id"] for r in recs if r["metrics"].get("stopped_early")}
    full = {r["arch_id"] for r in recs} - stopped
    assert stopped and full
    strategy = search.strategy.strategy
    if name == "tpe":  # duplicates of an arch are told its known result: the same state
        pruned = {Arch(t.params).arch_id for t in strategy.study.get_trials() if t.state == TrialState.PRUNED}
        assert pruned == stopped
    elif name == "evolution":
        assert {Arch.from_json(m[0]).arch_id for m in strategy.population} <= full
    else:
        assert set(strategy.partial) == stopped
        assert {strategy.enc.arch(v).arch_id for v in strategy.hist_values} == full
