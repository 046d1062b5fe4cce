"""Headless-Chromium screenshots of `sparsenas tensorboard` for a run: the HParams, Scalars and Time Series
pages, as PNGs for a person to look at; the Time Series page's DOM is checked for the first cards' tags and
every trial's run (the HParams and Scalars pages are Polymer widgets whose shadow DOM --dump-dom does not
show; tests/test_tracking.py reads the HParams data from the HTTP API instead).

    python benchmarks/tensorboard_screenshot.py RUN_DIR [--out DIR] [--chromium /usr/bin/chromium]

Needs Debian's chromium (`apt-get install -y chromium`). Chromium runs with --headless --no-sandbox and
background networking, component updates, sync and QUIC off, in a fresh empty profile; it only talks to
the TensorBoard on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sparsenas.tensorboard_server import background

PAGES = ("hparams", "scalars", "timeseries")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def chromium(binary: str, url: str, *args: str, budget_ms: int = 15000, timeout_s: float = 120) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc = subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", "--window-size=1600,1000",
                               f"--virtual-time-budget={budget_ms}", *args, url],
                              capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited {proc.returncode}: {proc.stderr[-500:]}")
    return proc.stdout


def wait_for_runs(url: str, expected: set[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(url + "data/runs", timeout=10) as response:
            if expected <= set(json.loads(response.read())):
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"TensorBoard did not load {sorted(expected)} within {timeout_s:g} s")
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("."), help="where the PNGs go (default: .)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    trials = [json.loads(line)["trial"] for line in (args.run_dir / "trials.jsonl").read_text().splitlines()]
    runs = {"."} | {f"trial-{t:04d}" for t in trials}
    rows, start = [], time.perf_counter()
    with background(args.run_dir, 0) as url:
        wait_for_runs(url, runs)
        for page in PAGES:
            t0 = time.perf_counter()
            png = args.out / f"tensorboard_{page}.png"
            chromium(args.chromium, f"{url}#{page}", f"--screenshot={png}")
            rows.append([page, png.name, str(png.stat().st_size), f"{time.perf_counter() - t0:.1f}"])
        dom = chromium(args.chromium, f"{url}#timeseries", "--dump-dom")
    wanted = ["best/val_acc", "best_by_time/val_acc", *sorted(runs - {"."})]  # cards in view, every trial run
    missing = [w for w in wanted if w not in dom]
    print(f"{'page':<12}{'file':<28}{'bytes':>9}{'seconds':>9}")
    for row in rows:
        print(f"{row[0]:<12}{row[1]:<28}{row[2]:>9}{row[3]:>9}")
    shown = f"best/val_acc, best_by_time/val_acc and the {len(runs) - 1} trial runs"
    print(f"time-series DOM: {'has ' + shown if not missing else 'MISSING ' + ', '.join(missing[:5])}")
    pages_ok = sum(int(r[2]) > 20000 for r in rows)
    print(f"RESULT pages_ok={pages_ok} dom_ok={int(not missing)} total_s={time.perf_counter() - start:.1f}")
    return 0 if pages_ok == len(PAGES) and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
