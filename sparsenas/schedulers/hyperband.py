"""Asynchronous Hyperband (Li et al. 2020, §3.2): several ASHA brackets, bracket b with rungs from
grace_period·η^b, so that some trials get more epochs before their first cut. Each trial is drawn into one bracket
(from the run seed and the trial number) with probability proportional to Hyperband's number of configurations
of that bracket (Li et al. 2018, Alg. 1: n = ⌈(s_max+1)/(s+1)·η^s⌉ for the bracket whose first rung is R·η^-s),
so the most aggressive bracket gets the most trials. Within a bracket the rule is ASHA's (asha.py).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .asha import ASHA_OPTIONS, milestones, promote_or_stop
from .base import Point, Scheduler, register_scheduler, rung_data, rung_keys


@register_scheduler("hyperband")
class HyperbandScheduler(Scheduler):
    options_schema = ASHA_OPTIONS

    def check(self) -> None:
        super().check()
        grace, eta = self.options["grace_period"], self.options["reduction_factor"]
        s_max = int(math.floor(math.log(self.max_epochs / grace, eta) + 1e-9))
        self.brackets = [{m: {} for m in milestones(int(round(grace * eta ** b)), eta, self.max_epochs)}
                         for b in range(s_max + 1)]
        sizes = np.array([math.ceil((s_max + 1) / (s_max - b + 1) * eta ** (s_max - b)) for b in range(s_max + 1)])
        self.weights = sizes / sizes.sum()
        self.bracket_of: dict[int, int] = {}

    def bracket(self, trial: int) -> int:
        if trial not in self.bracket_of:
            rng = np.random.default_rng([self.seed, trial])
            self.bracket_of[trial] = int(rng.choice(len(self.brackets), p=self.weights))
        return self.bracket_of[trial]

    def decide(self, trial: int, epochs: int, point: Point) -> bool:
        return promote_or_stop(self.brackets[self.bracket(trial)], trial, epochs, point,
                               self.options["reduction_factor"])

    def milestones(self, trial: int) -> list[int]:
        return sorted(self.brackets[self.bracket(trial)])

    def state_dict(self) -> dict[str, Any]:
        return {"brackets": [rung_data(b) for b in self.brackets],
                "bracket_of": {str(t): b for t, b in self.bracket_of.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.brackets = [rung_keys(b) for b in state["brackets"]]
        self.bracket_of = {int(t): int(b) for t, b in state["bracket_of"].items()}
