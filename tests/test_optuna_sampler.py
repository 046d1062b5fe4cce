"""StrategySampler against Optuna's own sampler conformance suite (optuna/testing/pytest_samplers.py),
for every wrapped strategy, plus checks that the strategy is really the one proposing."""
import optuna
import pytest
from optuna.testing.pytest_samplers import (BasicSamplerTestCase, MultiObjectiveSamplerTestCase,
                                            RelativeSamplerTestCase)

from sparsenas.integrations.optuna import StrategySampler

WRAPPED = {"random": {}, "evolution": {}, "opgfn": {"init_samples": 4, "batch_size": 2, "train_steps": 3,
                                                      "train_steps_init": 3, "replay_steps": 1, "hidden": 8}}

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


def test_opgfn_on_a_multi_objective_study_finds_the_front():
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=StrategySampler("opgfn", seed=0, **WRAPPED["opgfn"]))
    study.optimize(lambda t: (_objective(t), t.params["y"]), n_trials=20)
    assert len(study.trials) == 20 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert study.best_trials
