"""sparsenas strategies as an Optuna sampler: `optuna.create_study(sampler=StrategySampler("opgfn"))`.

The relative search space (inferred from the study's finished trials, as Optuna's own relative samplers do;
single-value distributions left out) becomes native dims at this edge: categorical → Categorical, int →
Int (a log int is searched on its linear grid), float → Float, float with a step → Int over the grid index.
Whenever that space changes the strategy is rebuilt and told every finished trial that fits it. Before each
proposal the strategy is told, in trial order, the trials that finished since (COMPLETE → ok, or infeasible
when an Optuna constraint is > 0; PRUNED with a reported value → ok at that step's value, with `epochs` and
`stopped_early=1`, as a scheduler's stopped trial; FAIL, or PRUNED without one → failed), with the study's directions as its objectives —
so multi-objective studies work with strategies that use several objectives (opgfn's Pareto target).
Parameters outside the relative space come from an independent sampler (RandomSampler by default); once
the strategy has nothing new to propose (a small space used up), relative parameters are drawn uniformly.
"""
from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import TrialState

from ..journal import TrialResult
from ..objective import Objective
from ..schema import schema_of, validate_section
from ..space import Arch, Categorical, Float, Int, SearchSpace
from ..strategies import STRATEGIES, Unique

_CONSTRAINTS_PREFIX = "constraints"


class _Param:
    """One Optuna distribution as a native dim, with the value conversions both ways."""

    def __init__(self, dist):
        self.dist = dist
        self.n = None
        if isinstance(dist, CategoricalDistribution):
            self.dim = Categorical(dist.choices)
        elif isinstance(dist, IntDistribution):
            self.dim = Int(dist.low, dist.high, dist.step)
        elif isinstance(dist, FloatDistribution) and dist.step is not None:
            self.n = int(round((dist.high - dist.low) / dist.step))
            self.dim = Int(0, self.n)
        elif isinstance(dist, FloatDistribution):
            self.dim = Float(dist.low, dist.high, dist.log)
        else:
            raise ValueError(f"StrategySampler does not support {type(dist).__name__}")

    def to_optuna(self, value):
        if self.n is not None:
            return float(min(self.dist.high, self.dist.low + value * self.dist.step))
        return float(value) if isinstance(self.dist, FloatDistribution) else value

    def to_native(self, value):
        if self.n is not None:
            return int(round((value - self.dist.low) / self.dist.step))
        return value


class _StudySpace(SearchSpace):
    name = "optuna"

    def __init__(self, params: dict[str, _Param]):
        super().__init__()
        self.params = params

    def dims(self):
        return {k: p.dim for k, p in self.params.items()}


class StrategySampler(BaseSampler):
    """An Optuna sampler that asks a registered sparsenas strategy (`random`, `evolution`, `opgfn`, ...)."""

    def __init__(self, strategy: str = "opgfn", *, seed: int | None = None,
                 independent_sampler: BaseSampler | None = None, **options: Any):
        cls = STRATEGIES.get(strategy)
        if cls.requires:
            raise ValueError(f"strategy {strategy!r} needs a space capability an Optuna study cannot provide")
        # checked now (one-line ConfigError `strategy.KEY ...`), not at the first proposal
        self.strategy_name, self.options = strategy, validate_section("strategy", options, schema_of(cls))
        self.seed = int(np.random.SeedSequence().generate_state(1)[0] & 0x7FFFFFFF) if seed is None else seed
        self._independent = independent_sampler or optuna.samplers.RandomSampler(seed=seed)
        self._search_space = IntersectionSearchSpace()
        self._lock = threading.RLock()
        self._key = None
        self._strategy = None
        self._space: _StudySpace | None = None
        self._told: set[int] = set()
        self._rng = np.random.default_rng(self.seed)

    # -- Optuna's sampler protocol --------------------------------------------------------------------------
    def reseed_rng(self) -> None:
        self._independent.reseed_rng()
        with self._lock:
            self.seed = int(np.random.SeedSequence().generate_state(1)[0] & 0x7FFFFFFF)
            self._key = None  # rebuilt (and re-told) at the next proposal
            self._rng = np.random.default_rng(self.seed)

    def infer_relative_search_space(self, study, trial):
        return {k: d for k, d in self._search_space.calculate(study).items() if not d.single()}

    def sample_relative(self, study, trial, search_space):
        if not search_space:
            return {}
        with self._lock:
            self._sync(study, search_space)
            arch = self._strategy.ask()
            if arch is None:  # the strategy has nothing new to propose: uniform over the relative space
                arch = self._space.sample(self._rng)
            return {k: self._space.params[k].to_optuna(v) for k, v in arch.items()}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial):
        self._independent.before_trial(study, trial)

    def after_trial(self, study, trial, state, values):
        self._independent.after_trial(study, trial, state, values)

    # -- translation ----------------------------------------------------------------------------------------
    def _objective(self, study) -> Objective:
        names = [f"value{i}" for i in range(len(study.directions))]
        return Objective([n for n, d in zip(names, study.directions) if d == StudyDirection.MAXIMIZE],
                         [n for n, d in zip(names, study.directions) if d != StudyDirection.MAXIMIZE])

    def _sync(self, study, search_space) -> None:
        """(Re)build the strategy for `search_space` if it changed, then tell it the newly finished trials."""
        key = (tuple(sorted((k, repr(d)) for k, d in search_space.items())), tuple(study.directions))
        if key != self._key:
            self._key, self._told = key, set()
            self._space = _StudySpace({k: _Param(d) for k, d in sorted(search_space.items())})
            self._strategy = Unique(STRATEGIES.get(self.strategy_name)(self._space, self._objective(study), self.seed,
                                                                       **self.options))
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))
        for frozen in sorted(finished, key=lambda t: t.number):
            if frozen.number in self._told:
                continue
            self._told.add(frozen.number)
            result = self._result(frozen)
            if result is not None:
                self._strategy.tell(result)

    def _result(self, frozen) -> TrialResult | None:
        values = {}
        for k, p in self._space.params.items():
            if k not in frozen.params:
                return None
            values[k] = p.to_native(frozen.params[k])
            if not p.dim.contains(values[k]):
                return None  # from an earlier, different range of this parameter
        arch = Arch(values)
        status, metrics = "failed", {}
        if frozen.state == TrialState.COMPLETE and frozen.values is not None:
            metrics = {f"value{i}": float(v) for i, v in enumerate(frozen.values)}
            violated = [v for k, v in frozen.system_attrs.items()
                        if k.startswith(_CONSTRAINTS_PREFIX) and _violates(v)]
            status = "infeasible" if violated else "ok"
        elif frozen.state == TrialState.PRUNED and frozen.intermediate_values:  # stopped early: a partial result
            step = max(frozen.intermediate_values)
            status = "ok"
            metrics = {"value0": float(frozen.intermediate_values[step]), "epochs": float(step), "stopped_early": 1.0}
        return TrialResult(frozen.number, arch, arch.to_json(), status, metrics)


def _violates(value) -> bool:
    values = value if isinstance(value, (list, tuple)) else [value]
    return any(isinstance(v, (int, float)) and not math.isnan(v) and v > 0 for v in values)
