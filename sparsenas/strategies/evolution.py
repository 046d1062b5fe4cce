"""Regularized (aging) evolution — Real et al., AAAI 2019 (REA), as benchmarked in NAS-Bench-201.

The first `population` asks are uniform samples; afterwards each ask draws `sample_size` members of the
population (the `population` most recently told trials) uniformly without replacement, takes the best by the
objective's first metric (failed / infeasible members rank last) and mutates one dim of it to another value.
Every told trial joins the population and pushes out the oldest (aging). Deviation from the paper (`dedupe: true`,
the default, applied by the loop's de-duplication `Unique`): an arch already proposed in this run is not
evaluated again — the mutation is redrawn, up to `max_retries` times, then a uniform sample of the unseen archs
is taken — so no evaluation is spent on a duplicate; `dedupe: false` is the paper's REA.

Fidelity: only full-fidelity results join the population. A trial a scheduler stopped early (its metrics are
those of fewer epochs, `full_fidelity` False) is never a parent and pushes no member out; it still counts as
evaluated, so the de-duplication never proposes its arch again.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from ..schema import count
from ..space import Arch
from .base import Strategy, full_fidelity, register_strategy
from .dedupe import dedupe_fields


def mutate(space, arch: Arch, rng: np.random.Generator) -> Arch:
    """`arch` with one dim (among those with another value available) set to another value of that dim."""
    dims = space.dims()
    labels = [k for k, d in dims.items() if d.size() > 1]
    if not labels:
        return arch
    label = labels[int(rng.integers(len(labels)))]
    dim = dims[label]
    if hasattr(dim, "choices"):
        others = [c for c in dim.choices if not (type(c) is type(arch[label]) and c == arch[label])]
        return arch.replace(**{label: others[int(rng.integers(len(others)))]})
    for _ in range(100):  # Int / Float: redraw from the dim
        value = dim.sample(rng)
        if value != arch[label]:
            return arch.replace(**{label: value})
    return arch


@register_strategy("evolution")
class RegularizedEvolution(Strategy):
    # dedupe / max_retries: read by the loop's de-duplication (`Unique`)
    options_schema = {"population": count(10), "sample_size": count(3), **dedupe_fields()}

    def __init__(self, space, objective, seed, **options):
        super().__init__(space, objective, seed, **options)
        self.rng = np.random.default_rng(seed)
        self.population: deque = deque(maxlen=self.options["population"])  # (arch json, score or None)
        self.asked = 0

    def _parent(self) -> Arch:
        members = list(self.population)
        k = min(self.options["sample_size"], len(members))
        picks = self.rng.choice(len(members), size=k, replace=False)
        # best score; ties → the earliest drawn; failed members (None) last
        best = max(picks, key=lambda i: (members[i][1] is not None, members[i][1] or 0.0, -list(picks).index(i)))
        return Arch.from_json(members[best][0])

    def ask(self) -> Arch:
        evolve = self.asked >= self.options["population"] and len(self.population) > 0
        self.asked += 1
        return mutate(self.space, self._parent(), self.rng) if evolve else self.space.sample(self.rng)

    def duplicate(self, arch, known) -> None:
        self.asked -= 1  # the warm-up counts the proposals the loop runs

    def warmup(self):
        return "population", self.options["population"]

    def tell(self, result) -> None:
        if full_fidelity(result):
            self.population.append((result.arch.to_json(), self.objective.scalar(result)))

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state, "population": list(self.population), "asked": self.asked}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]
        self.population = deque(map(tuple, state["population"]), maxlen=self.options["population"])
        self.asked = state["asked"]
