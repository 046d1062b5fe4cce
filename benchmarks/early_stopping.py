"""Early stopping (#21): does a scheduled search reach the no-stopping search's best with a fraction of its epochs?

An anytime comparison, as in the ASHA paper (Li et al. 2020: the best config found vs the resources spent) and
as Ray Tune / Optuna users run a scheduler: the same strategy and seed, once without a scheduler (`--budget`
trials of `--epochs` epochs each, E0 epochs in all) and once with one, given *more trials* and cut at an epoch
budget. Searches run sequentially (the local executor, one trial at a time), so a scheduled search's trials are a
prefix: the trials whose cumulative epochs fit a budget are exactly what a search stopped at that budget would
have journalled. Each scheduled search runs until `--horizon` × E0 epochs; it is scored at the issue's budget
(40% of E0 with one objective, 50% with two) by
  - epochs ratio: the epochs its prefix used / E0 (≤ the budget; the trial that would cross it is left out),
  - val gap: the no-stopping search's final best val_acc − the prefix's best, in points, and the test_acc of
    that best trial; "best" counts full-fidelity trials only (trained to max_epochs: a stopped trial's
    val_acc is that of a partly trained net, at a high learning rate of the cosine schedule),
  - with two objectives (val_acc up, flops_sparse down; MO-ASHA's rule), the hypervolume of its full-fidelity
    trials / that of the no-stopping search, both w.r.t. one reference point per strategy and seed (val_acc 0,
    1.1 × the largest flops_sparse of either search),
  - reached at: the epochs ratio at which it first came within 0.5 points of the no-stopping search's final
    best val_acc (two objectives: 95% of its hypervolume), if it did within the horizon,
  - train time ratio: the seconds of the epochs it trained / the no-stopping search's.
Targets (#21): asha's val gap ≤ 0.5 points at ≤ 40% of the epochs; two-objective asha ≥ 95% of the
hypervolume at ≤ 50% — means over strategies × seeds.

Every search runs through `sparsenas.Search` (the real scheduler path: per-epoch reports, stop decisions, stopped
trials told to the strategy as such); a callback ends it once its horizon is spent. Trainings are shared between
searches: a (arch, trial seed) trained once is replayed epoch by epoch (the same reports, so a scheduler stops
it where a real training would: training is deterministic per seed) and trained again from scratch only when a
search needs more epochs than were trained (the replayed epochs are checked to be identical). Random search's
proposals do not depend on results, so its searches share every trial they have in common; tpe's diverge after
its startup trials. A search's training time is the recorded seconds of its trials up to the last epoch each trained
(building the net included).

Arms. dass (C=4, 3 cells) on MNIST average-pooled to 14×14: random and tpe, one objective with none, asha
(and, random only, median and hyperband) and two objectives with none and asha. The `model` space on the same
data with `lenet` below (every layer searched, `space.target_sparsity` 0.9, so each arch is one allocation of
the same weight count): random and tpe with none and asha, one and two objectives. Data: the first `--limit` MNIST
training images (the model arm: `--model-limit`), the first 5,000 of the file's validation images (selection;
half a point is 25 images) and its 10,000 test images, written to an .npz (`data.name: npz`). ASHA: grace 1,
reduction factor 3, max_epochs = train.epochs = 9, so rungs at 1 and 3 epochs (hyperband the same brackets' base).
Chosen from learning curves of 8 random dass archs (seed 0, 9 epochs): at 1,000 training images the final val_acc
was 0.14-0.90 (mean 0.70) and nearly every net was at chance after epoch 1; at 2,500, 0.64-0.94 (mean 0.87),
Spearman of epoch-1 / epoch-3 val_acc with the final 0.31 / 0.76; 1,500 images fit the time limit. The
no-stopping searches have 16 trials (`--budget`): with 8 (the runs recorded before 2026-11-28 06:00), 40% of their
epochs held few trials trained to the end, so asha's best was one of those few against a best of 8, a
comparison dominated by luck: single-objective gaps per search ranged from -6.9 to +7.0 points. The model arm's
curves at 1,000 images ranked well (0.76 / 0.81) but ended at 0.55-0.86: it gets 3,000.
A pilot on 8 random dass archs of search seed 100 (disjoint from the benchmark's seeds 0-4), at these settings:
Spearman of epoch-1 / epoch-3 val_acc with the final was 0.51 / -0.17 at lr 0.1 (final 0.44-0.90, mean 0.79),
-0.14 / -0.06 with one epoch of LR warm-up (`--warmup 1`; mean 0.80) and 0.11 / 0.19 at lr 0.05 (mean 0.72): after
epoch 1's 24 steps most nets are still at chance (0.107) either way, so the dass arm keeps lr 0.1 without warm-up.
At batch size 32 (47 steps an epoch, 17% more time) the same archs gave 0.26 / 0.29 (final 0.83-0.92), and 0.60 /
0.71 with one warm-up epoch (8 archs: a Spearman's standard error is ~0.35). The dass arm trains so (batch 32, one
warm-up epoch); at batch 64 without warm-up (the first recorded run) asha's gap was +2.25 points. On 24 more
random archs (search seeds 100 and 101, these settings) the Spearman of epoch 1 / 2 / 3 / 6 val_acc with the
final was 0.41 / 0.47 / 0.56 / 0.87, and epoch-1 val_acc spanned 0.09–0.34: asha's rungs (1 and 3 epochs) rank
weakly here, so which archs it trains to the end is partly luck, and its best is more variable than a best of
16. A grace period of 3 would judge at 0.56 instead of 0.41 but train every trial 3 epochs (not measured).
The training loss ranks them better: rerun with the loss recorded (same seeds, 2026-11-28), the Spearman of
epoch-1 / 2 / 3 / 6 metrics with the final val_acc was 0.71 / 0.77 / 0.79 / 0.91 for train_loss (the epoch's last
batch), 0.48 / 0.46 / 0.57 / 0.72 for val_acc and -0.26 / 0.19 / 0.44 / 0.70 for the validation loss; asha
replayed over these 24 curves (rungs 1 and 3, 40% of 16 × 9 epochs, 2,000 random orders) was 0.85 points behind
the best of 16 judging val_acc and -0.04 judging train_loss. So the dass arm's schedulers judge train_loss
(`scheduler.metrics`, `--rung-metric`; with two objectives train_loss and flops_sparse); the model arm's, whose
val_acc ranks well, the objectives.
The first record so (6d4a2dd, on an Intel Xeon host about 2× slower than the AMD EPYC of the runs above, so the
time cap left 5 of the 10 dass single-objective searches: random seeds 0-2, tpe 0-1): asha +0.31 points at 38% of
the epochs, every search 0.00 but tpe seed 1 (+1.56; +3.72 judging val_acc in the record before, on the other host).
All 5 seeds on that host (b640a77, `run_all.py --only early_stopping -- --minutes 150`: 110 min, past the issue's
60): +0.59 points at 38% of the epochs, 7 of 10 searches within 0.5 (random 0.00, 0.00, 0.00, +1.20, 0.00; tpe
0.00, +1.56, +0.30, +2.50, +0.34), so the one-objective target is not met; two objectives 97.3% at 48% (met).

    python benchmarks/early_stopping.py [--seeds 5] [--jobs 2] [--json docs/results/early_stopping.json]
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
import torch
from torch import nn

from report import MNIST, add_json_argument, figure_path, finish, markdown_table, mean_std, paired_test
from sparsenas.assemble import resolve
from sparsenas.data import load_data
from sparsenas.objective import hypervolume
from sparsenas.search import Search
from sparsenas.spaces.dass import DassSpace
from sparsenas.spaces.model import ModelSpace

MO = {"maximize": ["val_acc"], "minimize": ["flops_sparse"]}
TARGET = {1: 0.4, 2: 0.5}  # the epoch budgets, as a fraction of the no-stopping search's epochs
GAP_PTS, HV_SHARE = 0.5, 0.95
VAL_IMAGES = 5000


def lenet(input_shape, num_classes):
    """LeNet-like: conv 5×5 (8) → pool → conv 5×5 (16) → pool → linear 64 → linear."""
    c, h, w = input_shape
    return nn.Sequential(nn.Conv2d(c, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(16 * (h // 4) * (w // 4), 64), nn.ReLU(), nn.Linear(64, num_classes))


class Replayed:
    """A trained space whose trainings are kept: a (arch, seed) is replayed epoch by epoch when proposed again,
    and trained again (from scratch, deterministic) only when a search needs more epochs than were trained."""

    def __init__(self, **options):
        super().__init__(**options)
        self.cache: dict[str, dict] = {}  # key → {"curve": [(metrics, seconds so far)], "final": dict | None}

    def evaluate(self, arch, seed, context, on_epoch=None):
        key = json.dumps([dict(arch), seed], sort_keys=True)
        saved = self.cache.get(key, {"curve": [], "final": None})
        for epoch, (metrics, _) in enumerate(saved["curve"]):
            if on_epoch is not None:
                on_epoch(epoch, dict(metrics))  # a scheduler's stop is raised from here
        if saved["final"] is not None:
            return dict(saved["final"])
        replayed, entry = len(saved["curve"]), {"curve": [], "final": None}
        self.cache[key], start = entry, time.perf_counter()

        def record(epoch, metrics):
            entry["curve"].append((dict(metrics), time.perf_counter() - start))
            if epoch < replayed:
                if metrics["val_acc"] != saved["curve"][epoch][0]["val_acc"]:
                    raise RuntimeError(f"training is not deterministic: epoch {epoch} of {key}")
            elif on_epoch is not None:
                on_epoch(epoch, dict(metrics))  # a scheduler's stop is raised from here

        entry["final"] = super().evaluate(arch, seed, context, on_epoch=record)
        return dict(entry["final"])

    def seconds(self, arch, seed, epochs: int) -> float:
        """Training seconds of the first `epochs` epochs of a trained (arch, seed)."""
        return self.cache[json.dumps([dict(arch), seed], sort_keys=True)]["curve"][epochs - 1][1]


class ReplayDass(Replayed, DassSpace):
    pass


class ReplayModel(Replayed, ModelSpace):
    pass


class HorizonSpent(Exception):
    """Raised by a search's callback once it has trained its horizon of epochs."""


def space_options(args, arm: str) -> dict:
    if arm == "dass":
        return {"C": args.C, "layers": 3}
    return {"factory": f"{lenet.__module__}:lenet", "skip": [], "target_sparsity": args.model_sparsity}


def scheduler_options(args, arm: str, name: str, multi: bool) -> dict:
    """The scheduler section; the dass arm's schedulers judge `--rung-metric` (with flops_sparse when multi)."""
    judged = {}
    if arm == "dass" and name != "none":
        judged = {"metrics": [args.rung_metric, *(MO["minimize"] if multi else [])]}
    if name in ("asha", "hyperband"):
        return {"name": name, "grace_period": args.grace, "reduction_factor": args.eta, **judged}
    return {"name": name, "grace_period": args.grace, **judged} if name == "median" else {"name": name}


def train_options(args, arm: str) -> dict:
    """The arm's batch size, learning rate and warm-up (the model arm has its own flags)."""
    if arm == "model":
        return {"batch_size": args.model_batch, "lr": args.model_lr, "warmup_epochs": args.model_warmup}
    return {"batch_size": args.batch, "lr": args.lr, "warmup_epochs": args.warmup}


def config(args, arm: str, strategy: str, seed: int, scheduler: str, multi: bool, budget: int) -> dict:
    return resolve([{
        "space": {"name": arm, **space_options(args, arm)},
        "strategy": {"name": strategy, **({"n_startup_trials": args.startup} if strategy == "tpe" else {})},
        "data": {"name": "npz", "path": args.npz[arm], "downsample": 2, "normalize": "dataset"},
        "train": {"epochs": args.epochs, **train_options(args, arm)},
        "search": {"budget": budget, "seed": seed},
        "objective": MO if multi else {"maximize": ["val_acc"]},
        "scheduler": scheduler_options(args, arm, scheduler, multi),
    }])


def run_search(args, space: Replayed, arm, strategy, seed, scheduler, multi, horizon=None) -> dict:
    """One search; with `horizon` (epochs), given 20× the trials and ended once it has trained that many."""
    cfg = config(args, arm, strategy, seed, scheduler, multi, args.budget if horizon is None else 20 * args.budget)
    search, used = Search(cfg, None, progress=False, space=space), [0]

    def spend(result):
        used[0] += int(result.metrics.get("epochs", args.epochs)) if result.ok else 0
        if used[0] >= horizon:
            raise HorizonSpent

    if horizon is not None:
        search.callbacks.append(spend)
    try:
        search.run()
    except HorizonSpent:
        pass
    trials = []
    for r in search.results:
        if r.ok:
            e = int(r.metrics.get("epochs", args.epochs))
            trials.append({"epochs": e, "full": r.metrics.get("stopped_early", 0) != 1,
                           "val": r.metrics["val_acc"], "test": r.metrics.get("test_acc", math.nan),
                           "flops": r.metrics["flops_sparse"], "seconds": round(space.seconds(r.arch, r.seed, e), 3)})
    return {"arm": arm, "strategy": strategy, "seed": seed, "scheduler": scheduler, "objectives": 2 if multi else 1,
            "trials": trials, "failed": [r.error for r in search.results if r.status == "failed"]}


def plan(args, arm: str, strategy: str) -> list[tuple[bool, str]]:
    """(multi-objective, scheduler) of one unit's searches, the no-stopping ones first."""
    single = ["asha", "median", "hyperband"] if (arm, strategy) == ("dass", "random") else ["asha"]
    return [(False, "none"), (True, "none"), *[(False, s) for s in single], (True, "asha")]


def run_unit(args, arm: str, strategy: str, seed: int) -> list[dict]:
    """Every search of one arm, strategy and seed (their trainings shared), in one process with one torch thread."""
    torch.set_num_threads(1)
    space = (ReplayDass if arm == "dass" else ReplayModel)(**space_options(args, arm))
    rows, base, start = [], {}, time.perf_counter()
    for multi, name in plan(args, arm, strategy):
        horizon = None if name == "none" else math.ceil(args.horizon * base[multi])
        rows.append(run_search(args, space, arm, strategy, seed, name, multi, horizon))
        trials = rows[-1]["trials"]
        if name == "none":
            base[multi] = sum(t["epochs"] for t in trials)
        print(f"[{time.perf_counter() - start:6.0f} s] {arm} {strategy} seed {seed} {2 if multi else 1} obj {name}: "
              f"{len(trials)} trials, {sum(t['epochs'] for t in trials)} epochs, "
              f"{sum(not t['full'] for t in trials)} stopped, best val "
              f"{max((t['val'] for t in trials if t['full']), default=0):.4f}"
              + "".join(f"; failed: {e}" for e in rows[-1]["failed"]), flush=True)
    return rows


# -- scoring ------------------------------------------------------------------------------------------------------
def prefix(trials: list[dict], epochs: float) -> list[dict]:
    """The first trials whose cumulative epochs fit `epochs`."""
    out, used = [], 0
    for t in trials:
        used += t["epochs"]
        if used > epochs:
            break
        out.append(t)
    return out


def best(trials: list[dict]) -> dict:
    """The full-fidelity trial of best val_acc (a val_acc of 0 when there is none yet)."""
    return max((t for t in trials if t["full"]), key=lambda t: t["val"], default={"val": 0.0, "test": math.nan})


def hv(trials: list[dict], reference: list[float]) -> float:
    return hypervolume([[t["val"], -t["flops"]] for t in trials if t["full"]], reference)


def score(row: dict, base: dict) -> dict:
    """The scheduled search `row` against the no-stopping search `base` of the same arm, strategy and seed."""
    e0 = sum(t["epochs"] for t in base["trials"])
    goal = TARGET[row["objectives"]]
    cut = prefix(row["trials"], goal * e0)
    top, top0 = best(cut), best(base["trials"])
    reference = [0.0, -1.1 * max(t["flops"] for t in base["trials"] + row["trials"])]
    hv0 = hv(base["trials"], reference)
    reached, used = None, 0
    for k, t in enumerate(row["trials"]):
        used += t["epochs"]
        ok = (hv(row["trials"][:k + 1], reference) >= HV_SHARE * hv0 if row["objectives"] == 2 else
              100 * (top0["val"] - best(row["trials"][:k + 1])["val"]) <= GAP_PTS)
        if ok:
            reached = used / e0
            break
    return {"epochs_ratio": sum(t["epochs"] for t in cut) / e0, "val_gap_pts": 100 * (top0["val"] - top["val"]),
            "best_val": top["val"], "best_test": top["test"], "base_val": top0["val"], "base_test": top0["test"],
            "hv_ratio": hv(cut, reference) / hv0 if hv0 else math.nan, "reached": reached,
            "time_ratio": sum(t["seconds"] for t in cut) / sum(t["seconds"] for t in base["trials"]),
            "trials": len(cut), "stopped": sum(not t["full"] for t in cut), "base_trials": len(base["trials"])}


def scored(rows: list[dict]) -> list[dict]:
    """Every scheduled search's score, with its arm, strategy, seed, objectives and scheduler."""
    base = {(r["arm"], r["strategy"], r["seed"], r["objectives"]): r for r in rows if r["scheduler"] == "none"}
    return [{**{k: r[k] for k in ("arm", "strategy", "seed", "objectives", "scheduler")},
             **score(r, base[(r["arm"], r["strategy"], r["seed"], r["objectives"])])}
            for r in rows if r["scheduler"] != "none"]


def mean(values) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return mean_std(values)[0] if values else math.nan


def table(scores: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for s in scores:
        groups.setdefault((s["arm"], s["strategy"], s["objectives"], s["scheduler"]), []).append(s)
    lines = []
    for (arm, strategy, objectives, name), g in groups.items():
        reached = [s["reached"] for s in g if s["reached"] is not None]
        lines.append([arm, strategy, str(objectives), name, f"{TARGET[objectives]:.0%}",
                      f"{mean(s['epochs_ratio'] for s in g):.3f}", f"{mean(s['time_ratio'] for s in g):.3f}",
                      f"{mean(s['trials'] for s in g):.1f} ({mean(s['stopped'] for s in g):.1f}) / "
                      f"{mean(s['base_trials'] for s in g):.0f}",
                      f"{mean(s['base_val'] for s in g):.4f} → {mean(s['best_val'] for s in g):.4f}",
                      f"{mean(s['val_gap_pts'] for s in g):+.2f}",
                      f"{mean(s['base_test'] for s in g):.4f} → {mean(s['best_test'] for s in g):.4f}",
                      f"{mean(s['hv_ratio'] for s in g):.3f}" if objectives == 2 else "–",
                      f"{len(reached)}/{len(g)}" + (f" at {mean(reached):.2f}" if reached else "")])
    return markdown_table(["arm", "strategy", "obj.", "scheduler", "budget", "epochs ratio", "train time ratio",
                           "trials (stopped) / none's", "best val_acc: none → this", "val gap (pts)",
                           "its test_acc: none → this", "hv ratio", "reached (at epochs ratio)"], lines)


def summarise(scores: list[dict]) -> tuple[dict, list[str]]:
    """The RESULT numbers (dass pooled over strategies × seeds; model_ the model arm) and the verdicts."""
    summary, verdicts = {}, []
    for arm, tag in (("dass", ""), ("model", "model_")):
        one = [s for s in scores if (s["arm"], s["objectives"], s["scheduler"]) == (arm, 1, "asha")]
        two = [s for s in scores if (s["arm"], s["objectives"], s["scheduler"]) == (arm, 2, "asha")]
        if not one:
            continue
        summary |= {f"{tag}epochs_ratio_asha": mean(s["epochs_ratio"] for s in one),
                    f"{tag}val_gap_asha_pts": mean(s["val_gap_pts"] for s in one),
                    f"{tag}hv_ratio_mo": mean(s["hv_ratio"] for s in two),
                    f"{tag}epochs_ratio_mo": mean(s["epochs_ratio"] for s in two),
                    f"{tag}wall_ratio_asha": mean(s["time_ratio"] for s in one)}
        summary = {k: round(v, 4) for k, v in summary.items()}
        within = sum(s["val_gap_pts"] <= GAP_PTS for s in one)
        test = paired_test([s["base_val"] for s in one], [s["best_val"] for s in one]) if len(one) >= 2 else None
        met1 = summary[f"{tag}epochs_ratio_asha"] <= TARGET[1] and summary[f"{tag}val_gap_asha_pts"] <= GAP_PTS
        met2 = summary[f"{tag}epochs_ratio_mo"] <= TARGET[2] and summary[f"{tag}hv_ratio_mo"] >= HV_SHARE
        verdicts.append(
            f"**{arm}**: with {summary[f'{tag}epochs_ratio_asha']:.0%} of the no-stopping searches' epochs "
            f"({summary[f'{tag}wall_ratio_asha']:.0%} of their training time) asha's best val_acc was "
            f"{summary[f'{tag}val_gap_asha_pts']:+.2f} points behind their final best on average (within "
            f"{GAP_PTS} points in {within} of {len(one)} searches"
            + (f"; paired t-test of the two bests: p = {test['p_ttest']:.2g}" if test else "")
            + f"): the target (≤ {GAP_PTS} points with ≤ {TARGET[1]:.0%} of the epochs) is "
            f"{'met' if met1 else 'not met'}. With two objectives asha kept {summary[f'{tag}hv_ratio_mo']:.1%} of "
            f"the hypervolume with {summary[f'{tag}epochs_ratio_mo']:.0%} of the epochs: the target "
            f"(≥ {HV_SHARE:.0%} with ≤ {TARGET[2]:.0%}) is {'met' if met2 else 'not met'}.")
    return summary, verdicts


def anytime(trials: list[dict], e0: int, grid: np.ndarray) -> np.ndarray:
    """Best full-fidelity val_acc of the prefix that fits each budget grid·e0 (nan before the first full trial
    and past the search's last trial)."""
    spent, out = sum(t["epochs"] for t in trials), []
    for x in grid:
        top = best(prefix(trials, x * e0))["val"]
        out.append(top if x * e0 <= spent and top else np.nan)
    return np.array(out)


def figure(args, rows: list[dict]):
    """Best val_acc vs cumulative training epochs (a fraction of the no-stopping search's), mean over seeds."""
    path = figure_path(args, "anytime")
    if path is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["arm"], r["strategy"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    grid = np.linspace(0.02, 1.0, 50)
    for ax, (arm, strategy) in zip(axes[0], panels):
        mine = [r for r in rows if (r["arm"], r["strategy"], r["objectives"]) == (arm, strategy, 1)]
        e0 = {r["seed"]: sum(t["epochs"] for t in r["trials"]) for r in mine if r["scheduler"] == "none"}
        for name in dict.fromkeys(r["scheduler"] for r in mine):
            curves = np.array([anytime(r["trials"], e0[r["seed"]], grid) for r in mine if r["scheduler"] == name])
            ax.plot(grid, curves.mean(axis=0), label=name)
        ax.axvline(TARGET[1], color="k", ls=":", lw=0.8)
        ax.set_title(f"{arm}, {strategy}")
        ax.set_xlabel("training epochs / no-stopping search's")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("best val_acc so far (mean over seeds)")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_units(args, units: list[tuple], start: float) -> tuple[list[dict], list[tuple]]:
    """The units, `--jobs` at a time, in order; a unit is skipped when the longest of its kind (arm, strategy) so
    far would end it past `--minutes` (on a busier machine than measured, fewer seeds rather than a late run)."""
    rows, skipped, took, running = [], [], {}, {}
    queue = list(units)
    with ProcessPoolExecutor(max(1, args.jobs)) as pool:
        while queue or running:
            while queue and len(running) < max(1, args.jobs):
                unit = queue.pop(0)
                if time.perf_counter() - start + max(took.get(unit[:2], [0])) > 60 * args.minutes:
                    skipped.append(unit)
                    continue
                running[pool.submit(run_unit, args, *unit)] = (unit, time.perf_counter())
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                unit, began = running.pop(future)
                took.setdefault(unit[:2], []).append(time.perf_counter() - began)
                rows += future.result()
    return rows, skipped


def skipped_text(skipped: list[tuple]) -> str:
    if not skipped:
        return ""
    return (" (not run, to stay within the time limit: " + ", ".join(f"{a} {s} seed {n}" for a, s, n in skipped)
            + ")")


def write_npz(args, folder: Path, limit: int) -> str:
    """MNIST as an .npz: the first `limit` training, the first 5,000 validation and all 10,000 test images."""
    data = load_data({"name": "mnist", "path": str(args.data), "val_fraction": 0.1, "test_fraction": 0.1})
    path = folder / f"mnist{limit}.npz"
    np.savez(path, x_train=data.train[0][:limit].numpy(), y_train=data.train[1][:limit].numpy(),
             x_val=data.val[0][:VAL_IMAGES].numpy(), y_val=data.val[1][:VAL_IMAGES].numpy(),
             x_test=data.test[0].numpy(), y_test=data.test[1].numpy())
    return str(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--budget", type=int, default=16, help="trials of the no-stopping searches")
    p.add_argument("--epochs", type=int, default=9, help="train.epochs = the schedulers' max_epochs")
    p.add_argument("--grace", type=int, default=1, help="scheduler.grace_period")
    p.add_argument("--eta", type=float, default=3.0, help="scheduler.reduction_factor")
    p.add_argument("--horizon", type=float, default=0.5, help="a scheduled search ends after this × E0 epochs")
    p.add_argument("--limit", type=int, default=1500, help="MNIST training images of the dass arm")
    p.add_argument("--model-limit", type=int, default=3000, help="MNIST training images of the model arm")
    p.add_argument("--lr", type=float, default=0.1, help="dass arm: train.lr")
    p.add_argument("--warmup", type=float, default=1, help="dass arm: train.warmup_epochs")
    p.add_argument("--batch", type=int, default=32, help="dass arm: train.batch_size")
    p.add_argument("--model-batch", type=int, default=64, help="model arm: train.batch_size")
    p.add_argument("--model-lr", type=float, default=0.1, help="model arm: train.lr")
    p.add_argument("--model-warmup", type=float, default=0, help="model arm: train.warmup_epochs")
    p.add_argument("--rung-metric", default="train_loss", help="dass arm: what its schedulers judge at a rung "
                   "(scheduler.metrics; with two objectives, and flops_sparse)")
    p.add_argument("--C", type=int, default=4, help="dass channels of the first cell")
    p.add_argument("--startup", type=int, default=5, help="tpe n_startup_trials")
    p.add_argument("--model-sparsity", type=float, default=0.9, help="model arm: space.target_sparsity")
    p.add_argument("--arms", default="dass:random,dass:tpe,model:random,model:tpe",
                   help="arm:strategy, comma-separated")
    p.add_argument("--data", default=str(MNIST), help="mnist.pkl.gz")
    p.add_argument("--jobs", type=int, default=2, help="processes, each running one arm, strategy and seed at a time")
    p.add_argument("--minutes", type=float, default=57, help="no unit (arm, strategy, seed) is started that would "
                   "end past this, judged by the longest unit of its kind so far")
    add_json_argument(p)
    args = p.parse_args()
    if not Path(args.data).exists():
        raise SystemExit(f"MNIST not found at {args.data} (see ../shared/data/README.md)")
    if args.horizon < max(TARGET.values()):
        raise SystemExit(f"--horizon must be >= {max(TARGET.values())} (the two-objective budget)")
    folder = Path(tempfile.mkdtemp(prefix="early_stopping_"))
    args.npz = {"dass": write_npz(args, folder, args.limit), "model": write_npz(args, folder, args.model_limit)}
    start = time.perf_counter()
    arms = [tuple(a.split(":")) for a in args.arms.split(",") if a]
    units = [(arm, strategy, seed) for seed in range(args.seeds) for arm, strategy in arms]  # seed by seed
    rows, skipped = run_units(args, units, start)
    minutes = (time.perf_counter() - start) / 60
    print(f"{minutes:.1f} min in all", flush=True)
    scores = scored(rows)
    summary, verdicts = summarise(scores)
    markdown = (f"MNIST 14×14: the first {args.limit:,} training images (model arm: {args.model_limit:,}), 5,000 "
                f"validation images (a point is 50), 10,000 test images. dass C={args.C}, 3 cells; model: `lenet` "
                f"(4 layers searched, target sparsity {args.model_sparsity}). No-stopping searches: {args.budget} "
                f"trials × {args.epochs} epochs, batch {args.batch}, SGD lr {args.lr:g} with {args.warmup:g} "
                f"warm-up epochs (model arm: batch {args.model_batch}, {args.model_lr:g}, {args.model_warmup:g}), "
                "then cosine; "
                f"scheduled searches: more trials, cut at the budget (a fraction of the same strategy and seed's "
                f"no-stopping epochs; they ran to {args.horizon:.0%}); asha/hyperband grace {args.grace}, "
                f"reduction factor {args.eta:g}, max_epochs {args.epochs}; median grace {args.grace}; the dass "
                f"arm's schedulers judge {args.rung_metric} (two objectives: and flops_sparse); tpe with "
                f"{args.startup} startup trials; seeds 0-{args.seeds - 1}{skipped_text(skipped)}; "
                f"{minutes:.0f} min with {args.jobs} processes. "
                "Means over seeds; best = best full-fidelity val_acc; reached = searches that came within "
                f"{GAP_PTS} points of the no-stopping search's final best (two objectives: {HV_SHARE:.0%} of its "
                "hypervolume) before the horizon, and the mean epochs ratio at which they did.\n\n"
                + table(scores) + "\n\n" + "\n\n".join(verdicts) + "\n")
    print(markdown)
    finish(args, "early_stopping", scores, summary, markdown=markdown, figures=[figure(args, rows)],
           extra={"searches": rows})


if __name__ == "__main__":
    main()
