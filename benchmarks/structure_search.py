"""Sparsity structure as a search dimension (#19): a latency-aware two-objective search (val_acc up, `latency_ms`
down) on dass with `space.structures: [unstructured, channel]` against the same search with `[unstructured]`
only — same strategy, budget and seeds — scored by the hypervolume of each search's front with the *measured*
latency of its exported models.

Design
- Latency in the search: the `lut` predictor in `exported` mode (it plans each network with export's deploy
  planner — dead channels removed, CSR for sparse 1×1 convs and the classifier where the table says it is
  faster — and prices every candidate kernel from the table), for CPU, batch `--batch`, 1 thread, float32. One
  table serves both searches: profiled once, before them, on `--profile-archs` archs of the structure-searchable
  space (so it holds the kernels of unstructured and of channel cells) and calibrated on `--calibration` archs
  timed whole (`sparsenas.hardware.lut.profile`). A trial's `latency_ms` is the lut's price of its trained network
  (`LatencyObjective.trained_metrics`: HYDRA's learned unstructured masks empty whole filters, which export
  removes); the price of the arch's seed-0 masks only admits it before training.
- Searches: `tpe` (Optuna's multi-objective TPE on val_acc and latency_ms; `--startup` uniform trials first),
  `--budget` trials each, seeds 0..`--seeds`−1, both searches of a seed with that seed. dass on sklearn's digits
  (8×8, its 25% validation split selects), C=`--C`, 3 cells, keep ratios 0.1/0.2/0.3/0.5 per cell type, learned
  score masks trained HYDRA-style as the dass preset trains them (dense → scores → finetune), `--epochs` epochs.
  `--jobs` searches train at once (the lut times nothing during a search, so they do not disturb it).
- Measurement, after all searches, one thing at a time: every arch on a search's front (its own front in val_acc
  × predicted latency_ms) goes through the real export path — `sparsenas.export.export_run` retrains it with its
  trial's seed (training is deterministic: the trial's model), plans it with the deploy planner timing every
  candidate at the target (batch, 1 thread), checks it against the masked model and saves it;
  `sparsenas.export.load_exported` loads it back. Then, after every export, `--passes` timing passes over all
  trials (in order, reversed, ...): each front arch's exported model, loaded anew, and each trial's untrained arch
  (the `measured` predictor: the same conversion of its seed-0 network, built anew) are timed with
  `ops.timing.robust_ms` at the target (warm-up ≥ 5 calls, ≥ 20 rounds, 10% quantile: as the `measured`
  predictor and the table's calibration time); each keeps its lowest pass. Why several passes spread over the
  phase: a whole network's robust time varies far more than one timing's own noise (~1%) — one load of a
  batch-64 network ran up to 1.4× slower than another load (glibc's page faults, now held steady by
  `ops.timing.steady_allocator`), and four archs timed twelve times over 3.5 minutes on an idle machine varied by
  up to ~20% each (05:30 UTC, 2026-11-28). In the first recorded C=32 run (two passes over the fronts, each
  search's trials timed between the exports) the two passes of an exported model agreed within ±10% for only 15
  of 33 front archs, the first pass (right after the exports) up to 1.23× the second. The report gives this
  repeatability (`repeatable10`: the share of front archs whose median pass is within 10% of the lowest), the
  bound against which `front_within10` is read.
  With three passes (c505f2f): repeatable10 0.875, front_within10 0.875 (was 0.64), the lut within ±10% of
  `measured` for 83% of all trials (was 24%). The 3 front misses were all channel/channel archs priced 17–27% low
  with passes agreeing within 3%: lut errors, not measurement noise (median `measured`/lut over all trials: U/U
  1.01, C/C 1.07). But not fixed per arch: another table (same settings, profiled at 05:24) priced the three
  untrained archs 4–12% low and four front archs that had hit 0–20% low — the lut's per-arch error changes from
  one profile to the next. With the kernels timed in two passes (16173e1: two profiles then priced 32 archs
  within 1.8% of each other, median, instead of 16%) the run of 9053e9a gave front_within10 0.65 (20/31): the
  lut's median price per cell structure moved ≤ 2% from the three-pass run's, the median measured time 2–5% up
  (C/C 7.84 vs 7.50 ms), and 4 front archs missed by +10.0 to +10.9%; all 11 misses ran slower than priced. The
  table's calibration was timed about 20 minutes before the measurement; the probes saw a drift of only 1.015.
  By cell structure that run's lut priced channel archs low (median `measured`/lut over all trials: unstructured
  search 1.03; structures search U/U 1.05, C/U 1.10, C/C 1.10, U/C 1.13). On another host (an Intel Xeon, about
  2× slower than the AMD EPYC of the runs above; 2026-11-28, 11:30–11:42 UTC) a new table's 16 calibration and
  40 other archs, each built and timed twice after the profile, differed between the two timings by 5% (median;
  p90 21%), the lut was within ±10% of the lower for 64% of them, and a refit of the calibration on all 56 (also
  with the count of kernel calls as a feature) for at most 68%; four archs built and timed four times in a row
  ranged 10.2–10.6, 29.0–41.3, 15.0–23.6 and 21.0–39.6 ms. On such a host `front_within10` is bounded by the
  timings' own spread, not by the table.
- Machine drift: `--probes` random archs (not the table's) are timed by `measured` right after the table is
  profiled and again after the fronts; `drift` = the median ratio late / early. The table prices the machine as
  it was while profiling, so a machine that has since become slower (nothing else of ours runs: presumably
  other tenants of the host) shows as predictions too low by about that ratio. Here the same 4 archs, each timed
  in a fresh process on an idle machine, ran 6–25% (median ~11%) slower at 03:19 than at 02:48 UTC (2026-11-28).
  In the first recorded C=32 run the probes ran 0.98× (no drift) while the `measured` times of the trials'
  untrained archs, taken between exports, were 9–25% (median per search) above the lut's prices, more for the
  searches measured later. `front_within10` is the raw share; the report also gives it with each measured
  latency divided by `drift`, as a diagnosis, not as the score.
- Scores per seed: one reference point for both searches — val_acc 0 and the largest measured latency of any
  trial of either (exported time for front archs, `measured` for the others); the hypervolume of each front in
  (val_acc, exported measured latency) (`sparsenas.objective.hypervolume`). `hv_ratio` = mean over seeds of
  HV(structures) / HV(unstructured), target ≥ 1.2; `front_within10` = share of the front archs of both searches
  and all seeds whose measured latency is within ±10% of the lut's prediction, the trial's `latency_ms`
  (|measured − predicted| ≤ 0.1·predicted), target ≥ 0.9.

Simplifications
- Scale: digits instead of MNIST/CIFAR, C=32, a few epochs, `--budget` trials, `--seeds` seeds (sized so that the
  whole script takes ≤ 30 min on this 2-core CPU); val_acc is on the split that selects (no test set is used).
  C=32 rather than 16: on 8×8 images at C=16 the stem, the classifier and per-layer call costs are a large
  share of a network, so removing channels buys less — 10 random archs, each timed with both cells channel
  and both unstructured at the same keep (`measured`, batch 64): channel/unstructured 0.57–0.76× (median per
  keep) at C=16, 0.50–0.61× at C=32. The first recorded run was at C=16 (hv_ratio 1.14).
- Structures: unstructured and channel only. N:M is left out because the planner has no N:M kernel on a CPU (2:4
  runs on CUDA compute capability ≥ 8.0 only), so an N:M cell would run as a dense conv with the mask baked in:
  the same cost as unstructured without CSR. `space.structures` has no block structure (the planner's BSR kernel
  is for linear layers; dass's only linear layer is the classifier, which stays unstructured).
- The trials off the fronts are timed untrained (`measured`, seed-0 masks: the same number of weights per layer
  as the trained top-k masks, but which filters an unstructured mask happens to empty may differ); they only set
  the reference point.

    flock /tmp/heavy.lock python benchmarks/structure_search.py [--seeds 3] [--budget 24] [--json PATH]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from report import add_json_argument, finish, markdown_table
from sparsenas import Study
from sparsenas.export import export_run, load_exported
from sparsenas.hardware import ModelIO, Target
from sparsenas.hardware.lut import LatencyTable, LutLatency, describe_noise, profile, table_path
from sparsenas.hardware.measured import MeasuredLatency, lowest
from sparsenas.objective import Objective, hypervolume
from sparsenas.ops.timing import pass_order, robust_ms
from sparsenas.rundir import RunDir
from sparsenas.space import Arch
from sparsenas.spaces.dass import DassSpace

SPARSE_KERNELS = ("csr", "direct", "bsr", "nm")  # the planner's kernels that compute with the sparsity
RUNS = {"unstructured": ["unstructured"], "structures": ["unstructured", "channel"]}
OBJECTIVE = {"maximize": ["val_acc"], "minimize": ["latency_ms"]}
DIGITS = ModelIO((1, 8, 8), 10)  # sklearn's digits: 1×8×8, 10 classes (the lut refuses a table of other shapes)
TARGET_HV, TARGET_WITHIN = 1.2, 0.9


def space_options(args, run: str) -> dict:
    return {"C": args.C, "layers": 3, "structures": RUNS[run]}


def target(args) -> Target:
    return Target(batch_size=args.batch, threads=1)


def make_table(args, cache: Path) -> float:
    """Profile the latency table both searches use (in `cache`); returns the seconds it took."""
    start = time.perf_counter()
    space = DassSpace(**space_options(args, "structures"))
    table = profile(space, target(args), DIGITS, archs=args.profile_archs, calibration=args.calibration, seed=0,
                    log=lambda m: None)
    table.save(table_path(space, target(args), DIGITS, cache))
    a, b, c = table.calibration
    seconds = time.perf_counter() - start
    print(f"lut ({seconds:.0f} s): {len(table.kernels)} kernels from {args.profile_archs} archs, calibration "
          f"{a:.3f}·Σkernels + {b * 1e3:.2f} µs·calls + {c:.3f} ms; {describe_noise(table.meta['noise'])}", flush=True)
    return seconds


def search(job: tuple) -> tuple[str, int, float]:
    """One search (run in a worker process); its trials stay in its run directory."""
    args, run, seed, folder = job
    torch.set_num_threads(1)
    overrides = {"data.name": "digits", "train.epochs": args.epochs, "train.batch_size": 64, "train.lr": 0.05,
                 "train.sparse_training": "hydra", "search.budget": args.budget, "latency.predictor": "lut",
                 "latency.cache_dir": str(folder / "cache"), "latency.batch_size": args.batch, "latency.threads": 1}
    study = Study({"name": "dass", **space_options(args, run)}, {"name": "tpe", "n_startup_trials": args.startup},
                  storage=folder / f"{run}-{seed}", seed=seed, objective=OBJECTIVE, overrides=overrides)
    start = time.perf_counter()
    study.optimize()
    return run, seed, time.perf_counter() - start


def export_one(args, run_dir: Path, trial: int) -> dict:
    """Export `trial` of `run_dir` as `sparsenas export` does (retrained, planned at the target, saved)."""
    out = run_dir / f"export-trial{trial}"
    info = export_run(run_dir, trial=trial, out=out, batch_size=args.batch, threads=1, log=lambda m: None)
    plan = info["plan"].values()
    return {"export_dir": str(out), "export_val_acc": info["metrics"]["val_acc"],
            "csr_layers": sum(e["action"] in SPARSE_KERNELS for e in plan),
            "trimmed_layers": sum("kept_out" in e and len(e["kept_out"]) < e["shape"][0] for e in plan if "shape" in e)}


def within10(measured: float, predicted: float) -> bool:
    """|measured − predicted| ≤ 0.1·predicted."""
    return abs(measured - predicted) <= 0.1 * predicted


def time_exported(args, folder: str) -> float:
    """Load an exported model back (`load_exported`, as a user would) and time it at the target (ms)."""
    module = load_exported(Path(folder))
    x = torch.randn(args.batch, *DIGITS.input_shape, generator=torch.Generator().manual_seed(0))
    return robust_ms([lambda: module(x)], warmup=5, repeats=20)[0].ms


def collect(args, run: str, seed: int, folder: Path) -> list[dict]:
    """Every ok trial of one search: its arch, val_acc, predicted latency (the trial's and the lut's price of the
    untrained arch) and, for the front, its exported model (timed later with every other trial, `time_all`)."""
    run_dir = folder / f"{run}-{seed}"
    results = [r for r in RunDir(run_dir).results() if r.ok]
    front = {r.trial for r in Objective(**OBJECTIVE).pareto_front(results)}
    space = DassSpace(**space_options(args, run))
    lut = LutLatency(space, target(args), DIGITS, LatencyTable.load(table_path(space, target(args), DIGITS,
                                                                              folder / "cache")))
    rows = []
    for r in results:
        row = {"run": run, "seed": seed, "trial": r.trial, "arch": dict(r.arch), "val_acc": r.metrics["val_acc"],
               "predicted_ms": r.metrics["latency_ms"], "arch_predicted_ms": lut.predict(Arch(r.arch)),
               "front": r.trial in front}
        if row["front"]:
            row.update(export_one(args, run_dir, r.trial))
        rows.append(row)
    return rows


def time_all(args, rows: list[dict]) -> None:
    """Time every trial in `--passes` passes over all of them (in order, reversed, in order, ...), after every
    export: its untrained arch by the `measured` predictor (built anew each time) and, on a front, its exported
    model (loaded anew each time); each keeps the lowest of its passes (`measured_ms`, `export_ms`): the quiet
    machine's latency, which the table's low quantiles and calibration price (why: the module docstring)."""
    predictors = {run: measured_predictor(args, run) for run in RUNS}
    for p in range(args.passes):
        for r in pass_order(rows, p):
            r.setdefault("measured_passes_ms", []).append(predictors[r["run"]].timing(Arch(r["arch"])).ms)
            if r["front"]:
                r.setdefault("export_passes_ms", []).append(time_exported(args, r["export_dir"]))
    for r in rows:
        r["measured_ms"] = min(r["measured_passes_ms"])
        if r["front"]:
            r["export_ms"] = min(r["export_passes_ms"])
            r["within10"] = within10(r["export_ms"], r["predicted_ms"])


def repeatable(row: dict) -> bool:
    """Whether the median of a front arch's export passes is within 10% of the lowest (the measurement's own
    repeatability, against which front_within10 is read)."""
    return statistics.median(row["export_passes_ms"]) <= 1.1 * row["export_ms"]


def probe_archs(args) -> list[Arch]:
    """Archs of the structure-searchable space, drawn apart from the table's (another seed), to time twice."""
    rng = np.random.default_rng(1)
    space = DassSpace(**space_options(args, "structures"))
    return [space.sample(rng) for _ in range(args.probes)]


def measured_predictor(args, run: str) -> MeasuredLatency:
    """The `measured` predictor of one search's space at the target (as the table's calibration times)."""
    return MeasuredLatency(DassSpace(**space_options(args, run)), target(args), DIGITS, warmup=5, repeats=20)


def time_archs(args, archs: list[Arch]) -> list[float]:
    """The `measured` latency of each arch (ms; the lower of two builds)."""
    return [lowest(passes).ms for passes in measured_predictor(args, "structures").timings(archs)]


def structure(row: dict) -> str:
    """The cells' structures of a trial, normal/reduce (channel cells: `C`, unstructured: `U`)."""
    arch = row["arch"]
    return "/".join("C" if arch.get(f"{kind}.structure") == "channel" else "U" for kind in ("normal", "reduce"))


def scores(rows: list[dict], seeds: int) -> list[dict]:
    """Per seed and search: the hypervolume of its front (measured and predicted latency, one reference point per
    seed for both searches) and what its front holds."""
    out = []
    for seed in range(seeds):
        trials = [r for r in rows if r["seed"] == seed]
        worst = max(r["export_ms"] if r["front"] else r["measured_ms"] for r in trials)
        worst_pred = max(r["predicted_ms"] for r in trials)
        for run in RUNS:
            front = [r for r in trials if r["run"] == run and r["front"]]
            out.append({
                "seed": seed, "run": run, "trials": sum(r["run"] == run for r in trials), "front": len(front),
                "reference_ms": worst,
                "hv": hypervolume([[r["val_acc"], -r["export_ms"]] for r in front], [0.0, -worst]),
                "hv_predicted": hypervolume([[r["val_acc"], -r["predicted_ms"]] for r in front], [0.0, -worst_pred]),
                "best_val": max(r["val_acc"] for r in front),
                "fastest_ms": min(r["export_ms"] for r in front),
                "within10": sum(r["within10"] for r in front),
                "channel_cells": sum(structure(r).count("C") for r in front),
                "csr_layers": statistics.mean(r["csr_layers"] for r in front),
                "trimmed_layers": statistics.mean(r["trimmed_layers"] for r in front)})
    return out


def ratios(table: list[dict], key: str = "hv") -> list[float]:
    by = {(s["seed"], s["run"]): s[key] for s in table}
    seeds = sorted({s["seed"] for s in table})
    return [by[(s, "structures")] / by[(s, "unstructured")] if by[(s, "unstructured")] > 0 else float("nan")
            for s in seeds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds (each: one search of each kind)")
    parser.add_argument("--budget", type=int, default=24, help="trials per search")
    parser.add_argument("--startup", type=int, default=8, help="tpe's uniform trials before it models")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs per trial")
    parser.add_argument("--C", type=int, default=32, help="dass channels of the first cell")
    parser.add_argument("--batch", type=int, default=64, help="latency target: samples per forward pass")
    parser.add_argument("--profile-archs", type=int, default=48, help="archs the latency table is profiled on")
    parser.add_argument("--calibration", type=int, default=16, help="archs timed whole to calibrate the table")
    parser.add_argument("--jobs", type=int, default=2, help="searches trained at once")
    parser.add_argument("--probes", type=int, default=8, help="archs timed before and after, for machine drift")
    parser.add_argument("--passes", type=int, default=3, help="timing passes over every trial (the lowest is kept)")
    add_json_argument(parser)
    args = parser.parse_args()
    for flag in ("seeds", "budget", "epochs", "C", "batch", "profile_archs", "jobs", "probes", "passes"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    torch.set_num_threads(1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        profile_s = make_table(args, folder / "cache")
        probes = probe_archs(args)
        early = time_archs(args, probes)
        jobs = [(args, run, seed, folder) for seed in range(args.seeds) for run in RUNS]
        with ProcessPoolExecutor(args.jobs) as pool:
            searched = list(pool.map(search, jobs))
        search_s = time.perf_counter() - start - profile_s
        print(f"searches: {len(searched)} × {args.budget} trials in {search_s / 60:.1f} min", flush=True)
        rows = []
        for _, run, seed, _ in jobs:
            rows += collect(args, run, seed, folder)
            print(f"exported {run} seed {seed}'s front ({(time.perf_counter() - start) / 60:.1f} min)", flush=True)
        time_all(args, rows)
        print(f"timed {len(rows)} trials in {args.passes} passes ({(time.perf_counter() - start) / 60:.1f} min)",
              flush=True)
        late = time_archs(args, probes)
        for r in rows:
            r.pop("export_dir", None)  # a temporary folder
    table = scores(rows, args.seeds)
    drifts = [b / a for a, b in zip(early, late)]
    minutes = (time.perf_counter() - start) / 60
    front = [r for r in rows if r["front"]]
    hv = ratios(table)
    summary = {"hv_ratio": round(statistics.mean(hv), 4), "front_within10": round(sum(r["within10"] for r in front)
                                                                                / len(front), 4),
               "machine_drift": round(statistics.median(drifts), 4),
               "repeatable10": round(sum(map(repeatable, front)) / len(front), 4)}
    load = [round(v, 2) for v in os.getloadavg()]
    markdown = report(args, rows, table, summary, minutes, load, drifts)
    print(markdown)
    finish(args, "structure_search", rows, summary, markdown=markdown,
           extra={"scores": table, "hv_ratios": hv, "profile_s": profile_s, "search_s": search_s,
                  "minutes": minutes, "load_average": load, "probe_ms": {"early": early, "late": late}})


def report(args, rows: list[dict], table: list[dict], summary: dict, minutes: float, load: list[float],
           drifts: list[float]) -> str:
    """The RESULTS.md section: per-seed scores, what the structures cost and gain, and the verdicts."""
    t1 = markdown_table(
        ["seed", "search", "trials", "front", "HV (measured)", "HV (predicted)", "best val_acc", "fastest front ms",
         "front within ±10%", "channel cells on front", "sparse-kernel / trimmed layers per front arch"],
        [[s["seed"], s["run"], s["trials"], s["front"], f"{s['hv']:.3f}", f"{s['hv_predicted']:.3f}",
          f"{s['best_val']:.3f}", f"{s['fastest_ms']:.2f}", f"{s['within10']}/{s['front']}", s["channel_cells"],
          f"{s['csr_layers']:.1f} / {s['trimmed_layers']:.1f}"]
         for s in table])
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(f"{r['run']} {structure(r)}", []).append(r)
    t2 = markdown_table(
        ["search, cells normal/reduce", "trials", "median val_acc", "median measured ms", "median predicted ms"],
        [[name, len(g), f"{statistics.median(r['val_acc'] for r in g):.3f}",
          f"{statistics.median(r['measured_ms'] for r in g):.2f}",
          f"{statistics.median(r['predicted_ms'] for r in g):.2f}"] for name, g in sorted(groups.items())])
    misses = [r for r in rows if r["front"] and not r["within10"]]
    t3 = markdown_table(
        ["seed", "search", "trial", "cells", "keep n/r", "val_acc", "predicted ms", "measured ms", "error"],
        [[r["seed"], r["run"], r["trial"], structure(r), f"{r['arch']['normal.keep']}/{r['arch']['reduce.keep']}",
          f"{r['val_acc']:.3f}", f"{r['predicted_ms']:.2f}", f"{r['export_ms']:.2f}",
          f"{100 * (r['export_ms'] / r['predicted_ms'] - 1):+.1f}%"] for r in misses]) if misses else ""
    hv, hv_pred = ratios(table), ratios(table, "hv_predicted")
    met = lambda ok: "met" if ok else "not met"  # noqa: E731
    front = [r for r in rows if r["front"]]
    lut_ok = sum(within10(r["measured_ms"], r["arch_predicted_ms"]) for r in rows)
    retrain = max(abs(r["export_val_acc"] - r["val_acc"]) for r in front)
    text = [
        f"dass (C={args.C}, 3 cells) on digits, `tpe` on val_acc ↑ and `lut` latency_ms ↓ (exported, CPU, batch "
        f"{args.batch}, 1 thread; one table of {args.profile_archs} archs, calibrated on {args.calibration}), "
        f"{args.budget} trials of {args.epochs} epochs per search, seeds 0–{args.seeds - 1}; `structures` = "
        f"`space.structures: [unstructured, channel]`, `unstructured` = `[unstructured]`. Each front arch exported "
        f"(`export_run`: retrained, planned at the target, saved); after every export, {args.passes} timing passes "
        f"(10% quantile) over all trials — the front's exported models loaded back, the others' untrained archs "
        f"(`measured`) — each keeping its lowest; reference "
        f"point per seed: val_acc 0, the largest measured latency of either search's trials. {minutes:.1f} min; "
        f"load average at the end {', '.join(map(str, load))}. sparse-kernel / trimmed layers: sparse layers "
        f"export ran with a sparse kernel (CSR, the direct numba 1×1 conv, BSR, N:M) / whose output channels it "
        f"removed.",
        t1,
        f"HV(structures) / HV(unstructured) per seed: {', '.join(f'{v:.2f}' for v in hv)} (mean "
        f"**{summary['hv_ratio']:.2f}**; with the lut's predicted latencies: "
        f"{', '.join(f'{v:.2f}' for v in hv_pred)}). Target ≥ {TARGET_HV}×: **{met(summary['hv_ratio'] >= TARGET_HV)}**"
        f" ({sum(v >= TARGET_HV for v in hv)} of {len(hv)} seeds reach it).",
        f"Front archs whose exported model's measured latency is within ±10% of the lut's prediction: "
        f"{sum(r['within10'] for r in front)} of {len(front)} (**{summary['front_within10']:.0%}**). "
        f"Target ≥ {TARGET_WITHIN:.0%}: **{met(summary['front_within10'] >= TARGET_WITHIN)}**. The measurement's "
        f"own repeatability: the median of the {args.passes} passes was within 10% of the lowest for "
        f"{sum(map(repeatable, front))} of them ({summary['repeatable10']:.0%}). Over all "
        f"{len(rows)} trials, the lut's price of the untrained arch (its seed-0 masks) is within ±10% of its "
        f"`measured` time for "
        f"{lut_ok} ({lut_ok / len(rows):.0%}). Export's retraining reproduced the trials' val_acc within "
        f"{retrain:.1e}.",
        f"Machine drift: {len(drifts)} probe archs timed right after the table's profile and again after the fronts "
        f"ran {summary['machine_drift']:.3f}× as long the second time (median; {min(drifts):.3f}–{max(drifts):.3f}). "
        f"Front archs "
        f"within ±10% of the prediction with each measured latency divided by that drift (a diagnosis, not the "
        f"score): {sum(within10(r['export_ms'] / summary['machine_drift'], r['predicted_ms']) for r in front)} of "
        f"{len(front)}.",
        "What the structures cost and gain (every trial; measured = the untrained arch converted and timed by the "
        "`measured` predictor, predicted = the trial's `latency_ms`, the lut's price of its trained network; cells: "
        "U unstructured, C channel):",
        t2]
    if misses:
        text += ["Front archs outside ±10%:", t3]
    return "\n\n".join(text)


if __name__ == "__main__":
    main()
