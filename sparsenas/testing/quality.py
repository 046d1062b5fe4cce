"""Strategy-quality suite: a learning strategy must search better than random search, on problems whose
structure is known, by a margin and with significance — so that a strategy made worse fails a test.

A `Problem` is a small space of categorical dims with metrics computed from the arch (no training): its
optimum, and the best hypervolume of a two-objective one, are known by enumerating it. The synthetic ones
(`PROBLEMS`): `additive` (each dim's value adds a weight), `interactions` (plus a term on each pair of
neighbouring dims), `constrained` (additive, but the archs worth most cost most and a cost bound leaves half
of the space feasible; a broken bound is found before training, as the search loop does: status
`infeasible`) and `two_objectives` (maximise the additive value, minimise a cost that grows with it). A
tabulated benchmark is a problem too (`table_problem`; `nb201_problem` for the NAS-Bench-201 CSV).

`compare` runs a strategy (through the loop's de-duplication `Unique`, as a search does) and random search on
the same seeds; the score of a run is the best value found (the best feasible one under constraints) or, with
two objectives, the hypervolume w.r.t. a fixed reference point. `check_beats_random` asserts that the strategy
scores higher than random (one-sided Mann–Whitney U, p < `alpha`: the two share no random stream, so the seeds
are independent samples), that it closes at least `margin` of random's mean regret to the optimum, and, under
constraints, that its proposals after its warm-up are feasible more often than random's (same test).

    from sparsenas.testing import PROBLEMS, check_beats_random
    check_beats_random(MyStrategy, PROBLEMS["additive"](), options={...})
"""
from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy.stats import mannwhitneyu

from ..journal import TrialResult
from ..objective import Objective
from ..space import Arch, Categorical, SearchSpace
from ..spaces.nb201 import NB201Space
from ..strategies import STRATEGIES, Strategy, Unique


class GridSpace(SearchSpace):
    """`sizes[d]` integer values 0..sizes[d]-1 for dim `d{d}`."""

    name = "quality_grid"

    def __init__(self, sizes: tuple[int, ...]):
        super().__init__()
        self.sizes = tuple(sizes)

    def dims(self):
        return {f"d{d}": Categorical(tuple(range(k))) for d, k in enumerate(self.sizes)}


@dataclass
class Problem:
    """`space`, `objective`, and `metrics(arch)`: every metric of an arch; those named in `cheap` are known before
    training (constraints are checked on them). `archs` (default: the whole space) lists the space for the
    optimum; `reference` is the hypervolume reference point (signed, higher is better) of a multi-objective one."""

    name: str
    space: SearchSpace
    objective: Objective
    metrics: Callable[[Arch], dict[str, float]]
    cheap: tuple[str, ...] = ()
    archs: list[Arch] | None = None
    reference: list[float] | None = None
    _best: float | None = field(default=None, repr=False)

    def result(self, trial: int, arch: Arch) -> TrialResult:
        """The result the search loop would record for `arch` (infeasible on a broken cheap constraint)."""
        metrics = self.metrics(arch)
        cheap = {k: metrics[k] for k in self.cheap}
        broken = self.objective.violations(cheap)
        if broken:
            return TrialResult(trial, arch, "", "infeasible", cheap, error="; ".join(broken))
        return TrialResult(trial, arch, "", "ok", metrics)

    def score(self, results: list[TrialResult]) -> float:
        """Best first-objective value among the ok results (-inf without one); with several objectives, their
        hypervolume w.r.t. `reference`."""
        if self.objective.multi:
            return self.objective.hypervolume(results, self.reference)
        values = [v for r in results if (v := self.objective.scalar(r)) is not None]
        return max(values, default=-np.inf)

    def best(self) -> float:
        """The best score any search can reach (every arch of the space evaluated)."""
        if self._best is None:
            archs = self.archs if self.archs is not None else all_archs(self.space)
            self._best = self.score([self.result(i, a) for i, a in enumerate(archs)])
        return self._best


def all_archs(space: SearchSpace) -> list[Arch]:
    dims = space.dims()
    return [Arch(dict(zip(dims, values))) for values in itertools.product(*(d.choices for d in dims.values()))]


def _weights(seed: int, sizes: tuple[int, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=k) for k in sizes]


def _additive_value(weights: list[np.ndarray], arch: Arch) -> float:
    return float(sum(w[arch[f"d{d}"]] for d, w in enumerate(weights)))


def additive(dims: int = 7, values: int = 4, seed: int = 0) -> Problem:
    """val_acc = Σ_d w_d[value of dim d], weights N(0, 1)."""
    sizes = (values,) * dims
    weights = _weights(seed, sizes)
    return Problem("additive", GridSpace(sizes), Objective(["val_acc"]),
                   lambda arch: {"val_acc": _additive_value(weights, arch)})


def interactions(dims: int = 7, values: int = 4, seed: int = 1) -> Problem:
    """Additive plus, for each pair of neighbouring dims, a term W_d[value d, value d+1] (N(0, 1)): the best value of
    a dim depends on its neighbours'."""
    sizes = (values,) * dims
    weights = _weights(seed, sizes)
    pairs = np.random.default_rng(seed + 100).normal(size=(dims - 1, values, values))

    def metrics(arch):
        pair = sum(pairs[d, arch[f"d{d}"], arch[f"d{d + 1}"]] for d in range(dims - 1))
        return {"val_acc": _additive_value(weights, arch) + float(pair)}
    return Problem("interactions", GridSpace(sizes), Objective(["val_acc"]), metrics)


def _value_and_cost(dims: int, values: int, seed: int):
    """An additive value and an additive cost that grows with it (correlation 0.6 per dim)."""
    sizes = (values,) * dims
    weights = _weights(seed, sizes)
    noise = _weights(seed + 100, sizes)
    costs = [0.6 * w + 0.8 * n for w, n in zip(weights, noise)]
    return sizes, lambda arch: {"val_acc": _additive_value(weights, arch), "cost": _additive_value(costs, arch)}


def constrained(dims: int = 7, values: int = 4, seed: int = 2, feasible: float = 0.5) -> Problem:
    """Maximise the additive val_acc subject to cost <= the `feasible` quantile of the space's costs."""
    sizes, metrics = _value_and_cost(dims, values, seed)
    space = GridSpace(sizes)
    bound = float(np.quantile([metrics(a)["cost"] for a in all_archs(space)], feasible))
    return Problem("constrained", space, Objective(["val_acc"], constraints={"cost": [None, bound]}), metrics,
                   cheap=("cost",))


def two_objectives(dims: int = 7, values: int = 4, seed: int = 3) -> Problem:
    """Maximise the additive val_acc, minimise a cost that grows with it; reference: the worst of each."""
    sizes, metrics = _value_and_cost(dims, values, seed)
    space = GridSpace(sizes)
    points = [metrics(a) for a in all_archs(space)]
    reference = [min(p["val_acc"] for p in points), -max(p["cost"] for p in points)]
    return Problem("two_objectives", space, Objective(["val_acc"], ["cost"]), metrics, reference=reference)


PROBLEMS: dict[str, Callable[[], Problem]] = {f.__name__: f for f in (additive, interactions, constrained,
                                                                      two_objectives)}


def table_problem(name: str, space: SearchSpace, table: dict[str, dict[str, float]],
                  objective: Objective | None = None) -> Problem:
    """A tabulated benchmark: `table` maps `space.label(arch)` to the arch's metrics (every arch of the space)."""
    archs = all_archs(space) if space.size() <= 200_000 else None
    return Problem(name, space, objective or Objective(["val_acc"]), lambda arch: table[space.label(arch)],
                   archs=archs)


def nb201_problem(path: str, signal: str = "c10valid_val_12") -> Problem:
    """NAS-Bench-201 from its CSV (`arch_str` and the `signal` column, reported as val_acc)."""
    with open(path, newline="") as f:
        table = {row["arch_str"]: {"val_acc": float(row[signal])} for row in csv.DictReader(f)}
    return table_problem(f"nb201:{signal}", NB201Space(), table)


def run(strategy_cls: type[Strategy], problem: Problem, seed: int, budget: int,
        options: dict[str, Any] | None = None) -> list[TrialResult]:
    """One seeded search of `budget` trials, ask → result → tell through `Unique`, as the search loop runs it."""
    strategy = Unique(strategy_cls(problem.space, problem.objective, seed, **(options or {})))
    results = []
    for trial in range(budget):
        arch = strategy.ask()
        if arch is None:
            break
        results.append(problem.result(trial, arch))
        strategy.tell(results[-1])
    return results


@dataclass
class Comparison:
    """Per-seed scores of a strategy and of random search on one problem, and the tests between them."""

    problem: str
    strategy: str
    scores: np.ndarray
    random: np.ndarray
    best: float
    p: float                  # one-sided Mann–Whitney U: strategy > random
    feasible: np.ndarray      # per seed: share of feasible proposals after the strategy's warm-up
    random_feasible: np.ndarray
    p_feasible: float

    @property
    def regret_ratio(self) -> float:
        """Mean regret of the strategy / mean regret of random search (0: always optimal; 1: no better)."""
        random_regret = float(np.mean(self.best - self.random))
        return float(np.mean(self.best - self.scores)) / random_regret if random_regret > 0 else 1.0

    def __str__(self) -> str:
        return (f"{self.strategy} on {self.problem}: score {self.scores.mean():.4g} vs random {self.random.mean():.4g}"
                f" (optimum {self.best:.4g}), regret ratio {self.regret_ratio:.2f}, p={self.p:.2g}; feasible "
                f"{self.feasible.mean():.2f} vs {self.random_feasible.mean():.2f} (p={self.p_feasible:.2g})")


def _greater(a: np.ndarray, b: np.ndarray) -> float:
    if np.all(a == a[0]) and np.all(b == a[0]):
        return 1.0
    return float(mannwhitneyu(a, b, alternative="greater").pvalue)


def compare(strategy_cls: type[Strategy], problem: Problem, seeds=range(10), budget: int = 60,
            options: dict[str, Any] | None = None) -> Comparison:
    """Run `strategy_cls` (with `options`) and random search on each seed of `seeds`."""
    probe = strategy_cls(problem.space, problem.objective, 0, **(options or {}))
    warmup = probe.warmup()
    start = min(int(warmup[1]), budget - 1) if warmup else 0
    scores, feasible = [], []
    for cls, opts in ((strategy_cls, options), (STRATEGIES.get("random"), None)):
        runs = [run(cls, problem, seed, budget, opts) for seed in seeds]
        scores.append(np.array([problem.score(r) for r in runs]))
        feasible.append(np.array([np.mean([x.status != "infeasible" for x in r[start:]]) for r in runs]))
    return Comparison(problem.name, getattr(strategy_cls, "name", "") or strategy_cls.__name__, scores[0], scores[1],
                      problem.best(), _greater(scores[0], scores[1]), feasible[0], feasible[1],
                      _greater(feasible[0], feasible[1]))


def check_beats_random(strategy_cls: type[Strategy], problem: Problem, options: dict[str, Any] | None = None,
                       seeds=range(10), budget: int = 60, margin: float = 0.25, alpha: float = 0.01) -> Comparison:
    """Assert that `strategy_cls` searches `problem` better than random search (see the module docstring):
    higher scores at p < `alpha`, a mean regret at most (1 - `margin`) × random's and, when the problem has
    constraints, feasible proposals more often at p < `alpha`. Returns the comparison."""
    result = compare(strategy_cls, problem, seeds, budget, options)
    assert result.p < alpha, f"not better than random search at p < {alpha}: {result}"
    assert result.regret_ratio <= 1 - margin, f"closes less than {margin:.0%} of random search's regret: {result}"
    if problem.objective.constraints:
        assert result.p_feasible < alpha, f"not more often feasible than random search at p < {alpha}: {result}"
    return result
