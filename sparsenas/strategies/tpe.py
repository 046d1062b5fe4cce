"""Optuna's samplers (TPE; NSGA-II for multi-objective) driven through ask/tell over the native dims.

The dims become Optuna distributions only here, at the edge (`to_distributions`). Every objective of the run
is an Optuna objective with its own direction (Optuna's multi-objective TPE, or NSGA-II with
`sampler: nsga2`). The objective's constraints are passed as Optuna constraints (`trial.set_constraint`,
value <= 0 means satisfied): an `infeasible` trial — rejected on cheap metrics before training, so without
objective values — is told COMPLETE with the worst value (±inf) and its constraint violation, so that the
sampler ranks it behind every feasible trial; a `failed` trial is told FAIL (ignored by the samplers).

Fidelity: a trial a scheduler stopped early (`stopped_early=1`) is told PRUNED, as if an Optuna pruner had
stopped it, so the samplers treat it as they treat pruned trials. With one objective its value at its last epoch
is first reported as its intermediate value at step `epochs` (`Trial.report`): TPE ranks pruned trials after the
complete ones, the later-stopped first, then by that value. With several objectives nothing is reported (Optuna's
`Trial.report` takes one objective): MOTPE ranks pruned trials after every complete one, NSGA-II leaves them out
of its populations.

Duplicates (`dedupe: true`, the default, applied by the loop's de-duplication `Unique`): a proposal of an arch
already evaluated in this run is told the known result at once (`duplicate`) and the sampler is asked again (up
to `max_retries` times, then a uniform unseen arch is evaluated and told as a trial the sampler did not
propose), so no budget is spent on re-evaluations.

Defaults are Optuna's (`multivariate: null` = Optuna's choice: multivariate TPE for one objective, independent
for several; `n_startup_trials` 10, `n_ei_candidates` 24) except two: `constant_liar: true` (Optuna: false), so
that trials asked while others run (parallel workers) are not all alike, and NSGA-II's `population_size` 20
(Optuna: 50), so that the first generation fits search budgets of ~100 evaluations.

Optuna's public API only (optuna >= 5.0, the first with `Trial.set_constraint`): the study lives in an
`InMemoryStorage` of our own, so a trial asked earlier is found by number through the storage's public methods.
Each ask uses a fresh sampler seeded from (seed, trial number): Optuna's samplers keep no state but their RNGs
and what the storage holds, so the trials and the study's system attributes (where NSGA-II caches each
generation's parents, in an order that differs from a recomputed one) are the strategy's state, and resume is
exact — `state_dict` holds them as plain data; loading rebuilds the study from them (no pickle: a checkpoint is
input).
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ..errors import ConfigError
from ..schema import OPT_BOOL, Field, count, one_of
from ..space import Arch, Categorical, Float, Int
from .base import Strategy, full_fidelity, register_strategy
from .dedupe import dedupe_fields

SAMPLERS = ("tpe", "nsga2")
STUDY = "sparsenas"


def to_distributions(dims) -> dict:
    """The native dims as Optuna distributions."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for label, dim in dims.items():
        if isinstance(dim, Categorical):
            out[label] = CategoricalDistribution(list(dim.choices))
        elif isinstance(dim, Int):
            out[label] = IntDistribution(dim.low, dim.high, step=dim.step)
        elif isinstance(dim, Float):
            out[label] = FloatDistribution(dim.low, dim.high, log=dim.log)
        else:
            raise ConfigError(f"dim {label} of type {type(dim).__name__} has no Optuna distribution")
    return out


def constraint_values(constraints: dict, metrics: dict) -> dict[str, float]:
    """{name: violation}; <= 0 is satisfied (Optuna's convention). A missing metric counts as satisfied."""
    out = {}
    for name, (low, high) in constraints.items():
        value = metrics.get(name)
        if low is not None:
            out[f"{name}>=low"] = 0.0 if value is None else float(low - value)
        if high is not None:
            out[f"{name}<=high"] = 0.0 if value is None else float(value - high)
    return out


@register_strategy("tpe")
class TPE(Strategy):
    # dedupe / max_retries: read by the loop's de-duplication (`Unique`)
    options_schema = {"sampler": one_of("tpe", SAMPLERS), "n_startup_trials": count(10, 0),
                      "n_ei_candidates": count(24), "multivariate": Field(None, OPT_BOOL),
                      "constant_liar": Field(True, (bool,)), "population_size": count(20, 2), **dedupe_fields()}
    duplicate_results = True

    def __init__(self, space, objective, seed, **options):
        super().__init__(space, objective, seed, **options)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.distributions = to_distributions(space.dims())
        self.directions = ["maximize"] * len(objective.maximize) + ["minimize"] * len(objective.minimize)
        self.study = self._new_study()
        self.pending: dict[str, list[int]] = {}  # arch_id → Optuna trial numbers asked, not told

    def _new_sampler(self, number: int):
        """The sampler that proposes trial `number`, seeded from (seed, number)."""
        import optuna

        o = self.options
        seed = int(np.random.SeedSequence([self.seed, number]).generate_state(1)[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-feature warnings
            if o["sampler"] == "nsga2":
                return optuna.samplers.NSGAIISampler(population_size=o["population_size"], seed=seed)
            return optuna.samplers.TPESampler(n_startup_trials=o["n_startup_trials"],
                                              n_ei_candidates=o["n_ei_candidates"], multivariate=o["multivariate"],
                                              constant_liar=o["constant_liar"], seed=seed)

    def _new_study(self):
        import optuna

        self.storage = optuna.storages.InMemoryStorage()
        study = optuna.create_study(storage=self.storage, study_name=STUDY, directions=self.directions,
                                    sampler=self._new_sampler(0))
        self.study_id = self.storage.get_study_id_from_name(STUDY)
        return study

    def _ask(self):
        """Optuna's next trial, proposed by a sampler seeded for its number."""
        self.study.sampler = self._new_sampler(len(self.study.get_trials(deepcopy=False)))
        return self.study.ask(self.distributions)

    # -- ask ----------------------------------------------------------------------------------------------
    def ask(self) -> Arch:
        trial = self._ask()
        arch = Arch(trial.params)
        self.pending.setdefault(arch.arch_id, []).append(trial.number)
        return arch

    def duplicate(self, arch, known) -> None:
        """The Optuna trial just asked for `arch` gets the arch's known outcome (FAIL while it is running)."""
        numbers = self.pending[arch.arch_id]
        number = numbers.pop()
        if not numbers:
            del self.pending[arch.arch_id]
        self._tell_optuna(number, *(("fail", None, {}) if known is None else self._outcome(known)))

    def warmup(self):
        if self.options["sampler"] == "nsga2":
            return "population_size", self.options["population_size"]
        return "n_startup_trials", self.options["n_startup_trials"]

    # -- tell ---------------------------------------------------------------------------------------------
    def _outcome(self, result) -> tuple:
        cons = constraint_values(self.objective.constraints, result.metrics)
        if result.status == "ok":
            values = [float(result.metrics.get(n, math.nan)) for n in self.objective.names]
            if not full_fidelity(result):
                return "pruned", (int(result.metrics.get("epochs", 0)), values), cons
            if all(math.isfinite(v) for v in values):
                return "complete", values, cons
            return "fail", None, {}
        if result.status == "infeasible":
            if not cons or max(cons.values()) <= 0:  # violated a constraint we cannot see: make it count
                cons = {**cons, "infeasible": 1.0}
            return "complete", [-s * math.inf for s in self.objective.signs], cons
        return "fail", None, {}

    def _tell_optuna(self, number: int, state: str, values, constraints: dict) -> None:
        from optuna.trial import Trial, TrialState

        trial = Trial(self.study, self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number))
        for key, value in constraints.items():
            trial.set_constraint(key, value)
        if state == "complete":
            self.study.tell(number, values)
        elif state == "pruned":  # values: (epochs, objective values at that epoch)
            epochs, last = values
            if len(last) == 1 and math.isfinite(last[0]):
                trial.report(last[0], epochs)
            self.study.tell(number, state=TrialState.PRUNED)
        else:
            self.study.tell(number, state=TrialState.FAIL)

    def tell(self, result) -> None:
        outcome = self._outcome(result)
        numbers = self.pending.get(result.arch_id)
        if numbers:
            number = numbers.pop(0)
            if not numbers:
                del self.pending[result.arch_id]
            self._tell_optuna(number, *outcome)
        else:  # a result the sampler did not propose: add it as a finished trial
            self.study.enqueue_trial(dict(result.arch))
            self._tell_optuna(self._ask().number, *outcome)

    # -- state --------------------------------------------------------------------------------------------
    def state_dict(self):
        return {"trials": [trial_to_dict(t) for t in self.study.get_trials(deepcopy=False)],
                "study_attrs": self.storage.get_study_system_attrs(self.study_id),
                "pending": {k: list(v) for k, v in self.pending.items()}}

    def load_state_dict(self, state):
        self.study = self._new_study()
        self.study.add_trials([trial_from_dict(t) for t in state["trials"]])
        for key, value in state.get("study_attrs", {}).items():  # absent from checkpoints of before 2026-11-27
            self.storage.set_study_system_attr(self.study_id, key, value)
        self.pending = {k: list(v) for k, v in state["pending"].items()}


def trial_to_dict(trial) -> dict:
    """An Optuna FrozenTrial as plain data (Optuna's own JSON form of its distributions)."""
    from optuna.distributions import distribution_to_json

    return {"state": trial.state.name, "values": trial.values, "params": trial.params,
            "distributions": {k: distribution_to_json(d) for k, d in trial.distributions.items()},
            "user_attrs": trial.user_attrs, "system_attrs": trial.system_attrs,
            "intermediate_values": {str(k): v for k, v in trial.intermediate_values.items()}}


def trial_from_dict(data: dict):
    from optuna.distributions import json_to_distribution
    from optuna.trial import TrialState, create_trial

    return create_trial(state=TrialState[data["state"]], values=data["values"], params=data["params"],
                        distributions={k: json_to_distribution(d) for k, d in data["distributions"].items()},
                        user_attrs=data["user_attrs"], system_attrs=data["system_attrs"],
                        intermediate_values={int(k): v for k, v in data["intermediate_values"].items()})
