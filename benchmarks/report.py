"""What every benchmark shares: summary statistics, the paired test, and the `--json` record that
`benchmarks/run_all.py` turns into RESULTS.md.

A benchmark script imports this module as `from report import ...` (scripts run from benchmarks/, so it is on
sys.path), adds `add_json_argument(parser)`, and ends with `finish(args, name, rows, summary, markdown=...)`,
which prints the `RESULT k=v …` line and, with `--json PATH`, writes
    {"name", "argv", "rows": [{...}, ...], "summary": {k: number}, "markdown": str, "figures": [...], "extra": {...}}
atomically. `rows` are the per-seed measurements, `summary` the numbers of the RESULT line, `markdown` the
script's own section of RESULTS.md (tables from `markdown_table`, and a verdict worded from the numbers —
never typed by hand), `figures` the file names of the PNGs it wrote with `figure_path(args, "suffix")` (next to the JSON, so a record
renders in any checkout).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
MNIST = SHARED_DATA / "mnist" / "mnist.pkl.gz"


def mean_std(values) -> tuple[float, float]:
    values = list(values)
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def ci95(values) -> float:
    """Half-width of the 95% Student-t confidence interval of the mean (0 for fewer than 2 values)."""
    from scipy import stats

    values = list(values)
    if len(values) < 2:
        return 0.0
    return float(stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)))


def paired_test(a, b) -> dict[str, float]:
    """Paired comparison of two equally seeded samples: mean difference a − b, its 95% CI half-width and the
    two-sided p-values of the paired t-test and of the Wilcoxon signed-rank test (1.0 when all differences are 0)."""
    from scipy import stats

    a, b = list(a), list(b)
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("paired_test needs two samples of equal length >= 2")
    diff = [x - y for x, y in zip(a, b)]
    if all(d == diff[0] for d in diff):
        p = 1.0 if diff[0] == 0 else 0.0
        return {"mean_diff": diff[0], "ci95": 0.0, "p_ttest": p, "p_wilcoxon": p}
    return {"mean_diff": statistics.mean(diff), "ci95": ci95(diff),
            "p_ttest": float(stats.ttest_rel(a, b).pvalue), "p_wilcoxon": float(stats.wilcoxon(a, b).pvalue)}


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write the rows and the summary as JSON (read by run_all.py)")


def write_json(path: str | Path, record: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=float) + "\n")
    os.replace(tmp, path)


def figure_path(args: argparse.Namespace, suffix: str) -> Path | None:
    """Where to save a figure: beside the `--json` file as `<json stem>_<suffix>.png`; None without `--json`."""
    if not getattr(args, "json", None):
        return None
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f"{path.stem}_{suffix}.png")


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub markdown table; floats with 4 significant decimals unless already formatted as strings."""
    cell = lambda v: fmt(v) if not isinstance(v, str) else v  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def finish(args: argparse.Namespace, name: str, rows: list[dict], summary: dict[str, float],
           markdown: str = "", figures: list[Path] = (), extra: dict | None = None) -> None:
    """Print the RESULT line from `summary` and write the JSON record when `--json` was given."""
    if getattr(args, "json", None):
        write_json(args.json, {"name": name, "argv": sys.argv[1:], "rows": rows, "summary": summary,
                               "markdown": markdown, "figures": [Path(f).name for f in figures if f],
                               "extra": extra or {}})
    print("RESULT " + " ".join(f"{k}={fmt(v)}" for k, v in summary.items()), flush=True)


def fmt(v) -> str:
    """How a number appears in RESULT lines and tables: floats with 4 decimals."""
    return f"{v:.4f}" if isinstance(v, float) else str(v)
