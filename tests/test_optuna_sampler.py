"""StrategySampler against Optuna's own sampler conformance suite (optuna/testing/pytest_samplers.py),
for every wrapped strategy, plus checks that the strategy is really the one proposing: every parameter after
the first trial comes from its relative path, and it searches better than Optuna's RandomSampler."""
import numpy as np
import optuna
import pytest
from optuna.testing.pytest_samplers import (BasicSamplerTestCase, MultiObjectiveSamplerTestCase,
                                            RelativeSamplerTestCase)

from sparsenas.integrations.optuna import StrategySampler
from sparsenas.journal import TrialResult
from sparsenas.space import Arch
from sparsenas.strategies import STRATEGIES
from sparsenas.testing import PROBLEMS

# every strategy an Optuna study can drive (fast settings where the defaults need more trials than a case has)
FAST = {"opgfn": {"init_samples": 4, "batch_size": 2, "train_steps": 3, "train_steps_init": 3, "replay_steps": 1,
                  "hidden": 8},
        "tpe": {"n_startup_trials": 4}}
WRAPPED = {name: FAST.get(name, {}) for name in STRATEGIES.names() if not STRATEGIES.get(name).requires}

optuna.logging.set_verbosity(optuna.logging.WARNING)


class _Wrapped:
    @pytest.fixture(params=sorted(WRAPPED))
    def sampler(self, request):
        return lambda: StrategySampler(request.param, seed=0, **WRAPPED[request.param])


class TestBasic(_Wrapped, BasicSamplerTestCase):
    pass


class TestRelative(_Wrapped, RelativeSamplerTestCase):
    pass


class TestMultiObjective(_Wrapped, MultiObjectiveSamplerTestCase):
    pass


def _objective(trial):
    x = trial.suggest_categorical("x", ["a", "b", "c", "d"])
    y = trial.suggest_int("y", 0, 6)
    z = trial.suggest_float("z", 0.0, 1.0, step=0.25)
    return {"a": 0, "b": 1, "c": 3, "d": 2}[x] + y + z


@pytest.mark.parametrize("name", sorted(WRAPPED))
def test_strategy_proposes_after_the_first_trial_and_is_deterministic(name):
    def run(seed):
        study = optuna.create_study(direction="maximize", sampler=StrategySampler(name, seed=seed, **WRAPPED[name]))
        study.optimize(_objective, n_trials=25)
        return [t.params for t in study.trials]

    a, b = run(1), run(1)
    assert a == b and a != run(2)
    # the strategy never proposes an arch twice, so after the first trial every trial is new
    keys = [tuple(sorted(p.items())) for p in a]
    assert len(set(keys[1:])) == len(keys) - 1


class Spy(optuna.samplers.RandomSampler):
    """The independent sampler, recording the trials it sampled a parameter for."""

    def __init__(self):
        super().__init__(seed=0)
        self.trials = []

    def sample_independent(self, study, trial, param_name, param_distribution):
        self.trials.append(trial.number)
        return super().sample_independent(study, trial, param_name, param_distribution)


@pytest.mark.parametrize("name", sorted(WRAPPED))
def test_every_parameter_after_the_first_trial_comes_from_the_strategy(name):
    """Optuna's suite mostly exercises the independent fallback; here the relative path proposes every trial but
    the first (whose relative space is still empty), on every kind of distribution."""
    spy = Spy()
    sampler = StrategySampler(name, seed=0, independent_sampler=spy, **WRAPPED[name])
    relative = []
    original = sampler.sample_relative
    sampler.sample_relative = lambda *a: relative.append(original(*a)) or relative[-1]

    def objective(trial):
        return (trial.suggest_categorical("c", ["a", "b", "c"]) == "b") + trial.suggest_int("i", 0, 9) / 9 \
            + trial.suggest_float("f", 0.0, 1.0, step=0.1) + trial.suggest_float("g", 1e-3, 1.0, log=True)

    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=12)
    assert set(spy.trials) == {0}
    assert [t.params for t in study.trials[1:]] == [r for r in relative if r]
    assert len(relative[1]) == 4


def _results(study):
    """The study's trials as the search loop's results (params → Arch, the metrics from the user attributes;
    infeasible when a constraint is > 0)."""
    out = []
    for t in study.trials:
        broken = any(v > 0 for k, v in t.system_attrs.items() if k.startswith("constraints:"))
        out.append(TrialResult(t.number, Arch(t.params), "", "infeasible" if broken else "ok", dict(t.user_attrs)))
    return out


def _study_scores(problem, make_sampler, seeds, n_trials):
    """Per seed, `problem.score` of an Optuna study of `problem` (every metric of a trial as a user attribute;
    its objectives as the study's values, a cheap constraint through `trial.set_constraint`)."""
    names = problem.objective.names
    directions = ["maximize" if s > 0 else "minimize" for s in problem.objective.signs]
    scores, feasible = [], []  # feasible: the share of feasible trials in the second half
    for seed in seeds:
        def objective(trial):
            arch = Arch({k: trial.suggest_categorical(k, list(d.choices)) for k, d in problem.space.dims().items()})
            metrics = problem.metrics(arch)
            for k, v in metrics.items():
                trial.set_user_attr(k, v)
            for k, (low, high) in problem.objective.constraints.items():
                trial.set_constraint(f"{k}<=high", metrics[k] - high)
            return tuple(metrics[k] for k in names)

        study = optuna.create_study(directions=directions, sampler=make_sampler(seed))
        study.optimize(objective, n_trials=n_trials)
        results = _results(study)
        scores.append(problem.score(results))
        feasible.append(np.mean([r.status == "ok" for r in results[n_trials // 2:]]))
    return np.array(scores), np.array(feasible)


# (options, seeds): faster opgfn settings, more seeds where runs are cheap
QUALITY = {"evolution": ({}, 20), "tpe": ({}, 10), "opgfn": ({"init_samples": 20, "train_steps_init": 100,
                                                               "train_steps": 30, "replay_steps": 5, "hidden": 32,
                                                               "max_retries": 2}, 10)}


def _beats_random_sampler(problem, name, n_trials=100):
    from scipy.stats import mannwhitneyu

    options, seeds = QUALITY[name]
    ours = _study_scores(problem, lambda s: StrategySampler(name, seed=s, **options), range(seeds), n_trials)
    rand = _study_scores(problem, lambda s: optuna.samplers.RandomSampler(seed=s), range(seeds), n_trials)
    checked = zip(ours, rand) if problem.objective.constraints else [(ours[0], rand[0])]
    for a, b in checked:  # the scores; under constraints also the share of feasible late trials
        assert mannwhitneyu(a, b, alternative="greater").pvalue < 0.01, (a, b)
    return ours, rand


@pytest.mark.parametrize("name", sorted(n for n in WRAPPED if n != "random"))
def test_strategy_in_an_optuna_study_beats_optunas_random_sampler(name):
    assert sorted(QUALITY) == sorted(n for n in WRAPPED if n != "random"), "give a new strategy its QUALITY settings"
    (ours, _), (rand, _) = _beats_random_sampler(PROBLEMS["additive"](), name)
    assert ours.mean() - rand.mean() > 0.25 * (PROBLEMS["additive"]().best() - rand.mean())


def test_a_constrained_study_tells_the_strategy_which_trials_are_infeasible():
    """Through `trial.set_constraint`: later proposals are feasible more often than Optuna's RandomSampler's, and the
    best feasible value is higher."""
    _beats_random_sampler(PROBLEMS["constrained"](), "evolution")


def test_opgfn_on_a_multi_objective_study_finds_the_front():
    """A larger hypervolume than Optuna's RandomSampler, and `best_trials` is exactly the non-dominated trials."""
    problem = PROBLEMS["two_objectives"]()
    (ours, _), (rand, _) = _beats_random_sampler(problem, "opgfn")
    assert ours.mean() - rand.mean() > 0.25 * (problem.best() - rand.mean()), (ours, rand, problem.best())
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=StrategySampler("opgfn", seed=0, **WRAPPED["opgfn"]))
    study.optimize(lambda t: (_objective(t), t.params["y"]), n_trials=20)
    points = {t.number: (t.values[0], -t.values[1]) for t in study.trials}
    front = {n for n, p in points.items() if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points.values())}
    assert {t.number for t in study.best_trials} == front and len(study.trials) == 20


def test_a_pruned_trial_reaches_the_strategy_as_stopped_early_at_its_last_reported_value():
    """An Optuna pruner's stop is a scheduler's: ok at the last intermediate value, with `epochs` and
    `stopped_early=1` (a pruned trial that reported nothing stays failed)."""
    sampler = StrategySampler("random", seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial):
        value = _objective(trial)
        if trial.number == 2:
            trial.report(0.5, 1)
            trial.report(0.75, 2)
            raise optuna.TrialPruned()
        if trial.number == 3:
            raise optuna.TrialPruned()
        return value
    study.optimize(objective, n_trials=5)
    stopped, silent = (sampler._result(study.trials[n]) for n in (2, 3))
    assert stopped.status == "ok" and stopped.metrics == {"value0": 0.75, "epochs": 2.0, "stopped_early": 1.0}
    assert silent.status == "failed" and silent.metrics == {}
