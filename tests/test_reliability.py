"""Failing trials, torn journals, kill -9 and resume, plug-ins only through --allow-import."""
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import FAST, cli, cli_subprocess_cmd
from sparsenas.journal import Journal


def records(run):
    return [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]


def test_plugins_load_only_when_allowed(runs, capsys, monkeypatch):
    from sparsenas.space import SPACES

    monkeypatch.delitem(SPACES._items, "faulty", raising=False)  # as in a fresh process: another test imported it
    args = ["search", "--space", "faulty", "--strategy", "random", "--runs-dir", runs, "--quiet"]
    assert cli(*args, "--name", "a") == 2
    assert "unknown space 'faulty'" in capsys.readouterr().err
    assert cli("--allow-import", "no_such_module_xyz", *args, "--name", "b") == 2
    assert "--allow-import no_such_module_xyz" in capsys.readouterr().err
    assert not runs.exists() or not any(runs.iterdir())


def test_raising_and_nan_trials_are_recorded_failed_and_the_budget_completes(runs):
    assert cli("--allow-import", "faulty_plugin", "search", "--space", "faulty", "--strategy", "random",
               "--budget", 12, "--name", "f", "--runs-dir", runs, "--quiet") == 0
    recs = records(runs / "f")
    assert len(recs) == 12
    for r in recs:
        if r["arch"]["mode"] == "ok":
            assert r["status"] == "ok" and r["error"] is None
        else:
            assert r["status"] == "failed"
            want = "RuntimeError: evaluator exploded" if r["arch"]["mode"] == "raise" else "not finite"
            assert want in r["error"]
    assert {r["arch"]["mode"] for r in recs} == {"ok", "raise", "nan"}
    best = json.loads((runs / "f" / "best.json").read_text())
    assert best["arch"]["mode"] == "ok"


def test_only_failing_search_stops_at_max_failures(runs, capsys):
    assert cli("--allow-import", "faulty_plugin", "search", "--space", "faulty", "--strategy", "random",
               "--set", "space.modes=[raise]", "--budget", 10, "--max-failures", 3, "--name", "m",
               "--runs-dir", runs, "--quiet") == 1
    assert "stopped after 3 failed trials in a row" in capsys.readouterr().err
    assert len(records(runs / "m")) == 3


def test_diverging_training_fails_the_trial(runs):
    assert cli("search", "--space", "dass", "--strategy", "random", "--budget", 1, "--name", "n", "--runs-dir", runs,
               *FAST, "--set", "train.lr=1e12", "--set", "train.grad_clip=null") == 1  # every trial failed
    rec = records(runs / "n")[0]
    assert rec["status"] == "failed" and "non-finite training loss" in rec["error"]


class Crash(Exception):
    pass


def test_torn_last_line_is_dropped_on_resume(runs, monkeypatch):
    """A crash in the middle of writing trial 2's line: the half line is cut off and trial 2 runs again."""
    original = Journal.append

    def tearing_append(self, result):
        if result.trial == 2:
            with open(self.path, "a") as f:
                f.write(json.dumps(result.to_record())[:25])
            raise Crash
        original(self, result)

    args = ["--allow-import", "faulty_plugin", "search", "--space", "faulty", "--strategy", "random",
            "--set", "space.modes=[ok]", "--budget", 4, "--runs-dir", runs, "--quiet"]
    assert cli(*args, "--name", "clean") == 0
    monkeypatch.setattr(Journal, "append", tearing_append)
    try:
        cli(*args, "--name", "t")
    except Crash:
        pass
    journal = runs / "t" / "trials.jsonl"
    assert not journal.read_text().endswith("\n")
    monkeypatch.setattr(Journal, "append", original)
    assert [r.trial for r in Journal(journal).load()] == [0, 1]
    assert journal.read_text().endswith("\n")  # the torn line is gone from the file
    assert cli("--allow-import", "faulty_plugin", "search", "--resume", "--name", "t", "--runs-dir", runs,
               "--quiet") == 0
    got, clean = records(runs / "t"), records(runs / "clean")
    assert [r["trial"] for r in got] == [0, 1, 2, 3]
    assert [r["arch_id"] for r in got] == [r["arch_id"] for r in clean]


@pytest.mark.parametrize("strategy", ["evolution", "tpe", "opgfn"])
def test_kill_9_at_random_points_then_resume_gives_the_uninterrupted_trajectory(strategy, runs):
    """>= 5 kills of the search process at random moments; the resumed run equals a clean one."""
    budget = 16
    common = ["--allow-import", "faulty_plugin", "search", "--space", "faulty", "--strategy", strategy,
              "--set", "space.modes=[ok]", "--set", "space.delay_s=0.15", "--budget", budget, "--seed", 4,
              "--runs-dir", runs, "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    subprocess.run(cli_subprocess_cmd(*common, "--name", "clean"), env=env, check=True, capture_output=True)
    journal, rng, kills = runs / "killed" / "trials.jsonl", random.Random(0), 0
    cmd = cli_subprocess_cmd(*common, "--name", "killed")
    while True:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if kills < 5:
            done = len(journal.read_text().splitlines()) if journal.exists() else 0
            deadline = time.time() + 120
            while proc.poll() is None and time.time() < deadline:  # wait for one more trial, then a random delay
                if journal.exists() and len(journal.read_text().splitlines()) > done:
                    time.sleep(rng.uniform(0, 0.3))
                    break
                time.sleep(0.005)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
                cmd = cli_subprocess_cmd("--allow-import", "faulty_plugin", "search", "--resume", "--name", "killed",
                                         "--runs-dir", runs, "--quiet")
                continue
        assert proc.wait(timeout=300) == 0
        break
    assert kills >= 5
    got, clean = records(runs / "killed"), records(runs / "clean")
    assert [r["trial"] for r in got] == list(range(budget))
    strip = lambda r: (r["trial"], r["arch_id"], r["status"], r["metrics"], r["seed"])  # noqa: E731
    assert list(map(strip, got)) == list(map(strip, clean))


def test_executor_that_cannot_start_leaves_nothing_behind(runs, capsys):
    assert cli("search", "--space", "dass", "--strategy", "random", "--executor", "ray", "--address", "127.0.0.2:9",
               "--name", "r", "--runs-dir", runs, "--quiet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "127.0.0.2:9" in err
    assert not (runs / "r").exists()
