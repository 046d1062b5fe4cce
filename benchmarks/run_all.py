"""Every experiment of RESULTS.md, one command: runs the benchmark scripts and writes RESULTS.md from their output.

    python benchmarks/run_all.py                   # everything (~3 h on an idle 2-core CPU), then RESULTS.md
    python benchmarks/run_all.py --only dass,nb201 # re-run some; the others' last records are kept
    python benchmarks/run_all.py --render          # only rewrite RESULTS.md from docs/results/*.json
    python benchmarks/run_all.py --only early_stopping -- --minutes 120  # one script, with more arguments

Each experiment is a script in benchmarks/ that ends with a `RESULT …` line and writes, with `--json`, its
rows, summary, markdown section and figures (benchmarks/report.py). Records, logs and figures go to
docs/results/; RESULTS.md is assembled from them only, so every number in it comes from a script's output.
Training experiments use one torch thread and one process each and run `--jobs` at a time; timing experiments (latency,
sparse speed, structure search) run alone, after the others, so that nothing else competes for the CPU while they
measure. The `minutes` estimates add up to ~240 min of training experiments (two at a time) and ~77 min of timing ones.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from report import fmt

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results"
RESULTS = ROOT / "RESULTS.md"


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    script: str
    args: tuple[str, ...] = ()
    minutes: float = 5.0  # estimated, alone on an idle 2-core CPU: the longest start first
    timing: bool = False  # measures wall-clock speed: run alone


EXPERIMENTS = (
    Experiment("random_search_baseline", "Random search as a baseline for sparse NAS", "random_search_baseline.py",
               minutes=12),
    Experiment("random_pruning_erk", "Random pruning: uniform vs ER vs ERK", "random_pruning_erk.py", minutes=22),
    Experiment("dass", "DASS vs DARTS-then-prune vs random", "dass_vs_baselines.py", minutes=52),
    Experiment("tas", "TAS: FLOP target and distillation", "tas_kd.py", minutes=13),
    Experiment("sparse_ift_mnist", "Sparse-IFT members at iso-FLOP (MNIST)", "sparse_ift_members.py",
               ("--dataset", "mnist", "--workers", "1"), minutes=30),
    Experiment("sparse_ift_digits", "Sparse-IFT members at iso-FLOP (digits)", "sparse_ift_members.py",
               ("--dataset", "digits", "--workers", "1"), minutes=6),
    Experiment("nb201", "Strategies on NAS-Bench-201", "nb201_strategies.py", ("--workers", "1"),
               minutes=40),
    Experiment("latency", "Latency predictor accuracy", "latency_accuracy.py", ("--hog", "2"), minutes=40,
               timing=True),
    Experiment("sparse_speed", "Sparse execution speed", "sparse_speed.py", minutes=12, timing=True),
    Experiment("layerwise", "Layer-wise sparsity of a user model: search vs uniform / ERK / random",
               "layerwise_search.py", minutes=20),
    Experiment("early_stopping", "Early stopping: schedulers on random and tpe (dass and model space, MNIST 14×14)",
               "early_stopping.py", ("--jobs", "2"), minutes=55),
    Experiment("structure_search", "Sparsity structure as a search dimension (latency-aware, exported)",
               "structure_search.py", minutes=25, timing=True),
    Experiment("dass_default", "The default differentiable DASS run vs the default random search",
               "dass_default.py", minutes=10),
)
BY_NAME = {e.name: e for e in EXPERIMENTS}


def command(e: Experiment, extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, str(ROOT / "benchmarks" / e.script), *e.args, *extra, "--json",
            str(OUT / f"{e.name}.json")]


def run(e: Experiment, extra: tuple[str, ...] = ()) -> dict:
    """Run one experiment, with `extra` arguments after its own; its stdout+stderr go to docs/results/<name>.log.
    Returns its status record (its command as run)."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    OUT.mkdir(parents=True, exist_ok=True)
    for stale in (f"{e.name}.json", f"{e.name}.status.json"):  # a failed run must not leave an older record
        (OUT / stale).unlink(missing_ok=True)
    start = time.perf_counter()
    print(f"[run_all] {e.name}: started", flush=True)
    with open(OUT / f"{e.name}.log", "w") as log:
        rc = subprocess.run(command(e, extra), cwd=ROOT / "benchmarks", stdout=log, stderr=subprocess.STDOUT,
                            env=env).returncode
    status = {"rc": rc, "seconds": round(time.perf_counter() - start, 1),
              "command": " ".join(["python", f"benchmarks/{e.script}", *e.args, *extra]),
              "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine()}
    (OUT / f"{e.name}.status.json").write_text(json.dumps(status) + "\n")
    print(f"[run_all] {e.name}: rc={rc} in {status['seconds']:.0f} s", flush=True)
    return status


def machines(statuses) -> str:
    """The machines the records ran on, with how many each (a timing is only comparable on one machine)."""
    count = Counter(s.get("machine", "not recorded (records before 2026-11-28 12:00)") for s in statuses)
    return "; ".join(f"{m}: {n} record{'s' if n > 1 else ''}" for m, n in count.most_common()) or "none yet"


def machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return (f"{cpu or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"torch {torch.__version__}, no GPU used")


_IMAGE = re.compile(r"!\[([^\]]*)\]\((?![a-z]+:|/)([^)\s]+)\)")  # a figure linked relative to its record


def _relative(path: str | Path) -> str:
    """A record's figure as a link from the repository root: figures live beside their record in docs/results/
    (older records name them by an absolute path of the checkout that ran them: only the name is kept)."""
    return str((OUT / Path(path).name).relative_to(ROOT))


def section(number: int, e: Experiment) -> str:
    """The RESULTS.md section of one experiment, from its record, status and log."""
    status_file, record_file = OUT / f"{e.name}.status.json", OUT / f"{e.name}.json"
    head = f"## {number}. {e.title}\n\n"
    if not status_file.exists():
        return head + "_Not run yet: `python benchmarks/run_all.py --only " + e.name + "`._\n"
    status = json.loads(status_file.read_text())
    meta = (f"`{status['command']}` — {status['seconds'] / 60:.1f} min, finished {status['finished']}"
            f"{' on ' + status['machine'] if 'machine' in status else ''}; "
            f"log: [docs/results/{e.name}.log](docs/results/{e.name}.log)\n\n")
    if status["rc"] != 0 or not record_file.exists():
        tail = (OUT / f"{e.name}.log").read_text().splitlines()[-15:]
        return head + meta + f"**Failed** (exit code {status['rc']}). Last lines of the log:\n\n```\n" + \
            "\n".join(tail) + "\n```\n"
    record = json.loads(record_file.read_text())
    markdown = _IMAGE.sub(lambda m: f"![{m[1]}]({_relative(OUT / m[2])})", record.get("markdown", ""))
    figures = "".join(f"\n\n![{Path(f).stem}]({_relative(f)})" for f in record.get("figures", [])
                      if f"({_relative(f)})" not in markdown)
    result = " ".join(f"{k}={fmt(v)}" for k, v in record["summary"].items())
    return head + meta + markdown + figures + f"\n\n`RESULT {result}`\n"


def _last_full_run() -> dict | None:
    path = OUT / "run_all.status.json"
    return json.loads(path.read_text()) if path.exists() else None


def render() -> None:
    statuses = {e.name: json.loads(path.read_text()) for e in EXPERIMENTS
                if (path := OUT / f"{e.name}.status.json").exists()}
    total = sum(s["seconds"] for s in statuses.values()) / 60
    failed = [name for name, s in statuses.items() if s["rc"] != 0]
    header = [
        "# Results",
        "",
        "Written by `python benchmarks/run_all.py` from the records its benchmark scripts left in docs/results/: "
        "every measured number comes from a script's output. Figures quoted from papers for comparison (the NB201 "
        "paper's Table 5 column, nn-Meter's accuracy) are typed in the scripts and named with their source. Small "
        "scale, on a CPU: each section says what was scaled down from the paper and whether the paper's claim "
        "holds here.",
        "",
        f"- Machines: {machines(statuses.values())}",
        f"- Experiments run: {len(statuses)} of {len(EXPERIMENTS)}, {total:.0f} min of script time in all"
        + (f"; **failed: {', '.join(failed)}**" if failed else ""),
        *([f"- Last run of all experiments in one command: {full['minutes']:.0f} min wall clock, finished "
           f"{full['finished']}"] if (full := _last_full_run()) else []),
        "",
    ]
    RESULTS.write_text("\n".join(header) + "\n" + "\n".join(section(i, e) for i, e in enumerate(EXPERIMENTS, 1)))
    print(f"[run_all] wrote {RESULTS.relative_to(ROOT)}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BY_NAME)}")
    p.add_argument("--jobs", type=int, default=2, help="training experiments run at once (1 torch thread each)")
    p.add_argument("--render", action="store_true", help="only rewrite RESULTS.md from docs/results/")
    p.add_argument("extra", nargs="*", help="after --: more arguments for the script of the one --only experiment "
                   "(recorded in its status)")
    args = p.parse_args(argv)
    unknown = [n for n in args.only.split(",") if n and n not in BY_NAME]
    if unknown:
        p.error(f"unknown experiment {unknown[0]!r} (known: {', '.join(BY_NAME)})")
    named = [BY_NAME[n] for n in args.only.split(",") if n]
    chosen = named or list(EXPERIMENTS)
    if args.extra and (len(named) != 1 or args.render):
        p.error("arguments after -- go to one experiment's script: name it alone with --only")
    extra = tuple(args.extra)
    if not args.render:
        start = time.perf_counter()
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            training = sorted((e for e in chosen if not e.timing), key=lambda e: -e.minutes)
            statuses = list(pool.map(lambda e: run(e, extra), training))
        statuses += [run(e, extra) for e in chosen if e.timing]
        if len(chosen) == len(EXPERIMENTS):
            (OUT / "run_all.status.json").write_text(json.dumps({
                "minutes": round((time.perf_counter() - start) / 60, 1), "jobs": args.jobs,
                "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}) + "\n")
        render()
        return 1 if any(s["rc"] for s in statuses) else 0
    render()
    return 0


if __name__ == "__main__":
    sys.exit(main())
