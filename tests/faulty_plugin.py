"""A plug-in space for the reliability tests, loaded with `sparsenas --allow-import faulty_plugin`.

Its trials fail in the ways a real evaluator can: by raising, by a NaN metric, or not at all."""
import math
import time

from sparsenas.space import Categorical, SearchSpace, register_space


@register_space("faulty")
class FaultySpace(SearchSpace):
    defaults = {"modes": ["ok", "raise", "nan"], "delay_s": 0.0}

    def dims(self):
        return {"mode": Categorical(self.options["modes"]), "x": Categorical(list(range(20)))}

    def evaluate(self, arch, seed, context):
        time.sleep(self.options["delay_s"])
        if arch["mode"] == "raise":
            raise RuntimeError(f"evaluator exploded on x={arch['x']}")
        return {"val_acc": math.nan if arch["mode"] == "nan" else arch["x"] / 20}
