"""Schedulers: the conformance suite (sparsenas.testing.check_scheduler) over every registered one, and broken
ones it catches; early stopping on the local executor (one and several objectives), bad settings, the old
execution.* keys, TensorBoard curves, and kill -9 + --resume."""
import json
import logging
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import scheduler_plugin  # noqa: F401 — registers the `curves` space
from conftest import FAST, cli, cli_subprocess_cmd
from scheduler_plugin import curve
from sparsenas.assemble import resolve
from sparsenas.errors import ConfigError
from sparsenas.objective import Objective
from sparsenas.schedulers import SCHEDULERS
from sparsenas.schedulers.asha import AshaScheduler
from sparsenas.search import Search
from sparsenas.testing import check_scheduler

ONE, TWO = Objective(["val_acc"]), Objective(["val_acc"], ["flops"])
EPOCHS = 9


def make(name, objective=ONE, seed=0, **options):
    return SCHEDULERS.get(name)(objective, EPOCHS, seed, **options)


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_every_scheduler_passes_the_conformance_suite(name):
    check_scheduler(SCHEDULERS.get(name))


class NeverStops(AshaScheduler):
    def decide(self, trial, epochs, point):
        return False


class StopsEveryoneAtTheFirstRung(AshaScheduler):
    def decide(self, trial, epochs, point):
        return epochs == self.milestones(trial)[0]


class DrawsWithoutTheSeed(AshaScheduler):
    def decide(self, trial, epochs, point):
        return epochs in self.rungs and random.random() < 0.5


class ForgetsItsRungs(AshaScheduler):
    def load_state_dict(self, state):
        pass


class CountsOutsideItsState(AshaScheduler):
    """Stops no one in its first 20 reports, and leaves the count out of state_dict."""

    def decide(self, trial, epochs, point):
        self.seen = getattr(self, "seen", 0) + 1
        return super().decide(trial, epochs, point) and self.seen > 20


class StopsOneRungLate(AshaScheduler):
    def decide(self, trial, epochs, point):
        stop = super().decide(trial, epochs, point)
        return stop and epochs != min(self.rungs)


class StopsBetweenMilestones(AshaScheduler):
    def decide(self, trial, epochs, point):
        return super().decide(trial, epochs, point) or (epochs == 2 and point[0] < 0.3)


@pytest.mark.parametrize("broken, words", [
    (NeverStops, "stopped none of 12 trials"),
    (StopsEveryoneAtTheFirstRung, "the trial ahead of all others at every epoch was stopped"),
    (DrawsWithoutTheSeed, "the same seed and reports must give the same stop decisions"),
    (ForgetsItsRungs, r"state_dict\(\) after load_state_dict\(state\) differs from state"),
    (CountsOutsideItsState, "resumed from its checkpoint after .* reports makes other stop decisions"),
    (StopsOneRungLate, "not at its first milestone"),
    (StopsBetweenMilestones, "stopped after epoch 2, not a milestone"),
])
def test_the_conformance_suite_catches_a_broken_scheduler(broken, words):
    """The suite is not vacuous: each of these ASHA variants breaks one clause of the contract and fails it."""
    with pytest.raises(AssertionError, match=words):
        check_scheduler(broken)


def test_multi_objective_point_keeps_a_cheap_but_less_accurate_trial():
    """At its rung, a trial behind in val_acc but ahead in flops is in the first front: ASHA keeps it."""
    scheduler = make("asha", TWO, reduction_factor=2)
    for t in range(4):
        assert not scheduler.report(t, 1, {"val_acc": 0.9, "flops": 10.0})
    assert not scheduler.report(4, 1, {"val_acc": 0.5, "flops": 1.0})
    assert scheduler.report(5, 1, {"val_acc": 0.5, "flops": 20.0})  # dominated by four of six



@pytest.mark.parametrize("name", ["asha", "median"])
def test_a_training_metric_is_judged_in_its_own_direction(name):
    """`metrics: train_loss` judges the loss, lower better, and not the objective: a trial ahead in val_acc but
    behind in train_loss is stopped; and with two metrics a cheap objective keeps its direction."""
    scheduler = make(name, ONE, metrics="train_loss", grace_period=1, **({"reduction_factor": 2} if name == "asha"
                                                                          else {}))
    for t in range(4):
        assert not scheduler.report(t, 1, {"val_acc": 0.2, "train_loss": 0.5})
    assert scheduler.report(4, 1, {"val_acc": 0.9, "train_loss": 2.0})
    assert not scheduler.report(5, 1, {"val_acc": 0.1, "train_loss": 0.1})
    both = make(name, TWO, metrics=["train_loss", "flops"], grace_period=1)
    assert both.signs == [-1, -1]

@pytest.mark.parametrize("options, words", [
    ({"grace_period": 10}, "scheduler.grace_period=10 exceeds scheduler.max_epochs=9"),
    ({"reduction_factor": 1}, "scheduler.reduction_factor must be > 1"),
    ({"max_epochs": 12}, "scheduler.max_epochs=12 exceeds train.epochs=9"),
    ({"metrics": ["test_acc"]}, "'test_acc' is not an objective"),
    ({"brackets": 2}, "unknown config key scheduler.brackets"),
])
def test_bad_options_are_one_line_config_errors(options, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.").replace("(", r"\(")):
        make("asha", **options)


def search_config(budget=10, scheduler=None, objective=None, epochs=EPOCHS, **sections):
    return resolve([{"space": {"name": "curves"}, "strategy": {"name": "random"},
                     "search": {"budget": budget, "seed": 7}, "train": {"epochs": epochs},
                     "scheduler": {"name": "asha"} if scheduler is None else scheduler,
                     **({"objective": objective} if objective else {}),
                     **sections}])


def check_stopped(recs, epochs=EPOCHS):
    """Stopped trials are ok with their last epoch's metrics (cheap ones merged in); the others trained fully."""
    stopped = [r for r in recs if r["metrics"].get("stopped_early")]
    for r in recs:
        m, x = r["metrics"], r["arch"]["x"]
        assert r["status"] == "ok" and m["cost"] == x % 4
        if r in stopped:
            assert m["epochs"] < epochs and "test_acc" not in m
            assert m["val_acc"] == curve(x, int(m["epochs"]) - 1, epochs)
        else:
            assert m["epochs"] == epochs and m["test_acc"] == x / 16
    return stopped


def records(run):
    return [json.loads(line) for line in (Path(run) / "trials.jsonl").read_text().splitlines()]


def check_curves(run, recs, epochs=EPOCHS):
    """TensorBoard has each trial's learning curve (run trial-NNNN/epochs: trial/<metric> at every epoch it
    trained, val_acc on the curves space's curve) and the count of stopped trials."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for r in recs:
        trained, x = int(r["metrics"]["epochs"]), r["arch"]["x"]
        curves = EventAccumulator(str(Path(run) / "tb" / f"trial-{r['trial']:04d}" / "epochs")).Reload()
        assert sorted(curves.Tags()["scalars"]) == ["trial/cost", "trial/train_loss", "trial/val_acc"]
        val = curves.Scalars("trial/val_acc")
        assert [e.step for e in val] == list(range(1, trained + 1))
        assert [e.value for e in val] == pytest.approx([curve(x, e - 1, epochs) for e in range(1, trained + 1)])
        assert {e.value for e in curves.Scalars("trial/cost")} == {x % 4}
    top = EventAccumulator(str(Path(run) / "tb")).Reload()
    assert top.Scalars("search/stopped_early")[-1].value == sum("stopped_early" in r["metrics"] for r in recs)


def test_local_asha_stops_weak_trials_and_logs_their_curves(tmp_path):
    Search(search_config(), tmp_path / "run", progress=False).run()
    recs = records(tmp_path / "run")
    stopped = check_stopped(recs)
    assert 0 < len(stopped) < len(recs)
    best = max(recs, key=lambda r: r["arch"]["x"])
    assert best not in stopped
    check_curves(tmp_path / "run", recs)


def test_without_a_scheduler_every_trial_trains_to_the_end(tmp_path):
    recs = Search(search_config(scheduler={"name": "none"}), None, progress=False).run()
    assert all("stopped_early" not in r.metrics and "epochs" not in r.metrics for r in recs)


def test_local_multi_objective_stopping_keeps_the_pareto_front(tmp_path):
    objective = {"maximize": ["val_acc"], "minimize": ["cost"]}
    recs = [r.to_record() for r in Search(search_config(budget=14, objective=objective,
                                                        scheduler={"name": "asha", "reduction_factor": 2}),
                                          None, progress=False).run()]
    stopped = check_stopped(recs)
    assert stopped
    for r in stopped:  # each stopped trial is behind a kept one in both val_acc (at full training) and cost
        x = r["arch"]["x"]
        assert any(o["arch"]["x"] > x and o["metrics"]["cost"] <= x % 4 for o in recs if o not in stopped)


def test_old_execution_keys_are_read_as_the_scheduler_section(caplog):
    with caplog.at_level(logging.WARNING, logger="sparsenas"):
        config = search_config(scheduler={}, execution={"scheduler": "asha", "asha_grace_period": 2,
                                                        "asha_reduction_factor": 4})
        search_config(scheduler={}, execution={"scheduler": "asha"})
    assert config["scheduler"] == {"name": "asha", "max_epochs": None, "metrics": None, "grace_period": 2,
                                   "reduction_factor": 4.0}
    assert "scheduler" not in config["execution"]
    assert search_config(scheduler={}, execution={"scheduler": "fifo"})["scheduler"]["name"] == "none"
    assert sum("execution.scheduler is deprecated" in r.message for r in caplog.records) <= 1


@pytest.mark.parametrize("sets, words", [
    (["scheduler.name=asha", "scheduler.grace_period=3"], "scheduler.grace_period=3 exceeds"),
    (["scheduler.name=hyperband", "scheduler.reduction_factor=1"], "scheduler.reduction_factor must be > 1"),
    (["scheduler.name=asha", "objective.maximize=[test_acc]"], "'test_acc' is not reported per epoch"),
    (["scheduler.name=fastest"], "unknown scheduler 'fastest'"),
    (["execution.scheduler=pbt"], "execution.scheduler must be fifo or asha"),
])
def test_bad_settings_exit_2_with_one_line_before_writing(runs, capsys, sets, words):
    code = cli("search", "--space", "dass", "--strategy", "random", *FAST, "--set", "train.epochs=2",
               *[a for s in sets for a in ("--set", s)], "--runs-dir", runs, "--name", "bad")
    err = capsys.readouterr().err.strip()
    assert code == 2 and words in err and len(err.splitlines()) == 1
    assert not (runs / "bad").exists()


def test_space_without_per_epoch_reports_refuses_a_scheduler():
    import faulty_plugin  # noqa: F401 — registers `faulty`, whose evaluate takes no on_epoch

    config = resolve([{"space": {"name": "faulty"}, "strategy": {"name": "random"}, "scheduler": {"name": "median"}}])
    with pytest.raises(ConfigError, match="needs per-epoch reports, and space 'faulty' reports none"):
        Search(config, None, progress=False)


def test_kill_9_and_resume_keep_every_trial_once_and_the_rungs(runs):
    budget, env = 10, {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    common = ["--allow-import", "scheduler_plugin", "search", "--space", "curves", "--strategy", "random",
              "--set", "space.sleep_s=0.03", "--set", f"train.epochs={EPOCHS}", "--set", "scheduler.name=asha",
              "--budget", budget, "--seed", 2, "--runs-dir", runs, "--quiet"]
    subprocess.run(cli_subprocess_cmd(*common, "--name", "clean"), env=env, check=True, capture_output=True)
    checkpoint, rng, kills = runs / "killed" / "state" / "checkpoint.json", np.random.default_rng(0), 0
    cmd = cli_subprocess_cmd(*common, "--name", "killed")
    for _ in range(3):  # kill at a random moment once this process checkpointed (it is searching), then resume
        start = time.time()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and time.time() - start < 60 and (
                not checkpoint.exists() or checkpoint.stat().st_mtime < start):
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        cmd = cli_subprocess_cmd("--allow-import", "scheduler_plugin", "search", "--resume", "--name", "killed",
                                 "--runs-dir", runs, "--quiet")
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    assert kills >= 2
    got, clean = records(runs / "killed"), records(runs / "clean")
    assert sorted(r["trial"] for r in got) == list(range(budget))
    strip = lambda r: (r["trial"], r["arch_id"], r["status"], r["metrics"])  # noqa: E731
    assert sorted(map(strip, got)) == sorted(map(strip, clean))
    state = [json.loads((runs / n / "state" / "checkpoint.json").read_text())["state"]["scheduler"]
             for n in ("killed", "clean")]
    assert state[0] == state[1] and any(state[0]["rungs"].values())
