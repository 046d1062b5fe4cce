"""tpe / evolution / opgfn end to end on tabular NB201: Pareto front, exact resume after a crash, OP-GFN learning."""
import csv
import itertools
import json
import logging

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import cli
from sparsenas.journal import TrialResult
from sparsenas.objective import Objective
from sparsenas.search import Search
from sparsenas.space import Categorical, SearchSpace
from sparsenas.spaces.nb201 import EDGE_LABELS, OPS, arch_str, nb201_counts
from sparsenas.space import Arch
from sparsenas.strategies.opgfn import OPGFN

TIMINGS = {"duration_s", "worker"}
FAST_OPTIONS = {
    "tpe": ["--set", "strategy.n_startup_trials=3"],
    "evolution": ["--set", "strategy.population=4", "--set", "strategy.sample_size=2"],
    "opgfn": ["--set", "strategy.init_samples=4", "--set", "strategy.batch_size=3", "--set", "strategy.train_steps=5",
              "--set", "strategy.train_steps_init=10", "--set", "strategy.replay_steps=2",
              "--set", "strategy.reinit_every=2", "--set", "strategy.hidden=16"],
}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A hand-made table of all 15,625 cells: coarse accuracies (so that ties occur) from a fixed formula."""
    path = tmp_path_factory.mktemp("nb201") / "table.csv"
    weight = {"none": 0, "skip_connect": 1, "nor_conv_1x1": 2, "nor_conv_3x3": 3, "avg_pool_3x3": 1}
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["arch_str", "c10valid_val_12", "c10_test_200"])
        for ops in itertools.product(OPS, repeat=len(EDGE_LABELS)):
            arch = dict(zip(EDGE_LABELS, ops))
            score = sum(weight[o] * (i % 3 + 1) for i, o in enumerate(ops)) % 7
            out.writerow([arch_str(arch), 60 + 3 * score, 70 + score])
    return path


def records(run):
    return [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]


def strip(rec):
    return {k: v for k, v in rec.items() if k not in TIMINGS}


@pytest.mark.parametrize("strategy", ["tpe", "opgfn"])
def test_pareto_csv_is_exactly_the_non_dominated_trials(strategy, table, runs):
    assert cli("search", "--space", "nb201", "--strategy", strategy, "--budget", 16, "--name", "p", "--runs-dir", runs,
               "--set", f"space.benchmark_file={table}", "--set", "objective.minimize=[flops]",
               *FAST_OPTIONS[strategy], "--quiet") == 0
    recs = [r for r in records(runs / "p") if r["status"] == "ok"]
    assert len(recs) == 16
    points = {r["trial"]: (r["metrics"]["val_acc"], -r["metrics"]["flops"]) for r in recs}
    expected = sorted(t for t, p in points.items()
                      if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points.values()))
    with open(runs / "p" / "pareto.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["trial"]) for r in rows) == expected
    assert 1 <= len(expected) < 16
    for r in rows:
        assert float(r["flops"]) == nb201_counts(next(x["arch"] for x in recs if x["trial"] == int(r["trial"])))["flops"]


class Crash(Exception):
    pass


@pytest.mark.parametrize("strategy", ["tpe", "evolution", "opgfn"])
def test_crashed_search_resumes_exactly(strategy, table, runs, monkeypatch):
    """A crash right before or right after a checkpoint write, at many points; the resumed run equals a clean one."""
    common = ["--space", "nb201", "--strategy", strategy, "--budget", 10, "--seed", 3, "--runs-dir", runs,
              "--set", f"space.benchmark_file={table}", *FAST_OPTIONS[strategy], "--quiet"]
    assert cli("search", *common, "--name", "clean") == 0
    original = Search._save
    calls = {"n": 0}
    crash_at = iter([2, 5, 8, 11, 15])

    def crashing_save(self):
        calls["n"] += 1
        if calls["n"] == target:
            if target % 2:
                raise Crash  # before the checkpoint is written
            original(self)
            raise Crash      # after it
        original(self)

    monkeypatch.setattr(Search, "_save", crashing_save)
    argv, crashes = ["search", *common, "--name", "crashed"], 0
    while True:
        target, calls["n"] = next(crash_at, None), 0
        try:
            assert cli(*argv) == 0
            break
        except Crash:
            crashes += 1
        argv = ["search", "--resume", "--name", "crashed", "--runs-dir", runs, "--quiet"]
    assert crashes >= 3
    got = records(runs / "crashed")
    assert [r["trial"] for r in got] == list(range(10))
    assert list(map(strip, got)) == list(map(strip, records(runs / "clean")))


def test_a_budget_within_the_warm_up_is_warned_once_in_the_log_and_tensorboard(table, runs, caplog):
    with caplog.at_level(logging.WARNING, logger="sparsenas"):
        assert cli("search", "--space", "nb201", "--strategy", "tpe", "--budget", 4, "--name", "w", "--runs-dir", runs,
                   "--set", f"space.benchmark_file={table}", "--quiet") == 0
    warned = [r.getMessage() for r in caplog.records if "warm-up" in r.getMessage()]
    assert len(warned) == 1 and "search.budget=4" in warned[0] and "n_startup_trials=10" in warned[0]
    acc = EventAccumulator(str(runs / "w" / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    texts = [t.tensor_proto.string_val[0].decode() for t in acc.Tensors("search/warnings/text_summary")]
    assert texts == [warned[0].removeprefix("sparsenas: ")]


class GridSpace(SearchSpace):
    name = "grid"

    def dims(self):
        return {f"d{i}": Categorical([0, 1, 2, 3]) for i in range(4)}


def spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_opgfn_learned_log_reward_orders_the_space_better_over_rounds():
    space = GridSpace()
    weights = np.array([[0.0, 1.3, 2.9, 0.4], [2.2, 0.1, 1.1, 3.7], [0.6, 3.1, 1.9, 0.2], [1.7, 0.3, 2.6, 3.3]])
    archs = [Arch({f"d{i}": v for i, v in enumerate(values)}) for values in itertools.product(range(4), repeat=4)]
    truth = np.array([sum(weights[i, a[f"d{i}"]] for i in range(4)) for a in archs])
    strategy = OPGFN(space, Objective(["val_acc"]), 0, init_samples=12, batch_size=6, train_steps=25,
                     train_steps_init=25, reinit_every=1000, replay_steps=5, hidden=32)
    rhos, trial = [], 0
    for round_ in range(7):
        for _ in range(12 if round_ == 0 else 6):
            arch = strategy.ask()
            value = sum(weights[i, arch[f"d{i}"]] for i in range(4))
            strategy.tell(TrialResult(trial, arch, "", "ok", {"val_acc": float(value)}))
            trial += 1
        if strategy.net is not None:
            rhos.append(spearman(strategy.predicted_log_reward(archs), truth))
    assert strategy.rounds >= 5
    assert rhos[-1] > rhos[0] + 0.3 and rhos[-1] > 0.7, rhos
    assert np.mean(rhos[-2:]) > np.mean(rhos[:2])


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_tpe_tells_optuna_constraints_failures_and_several_objectives(sampler):
    from sparsenas.spaces.nb201 import NB201Space
    from sparsenas.strategies.tpe import TPE

    objective = Objective(["val_acc"], ["flops"], {"flops": [None, 1e8]})
    strategy = TPE(NB201Space(), objective, 0, sampler=sampler, n_startup_trials=2, population_size=4)
    rng = np.random.default_rng(0)
    for trial in range(12):
        arch = strategy.ask()
        flops = nb201_counts(arch)["flops"]
        if trial % 4 == 3:
            result = TrialResult(trial, arch, "", "failed", {}, error="boom")
        elif flops > 1e8:
            result = TrialResult(trial, arch, "", "infeasible", {"flops": flops}, error="flops")
        else:
            result = TrialResult(trial, arch, "", "ok", {"val_acc": float(rng.random()), "flops": flops})
        strategy.tell(result)
        frozen = strategy.study.trials[-1]
        if result.status == "failed":
            assert frozen.state.name == "FAIL"
        else:
            assert frozen.state.name == "COMPLETE" and len(frozen.values) == 2
            violation = frozen.system_attrs["constraints:flops<=high"]
            assert (violation > 0) == (result.status == "infeasible") and violation == flops - 1e8
            if result.status == "ok":
                assert frozen.values == [result.metrics["val_acc"], flops]
    assert len(strategy.study.trials) == 12 and not strategy.pending


@pytest.mark.parametrize("space_name", sorted(__import__("sparsenas.space", fromlist=["SPACES"]).SPACES.names()))
def test_opgfn_learning_phase_on_every_space_resumes_identically(space_name):
    """The conformance suite stops before opgfn's first round; here rounds (and a re-init) run on every space."""
    from sparsenas.space import SPACES
    from sparsenas.testing import OBJECTIVE, drive

    space = SPACES.get(space_name)()
    options = dict(init_samples=3, batch_size=2, train_steps=2, train_steps_init=2, replay_steps=1, hidden=8,
                   reinit_every=2)
    full = OPGFN(space, OBJECTIVE, 5, **options)
    expected = drive(full, space, 7) + drive(full, space, 5, start=7)
    assert full.rounds >= 3 and len(set(expected)) == 12
    first = OPGFN(space, OBJECTIVE, 5, **options)
    head = drive(first, space, 7)
    resumed = OPGFN(space, OBJECTIVE, 5, **options)
    resumed.load_state_dict(first.state_dict())
    assert head + drive(resumed, space, 5, start=7) == expected
