"""Random search: uniform over the dims, never the same arch twice in a run (until the space runs out).

Paired with the space's `mask: random` option it is also the neutral random-sparse baseline."""
from __future__ import annotations

import numpy as np

from ..space import Arch
from .base import Strategy, register_strategy


@register_strategy("random")
class RandomSearch(Strategy):
    defaults = {"max_retries": 1000}

    def __init__(self, space, objective, seed, **options):
        super().__init__(space, objective, seed, **options)
        self.rng = np.random.default_rng(seed)
        self.seen: set[str] = set()

    def ask(self) -> Arch | None:
        if len(self.seen) >= self.space.size():
            return None
        for _ in range(self.options["max_retries"]):
            arch = self.space.sample(self.rng)
            if arch.arch_id not in self.seen:
                self.seen.add(arch.arch_id)
                return arch
        return None

    def tell(self, result) -> None:
        self.seen.add(result.arch_id)

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state, "seen": sorted(self.seen)}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]
        self.seen = set(state["seen"])
