"""Crash safety at scale: searches killed with SIGKILL at random points and resumed lose and repeat nothing.

local — an evolution search of `--budget` trials on the NB201 table (../shared/data/nb201/nb201_cifar.csv),
        killed `--kills` times at random moments (uniform over the expected run time) and resumed each time,
        against the same search run once without interruption (same seed): the resumed run must hold exactly
        `--budget` distinct trials and the same trajectory (trial, arch, metrics, seed of every trial).
ray   — the same with `--executor ray --workers 2` (`--ray-budget` trials, the trivial `nb201` table trials):
        every trial exactly once; the order may differ from an uninterrupted run, so only the set is checked.
second — while a search runs, a second `search --resume` of the same run: it must exit 2 having written
        nothing, and the first must finish its budget with every trial exactly once.

    python benchmarks/crash_safety.py [--budget 3000] [--kills 3] [--ray-budget 300] [--skip-ray]

Last line: RESULT local_trials=… local_distinct=… local_same_trajectory=… ray_trials=… ray_distinct=…
second_refused=… second_trials=… seconds=…
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT.parent / "shared" / "data" / "nb201" / "nb201_cifar.csv"


def sparsenas(*args) -> list[str]:
    return [sys.executable, "-m", "sparsenas", *map(str, args)]


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]


def killed_and_resumed(start: list[str], resume: list[str], kills: int, span_s: float, seed: int) -> int:
    """Run `start`, SIGKILL it `kills` times at random moments within `span_s` seconds, resuming with `resume`
    after each kill, then resume to the end; return how many kills hit a running search."""
    rng, cmd, hits = random.Random(seed), start, 0
    moments = sorted(rng.uniform(0.1, 1.0) * span_s / (kills + 1) for _ in range(kills))
    for delay in moments:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay + 3.0)  # the interpreter and torch take ~3 s to start
        if proc.poll() is None:
            proc.kill()
            hits += 1
        proc.wait()
        cmd = resume
    final = subprocess.run(cmd, capture_output=True, text=True)
    if final.returncode != 0:
        raise SystemExit(f"final resume failed ({final.returncode}): {final.stderr.strip()}")
    return hits


def trajectory(run: Path) -> list[tuple]:
    return [(r["trial"], r["arch_id"], r["status"], json.dumps(r["metrics"], sort_keys=True), r["seed"])
            for r in records(run)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=3000)
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--ray-budget", type=int, default=300)
    p.add_argument("--skip-ray", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    started = time.perf_counter()
    rows, summary = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        common = ["--space", "nb201", "--strategy", "evolution", "--set", f"space.benchmark_file={TABLE}",
                  "--seed", args.seed, "--runs-dir", runs, "--quiet"]

        t0 = time.perf_counter()
        subprocess.run(sparsenas("search", *common, "--budget", args.budget, "--name", "clean"), check=True,
                       capture_output=True)
        clean_s = time.perf_counter() - t0
        hits = killed_and_resumed(sparsenas("search", *common, "--budget", args.budget, "--name", "killed"),
                                  sparsenas("search", "--resume", "--name", "killed", "--runs-dir", runs, "--quiet"),
                                  args.kills, clean_s, args.seed)
        got, clean = trajectory(runs / "killed"), trajectory(runs / "clean")
        summary.update(local_trials=len(got), local_distinct=len({t[0] for t in got}), local_kills=hits,
                       local_same_trajectory=int(got == clean))
        rows.append(("local", args.budget, hits, len(got), len({t[0] for t in got}), got == clean,
                     f"{clean_s:.0f}"))

        if not args.skip_ray:
            ray = [*common, "--executor", "ray", "--workers", 2, "--budget", args.ray_budget]
            t0 = time.perf_counter()
            subprocess.run(sparsenas("search", *ray, "--name", "ray-clean"), check=True, capture_output=True)
            ray_s = time.perf_counter() - t0
            hits = killed_and_resumed(sparsenas("search", *ray, "--name", "ray-killed"),
                                      sparsenas("search", "--resume", "--name", "ray-killed", "--runs-dir", runs,
                                                "--quiet"), args.kills, ray_s, args.seed + 1)
            got = records(runs / "ray-killed")
            distinct = len({r["trial"] for r in got})
            summary.update(ray_trials=len(got), ray_distinct=distinct, ray_kills=hits)
            rows.append(("ray", args.ray_budget, hits, len(got), distinct, "(order may differ)", f"{ray_s:.0f}"))

        first = subprocess.Popen(sparsenas("search", *common, "--budget", 600, "--name", "shared"),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        journal = runs / "shared" / "trials.jsonl"
        while not journal.exists() and first.poll() is None:
            time.sleep(0.05)
        config = (runs / "shared" / "config.yaml").read_bytes()
        second = subprocess.run(sparsenas("search", "--resume", "--name", "shared", "--budget", 900,
                                          "--runs-dir", runs, "--quiet"), capture_output=True, text=True)
        first.wait()
        got = records(runs / "shared")
        refused = second.returncode == 2 and (runs / "shared" / "config.yaml").read_bytes() == config
        summary.update(second_refused=int(refused), second_trials=len(got),
                       second_distinct=len({r["trial"] for r in got}))
        rows.append(("second process", 600, 0, len(got), len({r["trial"] for r in got}),
                     f"second exit {second.returncode}: {second.stderr.strip()[:60]}", ""))

    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'run':<15} {'budget':>6} {'kills':>5} {'trials':>6} {'distinct':>8}  same trajectory / note   clean s")
    for name, budget, kills, n, distinct, same, secs in rows:
        print(f"{name:<15} {budget:>6} {kills:>5} {n:>6} {distinct:>8}  {str(same):<24} {secs}")
    summary["seconds"] = round(time.perf_counter() - started)
    print("RESULT " + " ".join(f"{k}={v}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
