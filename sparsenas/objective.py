"""Objectives (directions), constraints on cheap metrics, scalarisation, Pareto front."""
from __future__ import annotations

import math
from typing import Sequence

from .journal import TrialResult


class Objective:
    """`maximize` and `minimize` metric names, and `constraints` {metric: [low, high]} (null = open).

    Single-objective strategies use `scalar` (the first objective, higher is better); multi-objective
    ones use `values` (every objective, each turned so that higher is better)."""

    def __init__(self, maximize: Sequence[str] = ("val_acc",), minimize: Sequence[str] = (),
                 constraints: dict | None = None):
        self.maximize, self.minimize = list(maximize), list(minimize)
        self.names = self.maximize + self.minimize
        self.signs = [1.0] * len(self.maximize) + [-1.0] * len(self.minimize)
        self.constraints = dict(constraints or {})

    @classmethod
    def from_config(cls, cfg: dict) -> "Objective":
        return cls(cfg["maximize"], cfg["minimize"], cfg["constraints"])

    @property
    def multi(self) -> bool:
        return len(self.names) > 1

    def violations(self, metrics: dict[str, float]) -> list[str]:
        """Constraints that `metrics` break (a constrained metric that is missing is not judged yet)."""
        broken = []
        for name, (low, high) in self.constraints.items():
            value = metrics.get(name)
            if value is None:
                continue
            if (low is not None and value < low) or (high is not None and value > high):
                broken.append(f"{name}={value:g} outside [{low}, {high}]")
        return broken

    def values(self, result: TrialResult) -> list[float] | None:
        """Objective values of an ok trial, each signed so that higher is better; None otherwise."""
        if not result.ok:
            return None
        try:
            vals = [s * float(result.metrics[n]) for s, n in zip(self.signs, self.names)]
        except KeyError:
            return None
        return vals if all(math.isfinite(v) for v in vals) else None

    def scalar(self, result: TrialResult) -> float | None:
        vals = self.values(result)
        return None if vals is None else vals[0]

    def best(self, results: Sequence[TrialResult]) -> TrialResult | None:
        scored = [(self.scalar(r), -r.trial, r) for r in results if self.scalar(r) is not None]
        return max(scored, key=lambda t: (t[0], t[1]))[2] if scored else None

    def pareto_front(self, results: Sequence[TrialResult]) -> list[TrialResult]:
        """The non-dominated ok trials (first occurrence of an arch kept), in trial order."""
        points = [(r, self.values(r)) for r in results if self.values(r) is not None]
        front = []
        for r, v in points:
            dominated = any(all(o >= x for o, x in zip(w, v)) and any(o > x for o, x in zip(w, v))
                            for _, w in points)
            if not dominated and all(f.arch_id != r.arch_id for f in front):
                front.append(r)
        return sorted(front, key=lambda r: r.trial)
