"""The median stopping rule (Golovin et al. 2017, "Google Vizier", §3.2.2; Ray Tune's MedianStoppingRule):
after `grace_period` epochs, a trial stops when its best value so far is worse than the median of the other
trials' running averages up to the same epoch, once `min_samples` others got that far.

With several metrics (or one), "worse than the median" reads: dominated by more than half of the others'
running-average points, where the trial's own point is its best so far per coordinate. With one metric that is
Vizier's rule (for an even count of others, the cut is between the two middle values rather than their mean).
Cheap metrics are constant over epochs, so they compare as they are.
"""
from __future__ import annotations

from typing import Any

from ..objective import dominates
from ..schema import count
from .base import COMMON, Point, Scheduler, register_scheduler


@register_scheduler("median")
class MedianScheduler(Scheduler):
    options_schema = {**COMMON, "grace_period": count(1), "min_samples": count(3)}

    def check(self) -> None:
        super().check()
        self.history: dict[int, list[Point]] = {}  # trial -> its point after epoch 1, 2, ...

    def decide(self, trial: int, epochs: int, point: Point) -> bool:
        own = self.history.setdefault(trial, [])
        del own[epochs - 1:]  # a re-run reports its epochs again
        own.extend([point] * (epochs - len(own)))  # (an epoch never skips in practice)
        if epochs < self.options["grace_period"]:
            return False
        best = tuple(max(p[i] for p in own) for i in range(len(point)))
        others = [running_mean(h[:epochs]) for t, h in self.history.items() if t != trial and len(h) >= epochs]
        if len(others) < self.options["min_samples"]:
            return False
        return 2 * sum(dominates(o, best) for o in others) > len(others)

    def milestones(self, trial: int) -> list[int]:
        return list(range(self.options["grace_period"], self.max_epochs))

    def state_dict(self) -> dict[str, Any]:
        return {"history": {str(t): [list(p) for p in h] for t, h in self.history.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = {int(t): [tuple(float(v) for v in p) for p in h] for t, h in state["history"].items()}


def running_mean(points: list[Point]) -> Point:
    return tuple(sum(p[i] for p in points) / len(points) for i in range(len(points[0])))
