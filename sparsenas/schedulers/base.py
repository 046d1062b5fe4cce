"""The scheduler protocol: when to stop a running trial, from its per-epoch reports (Ray Tune's TrialScheduler;
the strategy, Tune's Searcher, decides what to run).

A scheduler sees every epoch a trained trial finishes, as `report(trial, epochs, metrics) -> stop`: `epochs`
done so far (1-based) and the metrics of that epoch (the cheap ones, known before training, merged in). It
judges the trial's *point*: its `metrics` (the objectives by default, or training metrics of known direction,
`TRAINING_METRICS`, as Ray Tune's schedulers take a metric of their own), each signed so that higher is better, so
one scheduler serves one objective or several — with several, "better" is Pareto dominance and a trial's rank is
its non-dominated-sorting front (`fronts`). Decisions depend only on the reports so far and the run seed, so the
same reports in the same order give the same decisions; `state_dict`/`load_state_dict` (plain JSON data) make
a resumed search continue with the rungs as they were.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

from ..errors import ConfigError
from ..objective import Objective, dominates
from ..registry import Registry
from ..schema import OPT_INT, Field, declare_defaults, positive, schema_of, validate_section

Point = tuple[float, ...]
TRAINING_METRICS = {"val_acc": 1, "train_loss": -1}  # judged in this direction when not an objective


def fronts(points: dict[int, Point]) -> dict[int, int]:
    """{key: its non-dominated-sorting front} (0 = non-dominated; front k is non-dominated once fronts < k are
    removed). With one coordinate, the rank among distinct values (ties share a front)."""
    left, rank, out = dict(points), 0, {}
    while left:
        front = [k for k, p in left.items() if not any(dominates(q, p) for q in left.values())]
        for k in front:
            out[k] = rank
            del left[k]
        rank += 1
    return out


def ahead(points: dict[int, Point], key: int) -> int:
    """How many of `points` are in a better front than `points[key]`."""
    rank = fronts(points)
    return sum(r < rank[key] for r in rank.values())


COMMON = {  # every scheduler's options
    "max_epochs": Field(None, OPT_INT, positive, "must be >= 1"),  # default: train.epochs
    "metrics": Field(None, (list, str, type(None))),  # default: the objectives
}


class Scheduler:
    """Decides after each epoch of a trial whether it goes on. Options are declared like a strategy's
    (`options_schema`, with COMMON's; checked by `__init__` as `scheduler.KEY ...` one-line ConfigErrors); `check`
    makes a plug-in's cross-checks. `metrics`: what is judged (default the objectives, in their directions; or
    training metrics, `TRAINING_METRICS`); `max_epochs` (default `train_epochs`): the most epochs a trial trains
    (a trial reaching it earlier than the end of its training is stopped); `seed`: the run seed, for the plug-ins
    that draw (hyperband's brackets)."""

    name: ClassVar[str] = ""
    options_schema: ClassVar[dict[str, Field]] = COMMON
    defaults: ClassVar[dict[str, Any]] = {}
    active: ClassVar[bool] = True  # False: never stops, and trials are not asked to report

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        declare_defaults(cls)

    def __init__(self, objective: Objective, train_epochs: int, seed: int = 0, **options: Any):
        self.options = validate_section("scheduler", options, schema_of(type(self)))
        metrics = self.options["metrics"] or objective.names
        self.metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        signs = TRAINING_METRICS | dict(zip(objective.names, objective.signs))
        unknown = [m for m in self.metrics if m not in signs]
        if unknown:
            raise ConfigError(f"scheduler.metrics: {unknown[0]!r} is not an objective (objectives: "
                              f"{', '.join(objective.names)}) nor a training metric ({', '.join(TRAINING_METRICS)})")
        self.signs = [signs[m] for m in self.metrics]
        self.max_epochs, self.seed = self.options["max_epochs"] or train_epochs, int(seed)
        if self.max_epochs > train_epochs:
            raise ConfigError(f"scheduler.max_epochs={self.max_epochs} exceeds train.epochs={train_epochs}")
        self.check()

    def check(self) -> None:
        """ConfigError (one line) for options that do not fit together or with `max_epochs`; a plug-in sets up
        its empty state here."""
        grace = self.options.get("grace_period")
        if grace is not None and grace > self.max_epochs:
            raise ConfigError(f"scheduler.grace_period={grace} exceeds scheduler.max_epochs={self.max_epochs}")

    def point(self, metrics: dict[str, float]) -> Point | None:
        """The judged metrics signed so that higher is better; None when one is missing or not finite."""
        try:
            values = tuple(s * float(metrics[n]) for n, s in zip(self.metrics, self.signs))
        except (KeyError, TypeError, ValueError):
            return None
        return values if all(math.isfinite(v) for v in values) else None

    def report(self, trial: int, epochs: int, metrics: dict[str, float]) -> bool:
        """Record that `trial` finished epoch `epochs` (1-based) with `metrics`; True: stop it now. A trial
        reporting an epoch again (re-run after a crash or on resume) replaces its earlier report."""
        point = self.point(metrics)
        stop = False if point is None else self.decide(trial, epochs, point)
        return stop or epochs >= self.max_epochs

    def decide(self, trial: int, epochs: int, point: Point) -> bool:
        raise NotImplementedError

    def milestones(self, trial: int) -> list[int]:
        """The epochs after which `trial` may be stopped (before max_epochs), first to last."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


SCHEDULERS: Registry[type[Scheduler]] = Registry("scheduler")
register_scheduler = SCHEDULERS.register


def rung_keys(state: dict) -> dict[int, dict[int, Point]]:
    """Rungs read back from `state_dict` data: JSON keeps neither int keys nor tuples."""
    return {int(m): {int(t): tuple(float(v) for v in p) for t, p in rung.items()} for m, rung in state.items()}


def rung_data(rungs: dict[int, dict[int, Point]]) -> dict:
    return {str(m): {str(t): list(p) for t, p in rung.items()} for m, rung in rungs.items()}


@register_scheduler("none")
class NoScheduler(Scheduler):
    """Every trial trains to the end (the default)."""

    active = False

    def report(self, trial: int, epochs: int, metrics: dict[str, float]) -> bool:
        return False

    def milestones(self, trial: int) -> list[int]:
        return []
