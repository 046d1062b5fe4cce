"""Early stopping (#21): random and tpe on dass / MNIST 14×14, with and without each scheduler, same seeds.

For each strategy and seed, searches of `--budget` trials of `--epochs` epochs each run through `sparsenas.Search`
(local executor, the real scheduler path: per-epoch reports, stop decisions, `stopped_early` trials told to the
strategy) with `scheduler.name` none, asha, median and hyperband on val_acc, and with two objectives (val_acc up,
flops_sparse down) none and asha (MO-ASHA's rule: non-dominated-sorting rank at the rung). Each search is
scored by its cumulative training epochs, its training wall time, its best val_acc and that trial's test_acc,
and (two objectives) the hypervolume of its journalled trials w.r.t. one reference point per seed and strategy
for both searches (val_acc 0, 1.1 × the largest flops_sparse any of them trained).

Trainings are shared between searches: a trial (arch, trial seed) is trained once, to the end, with its
per-epoch metrics and seconds recorded, and replayed epoch by epoch (the same on_epoch reports, so a scheduler
stops it at the same epoch as a real training would: training is deterministic per seed) for any other search
that proposes it. So random search, whose proposals do not depend on results, trains each seed's trials once
for every scheduler; tpe's proposals diverge after its `n_startup_trials` (set to `--startup`). A search's wall
time is the recorded seconds of the epochs it trained, summed (the loop's own overhead, milliseconds, is left
out). tpe runs the schedulers in `--tpe-schedulers` only (default asha), to fit the hour.

Scale for this 2-core CPU: dass C=4, 3 cells; MNIST average-pooled to 14×14, the first `--limit` training
images, the file's 10,000 validation images (selection; a point is 100 images) and 10,000 test images.

Targets: asha reaches the no-stopping search's best val_acc within 0.5 points (val_gap_asha_pts = mean of
none − asha, in points) with ≤ 40% of its epochs (epochs_ratio_asha); the two-objective asha keeps ≥ 95% of the
hypervolume (hv_ratio_mo) with ≤ 50% of the epochs (epochs_ratio_mo).

    python benchmarks/early_stopping.py [--seeds 5] [--json docs/results/early_stopping.json]
"""
from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from report import MNIST, add_json_argument, finish, markdown_table, mean_std, paired_test
from sparsenas.assemble import resolve
from sparsenas.objective import hypervolume
from sparsenas.search import Search
from sparsenas.spaces.dass import DassSpace

SINGLE = ("none", "asha", "median", "hyperband")
MO = {"maximize": ["val_acc"], "minimize": ["flops_sparse"]}


class ReplayDass(DassSpace):
    """dass whose trainings are kept: a trial trained once is replayed, epoch by epoch, when proposed again."""

    cache: dict[str, dict] = {}

    def evaluate(self, arch, seed, context, on_epoch=None):
        key = json.dumps([dict(arch), seed], sort_keys=True)
        if key not in self.cache:
            curve, start = [], time.perf_counter()

            def record(epoch, metrics):
                curve.append((dict(metrics), time.perf_counter() - start))

            final = super().evaluate(arch, seed, context, on_epoch=record)
            self.cache[key] = {"curve": curve, "final": final}
        saved = self.cache[key]
        for epoch, (metrics, _) in enumerate(saved["curve"]):
            if on_epoch is not None:
                on_epoch(epoch, dict(metrics))  # a scheduler's stop is raised from here
        return dict(saved["final"])

    def seconds(self, arch, seed, epochs: int) -> float:
        """Training seconds of the first `epochs` epochs of a cached trial."""
        return self.cache[json.dumps([dict(arch), seed], sort_keys=True)]["curve"][epochs - 1][1]


def config(args, strategy: str, seed: int, scheduler: str, multi: bool) -> dict:
    return resolve([{
        "space": {"name": "dass", "C": args.C, "layers": 3},
        "strategy": {"name": strategy, **({"n_startup_trials": args.startup} if strategy == "tpe" else {})},
        "data": {"name": "mnist", "path": str(args.data), "limit": args.limit, "downsample": 2,
                 "normalize": "dataset"},
        "train": {"epochs": args.epochs, "batch_size": 64, "lr": 0.1},
        "search": {"budget": args.budget, "seed": seed},
        "objective": MO if multi else {"maximize": ["val_acc"]},
        "scheduler": {"name": scheduler},
    }])


def run_search(args, space: ReplayDass, strategy: str, seed: int, scheduler: str, multi: bool) -> dict:
    cfg = config(args, strategy, seed, scheduler, multi)
    results = Search(cfg, None, progress=False, space=space).run()
    ok = [r for r in results if r.ok]
    epochs = [int(r.metrics.get("epochs", args.epochs)) for r in ok]
    best = max(ok, key=lambda r: r.metrics["val_acc"])
    return {"strategy": strategy, "seed": seed, "scheduler": scheduler, "objectives": 2 if multi else 1,
            "epochs": sum(epochs), "stopped": sum(r.metrics.get("stopped_early", 0) == 1 for r in ok),
            "train_s": round(sum(space.seconds(r.arch, r.seed, e) for r, e in zip(ok, epochs)), 2),
            "best_val": best.metrics["val_acc"], "best_test": best.metrics.get("test_acc", float("nan")),
            "points": [[r.metrics["val_acc"], r.metrics["flops_sparse"]] for r in ok]}


def hypervolumes(rows: list[dict]) -> None:
    """Adds `hv` to the two-objective rows: one reference point per strategy and seed, shared by its searches."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["objectives"] == 2:
            groups.setdefault((r["strategy"], r["seed"]), []).append(r)
    for group in groups.values():
        worst = max(p[1] for r in group for p in r["points"])
        reference = [0.0, -1.1 * worst]  # signed: higher is better
        for r in group:
            r["hv"] = hypervolume([[v, -f] for v, f in r["points"]], reference)


def ratio(rows, strategy, key, scheduler, objectives=1):
    """Per seed: (the scheduler's value, the no-stopping search's value) of `key`."""
    base = {r["seed"]: r[key] for r in rows if (r["strategy"], r["scheduler"], r["objectives"]) ==
            (strategy, "none", objectives)}
    return [(r[key], base[r["seed"]]) for r in rows
            if (r["strategy"], r["scheduler"], r["objectives"]) == (strategy, scheduler, objectives)]


def summarise(rows: list[dict], args) -> tuple[dict, str]:
    table, summary = [], {}
    for strategy in ("random", "tpe"):
        for objectives, names in ((1, SINGLE), (2, ("none", "asha"))):
            for name in names:
                mine = [r for r in rows if (r["strategy"], r["scheduler"], r["objectives"]) ==
                        (strategy, name, objectives)]
                if not mine:
                    continue
                epochs = [a / b for a, b in ratio(rows, strategy, "epochs", name, objectives)]
                wall = [a / b for a, b in ratio(rows, strategy, "train_s", name, objectives)]
                gap = [100 * (b - a) for a, b in ratio(rows, strategy, "best_val", name, objectives)]
                hv = [a / b for a, b in ratio(rows, strategy, "hv", name, objectives)] if objectives == 2 else []
                table.append([strategy, objectives, name, f"{mean_std(epochs)[0]:.3f}", f"{mean_std(wall)[0]:.3f}",
                              f"{mean_std([r['best_val'] for r in mine])[0]:.4f}", f"{mean_std(gap)[0]:+.2f}",
                              f"{mean_std([r['best_test'] for r in mine])[0]:.4f}",
                              f"{mean_std(hv)[0]:.3f}" if hv else "–",
                              f"{mean_std([r['stopped'] for r in mine])[0]:.1f}"])
    summary["epochs_ratio_asha"] = round(mean_of(rows, "epochs", 1), 4)
    summary["val_gap_asha_pts"] = round(100 * mean_of(rows, "best_val", 1, diff=True), 3)
    summary["hv_ratio_mo"] = round(mean_of(rows, "hv", 2), 4)
    summary["epochs_ratio_mo"] = round(mean_of(rows, "epochs", 2), 4)
    summary["wall_ratio_asha"] = round(mean_of(rows, "train_s", 1), 4)
    pairs = [(b, a) for r in ("random", "tpe") for a, b in ratio(rows, r, "best_val", "asha")]
    test = paired_test([p[0] for p in pairs], [p[1] for p in pairs]) if len(pairs) >= 2 else None
    met = [summary["epochs_ratio_asha"] <= 0.4 and summary["val_gap_asha_pts"] <= 0.5,
           summary["hv_ratio_mo"] >= 0.95 and summary["epochs_ratio_mo"] <= 0.5]
    text = (f"asha used {summary['epochs_ratio_asha']:.0%} of the no-stopping searches' training epochs "
            f"({summary['wall_ratio_asha']:.0%} of their training time) and ended "
            f"{summary['val_gap_asha_pts']:+.2f} points of best val_acc behind them on average"
            + (f" (paired over strategies × seeds: p = {test['p_ttest']:.2g})" if test else "")
            + ": the single-objective target (≤ 40% of the epochs, ≤ 0.5 points) is "
            + f"{'met' if met[0] else 'not met'}. "
            f"With two objectives asha kept {summary['hv_ratio_mo']:.1%} of the hypervolume with "
            f"{summary['epochs_ratio_mo']:.0%} of the epochs: the target (≥ 95%, ≤ 50%) is "
            f"{'met' if met[1] else 'not met'}.")
    markdown = (f"dass C={args.C}, 3 cells, MNIST 14×14, first {args.limit:,} training images, 10,000 validation and "
                f"10,000 test images; {args.seeds} seeds × budget {args.budget} × {args.epochs} epochs; tpe with "
                f"{args.startup} startup trials. Ratios are per seed against the same strategy's search without a "
                "scheduler (means over seeds); gap = no-stopping best val_acc − this search's, in points.\n\n"
                + markdown_table(["strategy", "objectives", "scheduler", "epochs ratio", "train time ratio",
                                  "best val_acc", "val gap (pts)", "its test_acc", "hv ratio", "stopped"], table)
                + "\n\n" + text + "\n")
    return summary, markdown


def mean_of(rows, key, objectives, diff=False) -> float:
    """Over strategies and seeds: the mean of asha's `key` over the no-stopping search's (its shortfall with
    `diff`)."""
    pairs = [p for s in ("random", "tpe") for p in ratio(rows, s, key, "asha", objectives)]
    values = [b - a if diff else a / b for a, b in pairs]
    return mean_std(values)[0] if values else float("nan")


def run_unit(args, seed: int, strategy: str) -> list[dict]:
    """Every search of one strategy and seed (their trainings shared), in one process with one torch thread."""
    torch.set_num_threads(1)
    tpe_schedulers = ("none", *[s for s in args.tpe_schedulers.split(",") if s])
    space, rows, start = ReplayDass(C=args.C, layers=3), [], time.perf_counter()
    for multi, names in ((False, SINGLE), (True, ("none", "asha"))):
        for name in names:
            if strategy == "tpe" and name not in tpe_schedulers:
                continue
            rows.append(run_search(args, space, strategy, seed, name, multi))
            r = rows[-1]
            print(f"[{time.perf_counter() - start:6.0f} s] {strategy} seed {seed} {r['objectives']} obj {name}: "
                  f"epochs {r['epochs']} stopped {r['stopped']} best val {r['best_val']:.4f}", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--budget", type=int, default=8, help="trials per search")
    p.add_argument("--epochs", type=int, default=6, help="train.epochs (asha rungs at 1 and 3)")
    p.add_argument("--limit", type=int, default=500, help="MNIST training images used")
    p.add_argument("--C", type=int, default=4, help="dass channels of the first cell")
    p.add_argument("--startup", type=int, default=3, help="tpe n_startup_trials")
    p.add_argument("--tpe-schedulers", default="asha", help="schedulers tpe runs besides none (comma-separated)")
    p.add_argument("--data", default=str(MNIST), help="mnist.pkl.gz")
    p.add_argument("--jobs", type=int, default=1, help="processes, each running one strategy and seed at a time")
    add_json_argument(p)
    args = p.parse_args()
    if not Path(args.data).exists():
        raise SystemExit(f"MNIST not found at {args.data} (see ../shared/data/README.md)")
    start = time.perf_counter()
    units = [(seed, strategy) for seed in range(args.seeds) for strategy in ("random", "tpe")]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            rows = [r for part in pool.map(run_unit, [args] * len(units), *zip(*units)) for r in part]
    else:
        rows = [r for seed, strategy in units for r in run_unit(args, seed, strategy)]
    print(f"{time.perf_counter() - start:.0f} s in all", flush=True)
    hypervolumes(rows)
    summary, markdown = summarise(rows, args)
    print(markdown)
    finish(args, "early_stopping", [{k: v for k, v in r.items() if k != "points"} for r in rows], summary,
           markdown=markdown)


if __name__ == "__main__":
    main()
