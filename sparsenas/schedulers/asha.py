"""ASHA (Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning"), and MO-ASHA's rule for several
objectives (Schmucker et al. 2021, "Multi-objective Asynchronous Successive Halving").

Rungs at grace_period·η^k epochs (k = 0, 1, … while below max_epochs; η = reduction_factor). A trial reaching a
rung is recorded there and goes on only if it is among the top 1/η of the trials recorded at that rung so far
(asynchronous: judged against those that got there first, as Ray Tune's ASHAScheduler): it stops when at least
⌈n/η⌉ of the n recorded points are in a better front — with one objective, strictly better values. MO-ASHA
breaks ties inside the front that straddles the cut with an ε-net; here that whole front goes on (a simplification
that stops no trial MO-ASHA would keep). The ε-net was built and measured (338aef6, reverted): on
benchmarks/early_stopping.py at 50% of the no-stopping epochs, two-objective asha kept 84.9% (dass) and 85.8% (model
space) of the no-stopping hypervolume with it, 87.3% and 92.4% with the whole front (its epochs ratio 0.47 vs 0.45):
with a few trials per rung, the ε-net stops members of the rung's front.
"""
from __future__ import annotations

import math
from typing import Any

from ..schema import NUM, Field, count
from .base import COMMON, Point, Scheduler, ahead, register_scheduler, rung_data, rung_keys


def milestones(grace: int, eta: float, max_epochs: int) -> list[int]:
    """grace·η^k rounded, for k = 0, 1, … while below max_epochs, without repeats."""
    out, k = [], 0
    while (m := int(round(grace * eta ** k))) < max_epochs:
        if m not in out:
            out.append(m)
        k += 1
    return out


ASHA_OPTIONS = {
    **COMMON,
    "grace_period": count(1),
    "reduction_factor": Field(3.0, NUM, lambda v: v > 1, "must be > 1"),
}


@register_scheduler("asha")
class AshaScheduler(Scheduler):
    options_schema = ASHA_OPTIONS

    def check(self) -> None:
        super().check()
        self.rungs: dict[int, dict[int, Point]] = {
            m: {} for m in milestones(self.options["grace_period"], self.options["reduction_factor"], self.max_epochs)}

    def decide(self, trial: int, epochs: int, point: Point) -> bool:
        return promote_or_stop(self.rungs, trial, epochs, point, self.options["reduction_factor"])

    def milestones(self, trial: int) -> list[int]:
        return sorted(self.rungs)

    def state_dict(self) -> dict[str, Any]:
        return {"rungs": rung_data(self.rungs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rungs = rung_keys(state["rungs"])


def promote_or_stop(rungs: dict[int, dict[int, Point]], trial: int, epochs: int, point: Point, eta: float) -> bool:
    """Record `point` at the rung of `epochs` (if it is one); True when ⌈n/η⌉ of its n points are ahead of it."""
    if epochs not in rungs:
        return False
    rung = rungs[epochs]
    rung[trial] = point
    return ahead(rung, trial) >= math.ceil(len(rung) / eta)
