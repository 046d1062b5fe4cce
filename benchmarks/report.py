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
ALPHA = 0.05


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


# -- the pre-registered primary comparison: power, equivalence (TOST) and a verdict worded from the test ------------

def robust_summary(values, trim: float = 0.2) -> dict[str, float]:
    """Mean, median, `trim`-trimmed mean (scipy.stats.trim_mean: `trim` cut from each end) and min/max: one
    collapsed seed moves the mean but hardly the median or the trimmed mean."""
    from scipy import stats

    values = [float(v) for v in values]
    return {"mean": statistics.mean(values), "median": statistics.median(values),
            "trimmed_mean": float(stats.trim_mean(values, trim)), "min": min(values), "max": max(values)}


def tost_paired(a, b, margin: float, alpha: float = ALPHA) -> dict[str, float]:
    """Two one-sided paired t-tests (TOST) of |mean(a − b)| < margin: p = the larger one-sided p; equivalence
    is shown when p < alpha, i.e. the (1 − 2·alpha) CI of the mean difference lies inside ±margin."""
    from scipy import stats

    diff = [x - y for x, y in zip(a, b, strict=True)]
    if len(diff) < 2:
        raise ValueError("tost_paired needs two samples of equal length >= 2")
    mean, sd, n = statistics.mean(diff), statistics.stdev(diff), len(diff)
    if sd == 0:
        p = 0.0 if abs(mean) < margin else 1.0
        return {"mean_diff": mean, "margin": margin, "p": p, "ci90": (mean, mean), "equivalent": p < alpha}
    se = sd / math.sqrt(n)
    p = max(float(stats.t.sf((mean + margin) / se, n - 1)), float(stats.t.cdf((mean - margin) / se, n - 1)))
    half = float(stats.t.ppf(1 - alpha, n - 1)) * se
    return {"mean_diff": mean, "margin": margin, "p": p, "ci90": (mean - half, mean + half), "equivalent": p < alpha}


def paired_power(sd_diff: float, effect: float, n: int, alpha: float = ALPHA, equivalence: bool = False) -> float:
    """Power of the two-sided paired t-test at level alpha to detect a true mean difference `effect` with n pairs
    whose differences have standard deviation `sd_diff` (noncentral t); with `equivalence`, the power of TOST with
    margin `effect` when the true difference is 0."""
    from scipy import stats

    if n < 2:
        return 0.0
    if sd_diff <= 0:
        return 1.0
    df, delta = n - 1, effect / (sd_diff / math.sqrt(n))
    # upper tails only (P(T_δ ≤ c) = P(T_−δ ≥ −c)): scipy's nct.cdf returns nan far in the tail (δ ≈ 17, df 14)
    if equivalence:
        crit = stats.t.ppf(1 - alpha, df)
        return max(0.0, float(1 - 2 * stats.nct.sf(-crit, df, -delta)))
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, delta) + stats.nct.sf(crit, df, -delta))


def seeds_for_power(sd_diff: float, effect: float, power: float = 0.8, alpha: float = ALPHA,
                    equivalence: bool = False, most: int = 10_000) -> int:
    """The fewest pairs (>= 2) that give `power` (paired_power); `most` when even that many do not."""
    return next((n for n in range(2, most) if paired_power(sd_diff, effect, n, alpha, equivalence) >= power), most)


def primary(a, b, effect: float, claim: str = "better", alpha: float = ALPHA) -> dict:
    """The pre-registered primary comparison of paired samples a and b (a − b), with its verdict:
    claim "better" (a beats b by the paper's effect): reproduced when the paired t-test is significant with
    a > b; not reproduced when it is significant the other way, or when it is not significant although the
    test had >= 80% power for `effect` at the observed variance; otherwise inconclusive.
    claim "equivalent" (no difference beyond ±effect): reproduced when TOST shows equivalence; not reproduced
    when the t-test finds a significant difference whose CI leaves ±effect; otherwise inconclusive."""
    if claim not in ("better", "equivalent"):
        raise ValueError(f"claim must be 'better' or 'equivalent', not {claim!r}")
    test = paired_test(a, b)
    sd = statistics.stdev([x - y for x, y in zip(a, b)])
    equivalence = claim == "equivalent"
    result = {**test, "n": len(a), "effect": effect, "claim": claim, "sd_diff": sd,
              "power": paired_power(sd, effect, len(a), alpha, equivalence),
              "seeds_for_80": seeds_for_power(sd, effect, 0.8, alpha, equivalence),
              "tost": tost_paired(a, b, effect, alpha)}
    significant = test["p_ttest"] < alpha
    if equivalence:
        outside = abs(test["mean_diff"]) - test["ci95"] > effect
        verdict = ("reproduced" if result["tost"]["equivalent"] else
                   "not reproduced" if significant and outside else "inconclusive")
    else:
        verdict = ("reproduced" if significant and test["mean_diff"] > 0 else
                   "not reproduced" if significant or result["power"] >= 0.8 else "inconclusive")
    return result | {"verdict": verdict}


def primary_text(name: str, result: dict, scale: float = 100.0, unit: str = "points") -> str:
    """One paragraph on a `primary` result: the comparison, its test, the power design and the verdict."""
    r, t = result, result["tost"]
    v = lambda x: f"{scale * x:+.2f}"  # noqa: E731
    lines = [f"**Primary comparison** (pre-registered): {name}; n = {r['n']} pairs. "
             f"Mean difference {v(r['mean_diff'])} ± {scale * r['ci95']:.2f} {unit} (95% CI), paired t p = "
             f"{r['p_ttest']:.3g}, Wilcoxon p = {r['p_wilcoxon']:.3g}; TOST with margin ±{scale * r['effect']:.2f} "
             f"{unit}: p = {t['p']:.3g} (90% CI {v(t['ci90'][0])} … {v(t['ci90'][1])})."]
    kind = "TOST shows equivalence within" if r["claim"] == "equivalent" else "the t-test detects"
    lines.append(f"Power: from the observed SD of the paired differences ({scale * r['sd_diff']:.2f} {unit}), "
                 f"{kind} a {scale * r['effect']:.2f}-{unit[:-1] if unit.endswith('s') else unit} effect with "
                 f"probability {r['power']:.2f} at n = {r['n']}; 80% power needs n = {r['seeds_for_80']}.")
    lines.append(f"**Verdict: {r['verdict']}**"
                 + (" (the seeds are too few for this effect at this variance)." if r["verdict"] == "inconclusive"
                    else "."))
    return " ".join(lines)
