"""A plug-in space and strategy written in a file outside the repository pass sparsenas.testing's suites, as
the README tells plug-in authors to check theirs."""
import importlib
import sys
import textwrap

import pytest

from sparsenas.space import SPACES
from sparsenas.strategies import STRATEGIES
from sparsenas.testing import check_space, check_space_evaluates, check_strategy, tiny_context

PLUGIN = '''
"""An outside plug-in: a tabular grid space and a coordinate-walk strategy."""
import numpy as np

from sparsenas.space import Categorical, Int, SearchSpace, register_space
from sparsenas.strategies import Strategy, register_strategy


@register_space("outside_grid")
class GridSpace(SearchSpace):
    defaults = {"width": 6}

    def dims(self):
        return {"depth": Int(1, 4), "width": Categorical(tuple(range(1, self.options["width"] + 1))),
                "act": Categorical(("relu", "gelu"))}

    def metrics(self):
        return frozenset({"cost", "val_acc"})

    def cheap_metrics(self, arch, context):
        return {"cost": float(arch["depth"] * arch["width"])}

    def evaluate(self, arch, seed, context):
        return {"val_acc": 1 - 1 / (1 + arch["depth"] * arch["width"] + (arch["act"] == "gelu"))}


@register_strategy("outside_walk")
class WalkStrategy(Strategy):
    """Starts at a random arch, then changes one random dim of the best arch so far (or samples afresh when
    those are used up); never repeats."""

    def __init__(self, space, objective, seed, **options):
        super().__init__(space, objective, seed, **options)
        self.rng = np.random.default_rng(seed)
        self.best, self.best_value, self.seen = None, -np.inf, set()

    def ask(self):
        for attempt in range(200):
            arch = self.space.sample(self.rng)
            if self.best is not None and attempt < 20:  # a neighbour of the best, else anything new
                label = sorted(arch)[int(self.rng.integers(len(arch)))]
                arch = self.best.replace(**{label: arch[label]})
            if arch.arch_id not in self.seen:
                self.seen.add(arch.arch_id)
                return arch
        return None

    def tell(self, result):
        value = self.objective.scalar(result) if result.ok else None
        if value is not None and value > self.best_value:
            self.best, self.best_value = result.arch, value

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state, "seen": sorted(self.seen), "value": self.best_value,
                "best": None if self.best is None else dict(self.best)}

    def load_state_dict(self, state):
        from sparsenas.space import Arch

        self.rng.bit_generator.state = state["rng"]
        self.seen, self.best_value = set(state["seen"]), state["value"]
        self.best = None if state["best"] is None else Arch(state["best"])
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The plug-in module, imported from tmp_path (outside the repo); its registrations are undone after."""
    (tmp_path / "outside_plugin.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(SPACES, "_items", dict(SPACES._items))
    monkeypatch.setattr(STRATEGIES, "_items", dict(STRATEGIES._items))
    monkeypatch.delitem(sys.modules, "outside_plugin", raising=False)
    module = importlib.import_module("outside_plugin")
    assert tmp_path in __import__("pathlib").Path(module.__file__).parents
    yield module
    sys.modules.pop("outside_plugin", None)


def test_outside_plugin_space_and_strategy_pass_the_suites(plugin):
    space = SPACES.get("outside_grid")()
    assert isinstance(space, plugin.GridSpace) and STRATEGIES.get("outside_walk") is plugin.WalkStrategy
    check_space(space)
    metrics = check_space_evaluates(space, tiny_context())
    assert 0 < metrics["val_acc"] < 1 and metrics["cost"] >= 1
    check_strategy(plugin.WalkStrategy, space)
    for name in ("random", "tpe", "evolution"):  # built-in strategies on the plug-in space too
        check_strategy(STRATEGIES.get(name), space)


def test_suites_catch_a_broken_plugin(plugin):
    """The suites are not vacuous: a strategy that forgets its rng in state_dict, or a space whose validate
    accepts anything, fails them with an AssertionError."""
    space = plugin.GridSpace()

    class Forgetful(plugin.WalkStrategy):
        def load_state_dict(self, state):
            super().load_state_dict(state)
            self.rng = __import__("numpy").random.default_rng(12345)

    with pytest.raises(AssertionError, match="resumed from its checkpoint"):
        check_strategy(Forgetful, space)

    class Lenient(plugin.GridSpace):
        def validate(self, arch):
            return __import__("sparsenas.space", fromlist=["Arch"]).Arch(arch)

    with pytest.raises(AssertionError, match="expected ConfigError"):
        check_space(Lenient())
