"""Random search: uniform over the dims. The loop's de-duplication (`Unique`) makes it never propose the same
arch twice in a run (until the space runs out).

Paired with the space's `mask: random` option it is also the neutral random-sparse baseline. It ignores every
result, so fidelity too: a trial stopped early by a scheduler changes nothing."""
from __future__ import annotations

import numpy as np

from ..space import Arch
from .base import Strategy, register_strategy
from .dedupe import dedupe_fields


@register_strategy("random")
class RandomSearch(Strategy):
    # max_retries: read by the loop's de-duplication (`Unique`): redraws before a fallback sample
    options_schema = dedupe_fields(max_retries=1000, dedupe=None)

    def __init__(self, space, objective, seed, **options):
        super().__init__(space, objective, seed, **options)
        self.rng = np.random.default_rng(seed)

    def ask(self) -> Arch | None:
        return self.space.sample(self.rng)

    def tell(self, result) -> None:
        pass

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]
