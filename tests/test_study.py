"""The Python API (`sparsenas.Study`): the CLI's search from Python, in memory or in a run directory."""
import json
import re
import subprocess
import sys

import pytest

import sparsenas
from conftest import ROOT, SHARED_DATA, cli
from sparsenas.errors import ConfigError
from sparsenas.objective import Objective, dominates
from sparsenas.space import Categorical, SearchSpace
from sparsenas.strategies import Strategy

TABLE = SHARED_DATA / "nb201" / "nb201_cifar.csv"
NB201 = {"space.benchmark_file": str(TABLE)}
needs_table = pytest.mark.skipif(not TABLE.is_file(), reason="needs ../shared/data/nb201")


def arch_ids(records):
    return [r["arch_id"] if isinstance(r, dict) else r.arch_id for r in records]


def journal(run):
    return [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]


@needs_table
@pytest.mark.parametrize("strategy", ["random", "evolution", "tpe"])
def test_a_study_and_the_cli_with_the_same_seed_run_the_same_trials(strategy, runs):
    assert cli("search", "--space", "nb201", "--strategy", strategy, "--set", f"space.benchmark_file={TABLE}",
               "--budget", 12, "--seed", 5, "--name", "cli", "--runs-dir", runs, "--quiet") == 0
    study = sparsenas.Study(space="nb201", strategy=strategy, seed=5, overrides=NB201, storage=runs / "py")
    trials = study.optimize(n_trials=12)
    strip = lambda r: (r["trial"], r["arch_id"], r["status"], r["metrics"], r["seed"])  # noqa: E731
    assert list(map(strip, journal(runs / "py"))) == list(map(strip, journal(runs / "cli")))
    assert [t.arch_id for t in trials] == arch_ids(journal(runs / "cli"))
    assert study.best.metrics["val_acc"] == max(r["metrics"]["val_acc"] for r in journal(runs / "cli"))


@needs_table
def test_an_in_memory_study_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = sparsenas.Study(space="nb201", strategy="random", seed=1, overrides=NB201,
                            objective={"maximize": ["val_acc"], "minimize": ["flops"]})
    assert study.optimize(n_trials=10) == study.trials and len(study.trials) == 10
    assert list(tmp_path.iterdir()) == []
    front = study.pareto_front
    assert front and all(not dominates(study.objective.values(a), study.objective.values(b))
                         for a in study.trials for b in front)
    told = []
    tell = study.search.strategy.strategy.tell
    study.search.strategy.strategy.tell = lambda result: told.append(result.trial) or tell(result)
    study.optimize(n_trials=5)  # more trials continue the same search, never an arch twice
    assert len(study.trials) == 15 and len({t.arch_id for t in study.trials}) == 15
    assert told == list(range(10, 15))  # the strategy hears each result once


@needs_table
def test_a_stored_study_continues_exactly_and_is_never_overwritten(runs):
    first = sparsenas.Study(space="nb201", strategy="evolution", seed=2, overrides=NB201, storage=runs / "s")
    first.optimize(n_trials=6)
    with pytest.raises(ConfigError, match="already exists"):
        sparsenas.Study(space="nb201", strategy="evolution", seed=2, overrides=NB201, storage=runs / "s")
    again = sparsenas.Study(storage=runs / "s", load_if_exists=True)
    assert [t.arch_id for t in again.trials] == [t.arch_id for t in first.trials]
    again.optimize(n_trials=5)
    clean = sparsenas.Study(space="nb201", strategy="evolution", seed=2, overrides=NB201)
    clean.optimize(n_trials=11)
    assert [t.arch_id for t in again.trials] == [t.arch_id for t in clean.trials]
    assert len(journal(runs / "s")) == 11


class Grid(SearchSpace):
    """An unregistered tabular space: val_acc peaks at (3, 3)."""

    name = "grid"
    defaults = {"n": 6}

    def dims(self):
        return {"a": Categorical(list(range(self.options["n"]))), "b": Categorical(list(range(self.options["n"])))}

    def evaluate(self, arch, seed, context):
        return {"val_acc": 1.0 - (abs(arch["a"] - 3) + abs(arch["b"] - 3)) / 10}


class Sweep(Strategy):
    """An unregistered strategy: archs in grid order."""

    name = "sweep"

    def __init__(self, space, objective, seed, **options):
        super().__init__(space, objective, seed, **options)
        self.i = 0

    def ask(self):
        n = self.space.options["n"]
        self.i += 1
        return None if self.i > n * n else self.space.validate({"a": (self.i - 1) // n, "b": (self.i - 1) % n})

    def tell(self, result):
        pass

    def state_dict(self):
        return {"i": self.i}

    def load_state_dict(self, state):
        self.i = state["i"]


def test_spaces_strategies_and_objectives_as_objects():
    study = sparsenas.Study(space=Grid(n=5), strategy=Sweep, objective=Objective(maximize=["val_acc"]))
    study.optimize()  # the default search.budget: 10 trials
    assert [(t.arch["a"], t.arch["b"]) for t in study.trials[:3]] == [(0, 0), (0, 1), (0, 2)]
    assert len(study.trials) == 10 and dict(study.best.arch) == {"a": 1, "b": 3}
    study.optimize(n_trials=20)  # the sweep runs out of archs at 25
    assert len(study.trials) == 25 and dict(study.best.arch) == {"a": 3, "b": 3}
    with pytest.raises(ConfigError, match="unknown config key space.m"):
        sparsenas.Study(space={"name": "nb201", "m": 1}, strategy="random")
    with pytest.raises(ConfigError, match="n_trials"):
        sparsenas.Study(space=Grid(), strategy=Sweep).optimize(n_trials=-1)


def readme_python_blocks():
    text = (ROOT / "README.md").read_text()
    return [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if not b.startswith("# needs: your code")]


@pytest.mark.parametrize("block", readme_python_blocks(), ids=lambda b: b.splitlines()[0][:40])
def test_every_python_block_of_the_readme_runs_as_written(block, tmp_path):
    run = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
