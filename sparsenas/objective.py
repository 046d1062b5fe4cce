"""Objectives (directions), constraints on cheap metrics, scalarisation, Pareto front, hypervolume."""
from __future__ import annotations

import math
from typing import Sequence

from .errors import ConfigError
from .journal import TrialResult


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """`a` Pareto-dominates `b` (higher is better in every coordinate): no worse anywhere, better somewhere."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


class Objective:
    """`maximize` and `minimize` metric names, and `constraints` {metric: [low, high]} (null = open).

    Single-objective strategies use `scalar` (the first objective, higher is better); multi-objective
    ones use `values` (every objective, each turned so that higher is better)."""

    def __init__(self, maximize: Sequence[str] = ("val_acc",), minimize: Sequence[str] = (),
                 constraints: dict | None = None, reference: dict | None = None):
        self.maximize, self.minimize = list(maximize), list(minimize)
        self.names = self.maximize + self.minimize
        self.signs = [1.0] * len(self.maximize) + [-1.0] * len(self.minimize)
        self.constraints = dict(constraints or {})
        self.reference = dict(reference or {})
        for name, value in self.reference.items():
            if name not in self.names:
                raise ConfigError(f"objective.reference.{name}: not an objective (objectives: {', '.join(self.names)})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"objective.reference.{name} must be a finite number, got {value!r}")

    @classmethod
    def from_config(cls, cfg: dict) -> "Objective":
        return cls(cfg["maximize"], cfg["minimize"], cfg["constraints"], cfg.get("reference"))

    def check_metrics(self, produced: frozenset[str] | None) -> None:
        """ConfigError when an objective or a constraint names a metric outside `produced` (the metrics the
        run's trials can have; None: unknown, not checked)."""
        if produced is None:
            return
        for where, names in (("objective", self.names), ("objective.constraints", self.constraints)):
            unknown = [n for n in names if n not in produced]
            if unknown:
                raise ConfigError(f"{where} metric {unknown[0]!r} is never produced by this run "
                                  f"(its metrics: {', '.join(sorted(produced))})")

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
            dominated = any(dominates(w, v) for _, w in points)
            if not dominated and all(f.arch_id != r.arch_id for f in front):
                front.append(r)
        return sorted(front, key=lambda r: r.trial)

    def reference_point(self, results: Sequence[TrialResult]) -> list[float] | None:
        """The hypervolume reference point, signed like `values` (higher is better). Per objective, the first of:
        `objective.reference[metric]`; the constraint bound on the worse side (low if maximised, high if
        minimised); 0 for a maximised val_acc/test_acc/sparsity (never negative, fraction or percent);
        else 10% beyond the worst value among the ok `results` (this one moves as worse trials appear —
        set `objective.reference` for a fixed point). None when a point is needed but no trial is ok."""
        observed = [v for r in results if (v := self.values(r)) is not None]
        point = []
        for i, (name, sign) in enumerate(zip(self.names, self.signs)):
            low, high = self.constraints.get(name, (None, None))
            bound = self.reference.get(name, low if sign > 0 else high)
            if bound is None and sign > 0 and name in NON_NEGATIVE_METRICS:
                bound = 0.0
            if bound is not None:
                point.append(sign * float(bound))
            elif not observed:
                return None
            else:
                worst = min(v[i] for v in observed)
                point.append(worst - 0.1 * abs(worst) if worst != 0 else -1.0)
        return point

    def hypervolume(self, results: Sequence[TrialResult], reference: Sequence[float] | None = None) -> float:
        """Hypervolume of the ok `results` w.r.t. `reference` (signed; default `reference_point(results)`)."""
        reference = self.reference_point(results) if reference is None else reference
        if reference is None:
            return 0.0
        return hypervolume([v for r in results if (v := self.values(r)) is not None], reference)


NON_NEGATIVE_METRICS = ("val_acc", "test_acc", "sparsity")


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Volume of the region that `points` dominate and that dominates `reference`, every coordinate
    maximised. Points not strictly better than `reference` in every coordinate add nothing. Exact:
    a sweep in 2-D, slicing along the last coordinate above (fine for the few objectives of a NAS run)."""
    ref = tuple(float(x) for x in reference)
    pts = {tuple(float(x) for x in p) for p in points}
    pts = [p for p in pts if len(p) == len(ref) and all(x > r for x, r in zip(p, ref))]
    return _hypervolume(pts, ref)


def _hypervolume(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    if not points:
        return 0.0
    if len(ref) == 1:
        return max(p[0] for p in points) - ref[0]
    if len(ref) == 2:
        volume, top = 0.0, ref[1]
        for x, y in sorted(points, reverse=True):  # x descending: each higher y adds a new rectangle
            if y > top:
                volume += (x - ref[0]) * (y - top)
                top = y
        return volume
    points = sorted((p for p in points if not any(q != p and all(a >= b for a, b in zip(q, p)) for q in points)),
                    key=lambda p: p[-1], reverse=True)  # the non-dominated points, best last coordinate first
    volume = 0.0
    for i, p in enumerate(points):  # slab between this point's last coordinate and the next lower one
        lower = points[i + 1][-1] if i + 1 < len(points) else ref[-1]
        if p[-1] > lower:
            volume += (p[-1] - lower) * _hypervolume([q[:-1] for q in points[:i + 1]], ref[:-1])
    return volume
