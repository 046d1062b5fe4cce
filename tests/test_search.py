"""End-to-end searches through the CLI on tiny settings (digits, 1 epoch, 128 training samples)."""
import json
import os
import signal
import subprocess
import time

import yaml

from conftest import FAST, cli, cli_subprocess_cmd

TIMINGS = {"duration_s", "train_time_s", "worker"}


def records(run):
    return [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]


def strip_timings(rec):
    rec = {k: v for k, v in rec.items() if k not in TIMINGS}
    rec["metrics"] = {k: v for k, v in rec["metrics"].items() if k not in TIMINGS}
    return rec


def test_search_writes_the_run_directory_contract(runs):
    assert cli("search", "--space", "dass", "--strategy", "random", "--budget", 3, "--name", "r",
               "--runs-dir", runs, *FAST) == 0
    run = runs / "r"
    recs = records(run)
    assert [r["trial"] for r in recs] == [0, 1, 2]
    for r in recs:
        assert set(r) == {"trial", "arch", "arch_id", "label", "status", "metrics", "seed", "duration_s", "worker",
                          "error"}
        assert r["status"] == "ok" and r["error"] is None and r["worker"] == "local"
        m = r["metrics"]
        for key in ("val_acc", "test_acc", "params", "nnz", "flops", "flops_sparse", "sparsity", "train_time_s"):
            assert key in m
        assert 0 < m["sparsity"] < 1 and m["flops_sparse"] < m["flops"] and m["nnz"] < m["params"]
    assert len({r["arch_id"] for r in recs}) == 3
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["train"]["epochs"] == 1 and config["search"]["budget"] == 3
    best = json.loads((run / "best.json").read_text())
    assert best["metrics"]["val_acc"] == max(r["metrics"]["val_acc"] for r in recs)
    assert (run / "pareto.csv").read_text().startswith("trial,arch_id,val_acc,flops_sparse")
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    assert json.loads((run / "state" / "checkpoint.json").read_text())["format"] == 2


def test_sparsity_matches_the_keep_ratios(runs):
    assert cli("search", "--space", "dass", "--strategy", "random", "--budget", 2, "--name", "k", "--runs-dir", runs,
               *FAST, "--set", "space.keep_ratios=[0.1]", "--set", "space.stem_head_keep=0.1") == 0
    for r in records(runs / "k"):
        assert abs(r["metrics"]["sparsity"] - 0.9) < 0.01


def test_same_seed_gives_identical_trials(runs):
    for name in ("a", "b"):
        assert cli("search", "--space", "dass", "--strategy", "random", "--budget", 3, "--seed", 5, "--name", name,
                   "--runs-dir", runs, *FAST) == 0
    assert list(map(strip_timings, records(runs / "a"))) == list(map(strip_timings, records(runs / "b")))


def test_time_limit_fails_the_trial_and_the_search_goes_on(runs):
    assert cli("search", "--space", "dass", "--strategy", "random", "--budget", 2, "--name", "t", "--runs-dir", runs,
               *FAST, "--set", "search.trial_timeout_s=0.000001") == 1  # every trial failed: exit 1
    recs = records(runs / "t")
    assert [r["status"] for r in recs] == ["failed", "failed"]
    assert "time limit" in recs[0]["error"]


def test_max_failures_stops_a_failing_search(runs, capsys):
    assert cli("search", "--space", "dass", "--strategy", "random", "--budget", 5, "--name", "f", "--runs-dir", runs,
               *FAST, "--set", "search.trial_timeout_s=0.000001", "--max-failures", 2) == 1
    assert "2 failed trials in a row" in capsys.readouterr().err
    assert len(records(runs / "f")) == 2


def test_resume_extends_the_budget_and_refuses_a_changed_space(runs, capsys):
    args = ["--name", "x", "--runs-dir", runs, *FAST]
    assert cli("search", "--space", "dass", "--strategy", "random", "--budget", 2, *args) == 0
    before = (runs / "x" / "trials.jsonl").read_text()
    assert cli("search", "--resume", "--budget", 3, *args) == 0
    recs = records(runs / "x")
    assert [r["trial"] for r in recs] == [0, 1, 2] and (runs / "x" / "trials.jsonl").read_text().startswith(before)
    assert cli("search", "--resume", *args, "--set", "train.epochs=3") == 2
    assert "--resume cannot change train.epochs" in capsys.readouterr().err
    (runs / "x" / "config.yaml").write_text((runs / "x" / "config.yaml").read_text().replace("name: dass", "name: tas"))
    assert cli("search", "--resume", "--space", "dass", *args) == 2
    assert len(records(runs / "x")) == 3


def test_killed_search_resumes_without_losing_or_duplicating_trials(runs):
    """kill -9 at several points; the resumed run equals an uninterrupted one (local executor, fixed seed)."""
    budget = 6
    common = ["--space", "dass", "--strategy", "random", "--budget", budget, "--seed", 11, "--runs-dir", runs, *FAST]
    assert cli("search", *common, "--name", "clean") == 0
    journal = runs / "killed" / "trials.jsonl"
    kills = 0
    cmd = cli_subprocess_cmd("search", *common, "--name", "killed")
    while True:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = (len(journal.read_text().splitlines()) if journal.exists() else 0) + 1
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            if journal.exists() and len(journal.read_text().splitlines()) >= target:
                time.sleep(0.05 * kills)  # vary the point of the kill: mid-trial, mid-checkpoint
                break
            time.sleep(0.01)
        if proc.poll() is not None:
            assert proc.returncode == 0
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        cmd = cli_subprocess_cmd("search", "--resume", "--name", "killed", "--runs-dir", runs, "--quiet")
    assert kills >= 2
    got = records(runs / "killed")
    assert [r["trial"] for r in got] == list(range(budget))
    assert list(map(strip_timings, got)) == list(map(strip_timings, records(runs / "clean")))
