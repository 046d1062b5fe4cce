"""The default differentiable search with and without two CPU hogs: does it keep to its threads?

Runs `sparsenas search --space dass --strategy differentiable` (preset defaults; `--set` overrides appended)
once on the machine as it is, then again while `--hogs` processes spin (`while True: pass`), and reports both
wall times and their ratio. The supernet job runs as a trial with `execution.cpus_per_trial` torch threads, so
a hog costs it at most the share of the cores the hogs take; torch's default of one thread per core would
instead spin-wait against them (the issue measured > 25 min against ~2 min idle).

    python benchmarks/differentiable_under_load.py [--hogs 2] [--set KEY=VALUE ...]

Last line: RESULT idle_s=… hog_s=… ratio=…
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def timed_search(runs: str, name: str, overrides: list[str]) -> float:
    cmd = [sys.executable, "-m", "sparsenas", "search", "--space", "dass", "--strategy", "differentiable",
           "--name", name, "--runs-dir", runs, "--quiet"]
    for item in overrides:
        cmd += ["--set", item]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hogs", type=int, default=2, help="CPU-spinning processes during the second run")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as runs:
        load_idle = os.getloadavg()[0]
        idle = timed_search(runs, "idle", args.overrides)
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
        try:
            hog = timed_search(runs, "hog", args.overrides)
            load_hog = os.getloadavg()[0]
        finally:
            for h in hogs:
                h.kill()
                h.wait()
    print(f"{'run':<10} {'wall s':>8} {'load avg':>9}")
    print(f"{'idle':<10} {idle:>8.1f} {load_idle:>9.1f}")
    print(f"{f'{args.hogs} hogs':<10} {hog:>8.1f} {load_hog:>9.1f}")
    print(f"RESULT idle_s={idle:.1f} hog_s={hog:.1f} ratio={hog / idle:.2f}")


if __name__ == "__main__":
    main()
