"""Random Search as a Baseline for Sparse NAS (Farahani, arXiv 2403.08265) on MNIST, at small scale.

Space `node_subnet` (sparsenas/spaces/node_subnet.py): sub-networks of an over-parameterised, initialised
parent obtained by dropping hidden nodes (MLP units / conv channels), keeping the parent's initial weights;
`sparsity` = fraction of the parent's conv/linear weights removed. For every parent, sparsity and seed r
(paired: the parent is initialised with seed r and every final training orders its data with seed r):
  searched — `sparsenas` Search with the `random` strategy (search.seed r): `--candidates` sub-networks at that
             sparsity, each trained `--search-epochs` epochs; the best validation accuracy wins and is then
             trained from the parent's initial weights for `--epochs` epochs
  random   — one random sub-network at the same sparsity (the random strategy's first proposal at another
             seed, independent of the candidates), trained for `--epochs` epochs
  dense    — the parent (`sparsity: 0`), trained for `--epochs` epochs
and reports test accuracy (mean ± std over seeds), the paired test searched vs random per parent and sparsity
(test accuracy, and validation accuracy after the first epoch — the paper's "converge more efficiently").

Scale (defaults; about 10–11 minutes with one torch thread on this 2-core CPU, extrapolated from measured
per-trial CPU times: ≈ 2 + seeds × (22.6 + 2.45 × candidates) s): MNIST, the first 10,000 training images
(`data.limit`); the search selects on a held-out split (training images 40,000-49,999, never trained on), the
final trainings' curves use the file's 10,000 validation images, and 10,000 test images; MLP parent
784-256-256-10 on 28×28; convnet parent conv16-conv32 (3×3, ReLU, 2×2 max pool) + linear on 14×14 (`data.
downsample: 2`); sparsity 50/80/90/95%; N = 16 candidates × 1 epoch; 5 final epochs (SGD 0.05, momentum 0.9,
cosine, batch 64); 10 paired seeds. Simplified for the CPU: small parents, a training subset, short training.

Primary, pre-registered analysis: searched − random test accuracy pooled over every (parent, sparsity, seed) cell
(80 pairs by default), the paper's "no difference" claim tested by TOST with a ±1 point margin, its power at the
observed variance and a robust summary (median, 20%-trimmed mean) printed; the per-cell tests are secondary.

    nice -n 19 python benchmarks/random_search_baseline.py [--seeds 10] [--candidates 16] [--epochs 5] [--json P]

Last line: RESULT mlp_s50_searched=… mlp_s50_random=… mlp_s50_p=… … reproduced=…
"""
from __future__ import annotations

import argparse
import gzip
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from report import (ALPHA, MNIST, add_json_argument, figure_path, finish, markdown_table, mean_std, paired_test,
                    primary, primary_text, robust_summary)
from sparsenas.assemble import build_space, resolve
from sparsenas.search import Search
from sparsenas.space import EvalContext
from sparsenas.strategies import STRATEGIES

METHODS = ("searched", "random", "dense")
MARGIN = 0.01  # |searched − random| below one accuracy point counts as equivalent (95% CI inside ±MARGIN)
RANDOM_SEED_OFFSET = 1_000_000  # seed of the random strategy that proposes the random baseline
HELD_OUT = 10_000  # the last training images: the search's selection split (write_holdout)
HOLDOUT = "mnist_holdout.pkl.gz"


def config(args, parent: str, sparsity: float, seed: int, epochs: int, budget: int = 1, data: str = "") -> dict:
    """A resolved sparsenas config: node_subnet space on MNIST (`data`: another MNIST file), random strategy."""
    hidden, downsample = args.parents[parent]
    return resolve([{
        "space": {"name": "node_subnet", "parent": parent, "hidden": hidden, "sparsity": sparsity,
                  "init_seed": seed},
        "strategy": {"name": "random"},
        "search": {"budget": budget, "seed": seed},
        "data": {"name": "mnist", "path": str(data or args.data), "limit": args.limit, "downsample": downsample},
        "train": {"epochs": epochs},
        "objective": {"maximize": ["val_acc"]},
        "execution": {"device": "cpu"},
    }])


def train_final(space, cfg: dict, arch, seed: int, epochs: int) -> dict:
    """Train `arch` for `epochs` from the parent's initial weights; validation accuracy after every epoch."""
    context = EvalContext(train={**cfg["train"], "epochs": epochs}, data=cfg["data"], device="cpu")
    curve: list[float] = []
    start = time.process_time()
    metrics = space.evaluate(arch, seed, context, on_epoch=lambda e, m: curve.append(m["val_acc"]))
    return {**metrics, "curve": curve, "epoch1_val_acc": curve[0], "cpu_s": time.process_time() - start}


def run_cell(args, parent: str, sparsity: float, seed: int, tmp: Path) -> tuple[dict, dict, float, int]:
    """(searched metrics, random metrics, search CPU seconds, candidates) for one parent, sparsity and seed."""
    cfg = config(args, parent, sparsity, seed, args.search_epochs, args.candidates, data=str(tmp / HOLDOUT))
    search = Search(cfg, tmp / f"{parent}-s{sparsity:g}-seed{seed}", progress=False)
    start = time.process_time()
    results = search.run()
    search_cpu = time.process_time() - start
    best = search.objective.best(results)
    if best is None:
        raise RuntimeError(f"no candidate finished: {[r.error for r in results]}")
    final = config(args, parent, sparsity, seed, args.epochs)  # the file's own validation split: the curve
    searched = train_final(search.space, final, best.arch, seed, args.epochs)
    searched["search_val_acc"] = best.metrics["val_acc"]
    baseline = STRATEGIES.get("random")(search.space, search.objective, RANDOM_SEED_OFFSET + seed)
    random = train_final(search.space, final, baseline.ask(), seed, args.epochs)
    return searched, random, search_cpu, len(results)


def write_holdout(source: Path, target: Path, limit: int) -> None:
    """An MNIST file for the search only: the same training images, and as its validation split the last
    HELD_OUT training images (never trained on: `limit` stays below them), so that the candidates are not
    chosen on the validation split whose epoch-1 accuracy the convergence test compares."""
    if limit > 50_000 - HELD_OUT:
        raise SystemExit(f"--limit must be <= {50_000 - HELD_OUT}: the last {HELD_OUT} training images are the "
                         "search's held-out selection split")
    with gzip.open(source) as f:
        (x, y), _, test = pickle.load(f, encoding="latin1")
    with gzip.open(target, "wb", compresslevel=1) as f:
        pickle.dump(((x[:-HELD_OUT], y[:-HELD_OUT]), (x[-HELD_OUT:], y[-HELD_OUT:]), test), f, protocol=4)


def pooled(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(searched, random) values of `key` over every (parent, sparsity, seed) cell, paired."""
    get = {(r["parent"], r["sparsity"], r["seed"], r["method"]): r[key] for r in rows}
    cells = sorted({k[:3] for k in get if k[3] == "searched"})
    return [get[c + ("searched",)] for c in cells], [get[c + ("random",)] for c in cells]


def run_dense(args, parent: str, seed: int) -> dict:
    """The parent itself: the space at sparsity 0 keeps every node of any arch."""
    cfg = config(args, parent, 0.0, seed, args.epochs)
    space = build_space(cfg)
    return train_final(space, cfg, space.sample(np.random.default_rng(seed)), seed, args.epochs)


def parse_parents(args) -> dict[str, tuple[list[int], int]]:
    table = {"mlp": ([int(h) for h in args.mlp_hidden.split(",")], 1),
             "conv": ([int(h) for h in args.conv_hidden.split(",")], args.conv_downsample)}
    return {p: table[p] for p in args.parent_names}


def summarise(rows: list[dict], parents, sparsities, seeds) -> tuple[list[dict], dict]:
    """Per (parent, target sparsity): accuracies per method and the paired tests searched vs random."""
    get = {(r["parent"], r["sparsity"], r["method"], r["seed"]): r for r in rows}
    cells, summary = [], {}
    for p in parents:
        dense = [get[(p, 0.0, "dense", s)]["test_acc"] for s in seeds]
        summary[f"{p}_dense"] = mean_std(dense)[0]
        for sp in sparsities:
            acc = {m: [get[(p, sp, m, s)]["test_acc"] for s in seeds] for m in ("searched", "random")}
            early = {m: [get[(p, sp, m, s)]["epoch1_val_acc"] for s in seeds] for m in ("searched", "random")}
            test = paired_test(acc["searched"], acc["random"])
            conv = paired_test(early["searched"], early["random"])
            cell = {"parent": p, "sparsity": sp, "dense": mean_std(dense),
                    **{m: mean_std(acc[m]) for m in acc}, "test": test, "epoch1": conv,
                    **{f"{m}_epoch1": mean_std(early[m])[0] for m in early},
                    **{f"{m}_sparsity": float(np.mean([get[(p, sp, m, s)]["achieved_sparsity"] for s in seeds]))
                       for m in acc},
                    **{f"{m}_kept": [float(np.mean([get[(p, sp, m, s)][k] for s in seeds]))
                                     for k in sorted(get[(p, sp, m, seeds[0])]) if k.startswith("kept_h")]
                       for m in acc}}
            cells.append(cell)
            key = f"{p}_s{round(100 * sp)}"
            summary.update({f"{key}_searched": cell["searched"][0], f"{key}_random": cell["random"][0],
                            f"{key}_diff": test["mean_diff"], f"{key}_p": test["p_ttest"]})
    return cells, summary


def verdict(cells: list[dict]) -> tuple[str, bool, int, int]:
    """The paper's claim holds when searched is significantly better than random in no cell after a
    Bonferroni correction over the cells (two-sided paired t-test)."""
    corrected = ALPHA / len(cells)
    better = [c for c in cells if c["test"]["mean_diff"] > 0 and c["test"]["p_ttest"] < corrected]
    worse = [c for c in cells if c["test"]["mean_diff"] < 0 and c["test"]["p_ttest"] < corrected]
    raw = sum(c["test"]["p_ttest"] < ALPHA for c in cells)
    faster = [c for c in cells if c["epoch1"]["mean_diff"] > 0 and c["epoch1"]["p_ttest"] < corrected]
    name = lambda c: f"{c['parent']} at {100 * c['sparsity']:g}%"  # noqa: E731
    mean_diff = float(np.mean([c["test"]["mean_diff"] for c in cells]))
    lines = [f"Searched − random test accuracy, averaged over the {len(cells)} (parent, sparsity) cells: "
             f"{100 * mean_diff:+.2f} points; p < {ALPHA} (uncorrected) in {raw} of {len(cells)} cells, "
             f"p < {corrected:.4f} (Bonferroni) in {len(better) + len(worse)}."]
    equivalent = sum(abs(c["test"]["mean_diff"]) + c["test"]["ci95"] < MARGIN for c in cells)
    lines.append(f"The 95% CI of searched − random lies inside ±{100 * MARGIN:g} point in {equivalent} of "
                 f"{len(cells)} cells (equivalence shown there; elsewhere the seeds cannot rule out a larger gap).")
    reproduced = not better
    if reproduced:
        weak = equivalent < len(cells) / 2
        lines.append(f"**Claim reproduced{' (weakly)' if weak else ''}**: best-of-N random search over node-space "
                     "sub-networks is not significantly better than a random sub-network at the same sparsity in "
                     "any cell"
                     + (f" (random is significantly better in {', '.join(map(name, worse))})" if worse else "")
                     + (f"; but these seeds resolve a gap below {100 * MARGIN:g} point in only {equivalent} of "
                        f"{len(cells)} cells." if weak else "."))
    else:
        kept = lambda c, m: "/".join(f"{k:.0f}" for k in c[f"{m}_kept"])  # noqa: E731
        lines.append(f"**Claim not reproduced** in {', '.join(map(name, better))}: there the searched sub-network "
                     "is significantly better than the random one. Likely reason: at this small scale few nodes "
                     "survive per layer, so the layer allocation of a random node set varies and selection on "
                     "validation accuracy can favour a better one (mean kept nodes per layer, searched vs random: "
                     + "; ".join(f"{name(c)} {kept(c, 'searched')} vs {kept(c, 'random')}" for c in better)
                     + "); a larger parent keeps more nodes in every layer, which narrows that variation.")
    lines.append("Convergence (validation accuracy after the first final epoch): searched is significantly faster "
                 + (f"in {', '.join(map(name, faster))}." if faster else "in no cell (Bonferroni), as the paper "
                    "reports."))
    return "\n\n".join(lines), reproduced, len(better), raw


def plot(cells: list[dict], parents, path: Path | None) -> Path | None:
    if path is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(parents), figsize=(5 * len(parents), 3.6), squeeze=False)
    for ax, p in zip(axes[0], parents):
        mine = [c for c in cells if c["parent"] == p]
        x = [100 * c["sparsity"] for c in mine]
        for m, style in (("searched", "o-"), ("random", "s--")):
            ax.errorbar(x, [c[m][0] for c in mine], yerr=[c[m][1] for c in mine], fmt=style, capsize=3, label=m)
        ax.axhline(mine[0]["dense"][0], color="k", lw=1, label="dense parent")
        ax.set(title=f"{p} parent", xlabel="sparsity (% of weights removed)", ylabel="test accuracy")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--candidates", type=int, default=16, help="N: sub-networks sampled by the search")
    p.add_argument("--search-epochs", type=int, default=1, help="training epochs of each candidate")
    p.add_argument("--epochs", type=int, default=5, help="full budget: epochs of the final trainings")
    p.add_argument("--sparsities", default="0.5,0.8,0.9,0.95")
    p.add_argument("--limit", type=int, default=10000, help="MNIST training images used")
    p.add_argument("--parents", dest="parent_names", default="mlp,conv", help="mlp, conv or both")
    p.add_argument("--mlp-hidden", default="256,256")
    p.add_argument("--conv-hidden", default="16,32")
    p.add_argument("--conv-downsample", type=int, default=2, help="average-pool factor of the convnet's input")
    p.add_argument("--data", default=str(MNIST), help="mnist.pkl.gz")
    add_json_argument(p)
    args = p.parse_args(argv)
    if args.seeds < 2:
        p.error("--seeds must be >= 2 (paired test)")
    args.parent_names = args.parent_names.split(",")
    args.parents = parse_parents(args)
    sparsities = [float(s) for s in args.sparsities.split(",")]
    seeds = list(range(args.seeds))
    if not Path(args.data).exists():
        raise SystemExit(f"MNIST not found at {args.data} (see ../shared/data/README.md)")
    torch.set_num_threads(1)

    rows, timing = [], {"search_cpu_s": [], "trial_cpu_s": {}, "final_cpu_s": {}}
    wall = time.perf_counter()
    print(f"{'parent':6} {'sparsity':>8} {'seed':>4} {'method':8} {'test_acc':>8} {'ep1_val':>8} "
          f"{'sparsity':>8} {'kept':>12} {'cpu_s':>6}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        write_holdout(Path(args.data), Path(tmp) / HOLDOUT, args.limit)
        for parent in args.parent_names:
            for seed in seeds:
                dense = run_dense(args, parent, seed)
                found = [("dense", 0.0, dense)]
                for sp in sparsities:
                    searched, random, search_cpu, n = run_cell(args, parent, sp, seed, Path(tmp))
                    timing["search_cpu_s"].append(search_cpu)
                    timing["trial_cpu_s"].setdefault(f"{parent}_s{round(100 * sp)}", []).append(search_cpu / n)
                    found += [("searched", sp, searched), ("random", sp, random)]
                for method, sp, m in found:
                    kept = {k: v for k, v in m.items() if k.startswith("kept_h")}
                    timing["final_cpu_s"].setdefault(f"{parent}_{method}_s{round(100 * sp)}", []).append(m["cpu_s"])
                    rows.append({"parent": parent, "sparsity": sp, "seed": seed, "method": method,
                                 "test_acc": m["test_acc"], "val_acc": m["val_acc"],
                                 "epoch1_val_acc": m["epoch1_val_acc"], "curve": m["curve"],
                                 "achieved_sparsity": m["sparsity"], "weights": m["weights"],
                                 "search_val_acc": m.get("search_val_acc"), "cpu_s": m["cpu_s"], **kept})
                    print(f"{parent:6} {sp:8.2f} {seed:4d} {method:8} {m['test_acc']:8.4f} "
                          f"{m['epoch1_val_acc']:8.4f} {m['sparsity']:8.4f} "
                          f"{'/'.join(str(int(v)) for v in kept.values()):>12} {m['cpu_s']:6.1f}", flush=True)
    seconds = time.perf_counter() - wall
    trial_cpu = {k: float(np.mean(v)) for k, v in timing["trial_cpu_s"].items()}
    final_cpu = {k: float(np.mean(v)) for k, v in timing["final_cpu_s"].items()}
    print("\nCPU s per candidate trial (search CPU / candidates): "
          + " ".join(f"{k}={v:.2f}" for k, v in trial_cpu.items()))
    print("CPU s per final training: " + " ".join(f"{k}={v:.2f}" for k, v in final_cpu.items()))
    print(f"wall {seconds:.0f} s, CPU {time.process_time():.0f} s")
    cells, summary = summarise(rows, args.parent_names, sparsities, seeds)
    text, reproduced, n_better, n_raw = verdict(cells)
    main_test = primary(*pooled(rows, "test_acc"), MARGIN, claim="equivalent")
    early = paired_test(*pooled(rows, "epoch1_val_acc"))
    diffs = [a - b for a, b in zip(*pooled(rows, "test_acc"))]
    robust = robust_summary(diffs)
    primary_lines = "\n\n".join([
        primary_text(f"searched − random test accuracy, pooled over every (parent, sparsity, seed) cell; the paper's "
                     f"claim: no difference (equivalence margin ±{100 * MARGIN:g} point)", main_test),
        f"Robust summary of the {len(diffs)} paired differences (searched − random, points): mean "
        f"{100 * robust['mean']:+.2f}, median {100 * robust['median']:+.2f}, 20%-trimmed mean "
        f"{100 * robust['trimmed_mean']:+.2f}, min {100 * robust['min']:+.2f}, max {100 * robust['max']:+.2f}"
        + (f": mean and median differ by {100 * abs(robust['mean'] - robust['median']):.2f} points, so a few outlying "
           "seeds (e.g. a collapsed training) drive the mean — read the median and the trimmed mean."
           if abs(robust["mean"] - robust["median"]) > MARGIN / 2 else "."),
        f"Convergence, pooled (validation accuracy after the first final epoch; candidates were chosen on a "
        f"held-out split of {HELD_OUT:,} training images, not on this validation split): searched − random "
        f"{100 * early['mean_diff']:+.2f} ± {100 * early['ci95']:.2f} points, paired t p = {early['p_ttest']:.3g}: "
        + ("searched converges faster." if early["p_ttest"] < ALPHA and early["mean_diff"] > 0 else
           "random converges faster." if early["p_ttest"] < ALPHA else
           "no significant difference, as the paper reports."),
        "Per cell (secondary, Bonferroni over the cells):"])

    headers = ["parent", "sparsity", "achieved (s / r)", "kept nodes per layer (s / r)", "dense", "searched",
               "random", "searched − random (95% CI)", "p (t / Wilcoxon)", "epoch-1 val: s − r (p)"]
    table = []
    for c in cells:
        t, e = c["test"], c["epoch1"]
        kept = lambda m: "/".join(f"{k:.0f}" for k in c[f"{m}_kept"])  # noqa: E731
        table.append([c["parent"], f"{100 * c['sparsity']:g}%",
                      f"{100 * c['searched_sparsity']:.1f}% / {100 * c['random_sparsity']:.1f}%",
                      f"{kept('searched')} / {kept('random')}",
                      f"{c['dense'][0]:.4f} ± {c['dense'][1]:.4f}",
                      f"{c['searched'][0]:.4f} ± {c['searched'][1]:.4f}",
                      f"{c['random'][0]:.4f} ± {c['random'][1]:.4f}",
                      f"{t['mean_diff']:+.4f} ± {t['ci95']:.4f}", f"{t['p_ttest']:.3f} / {t['p_wilcoxon']:.3f}",
                      f"{e['mean_diff']:+.4f} ({e['p_ttest']:.3f})"])
    print()
    print(" | ".join(headers))
    for row in table:
        print(" | ".join(str(v) for v in row))
    print()
    print(primary_lines.replace("**", ""))
    text = text.replace("**Claim", "**Secondary (per cell): Claim")
    print(text.replace("**", ""))

    hidden = {p: args.parents[p][0] for p in args.parent_names}
    scale = (f"MNIST, first {args.limit:,} training images, {HELD_OUT:,} held-out training images for selection, "
             "10,000 validation (the curves) and 10,000 test images; "
             + "; ".join(f"{p} parent hidden {hidden[p]}"
                         + (f" on {28 // args.parents[p][1]}×{28 // args.parents[p][1]} inputs"
                            if args.parents[p][1] > 1 else " on 28×28") for p in args.parent_names)
             + f"; N = {args.candidates} candidates × {args.search_epochs} epoch(s), final training "
             f"{args.epochs} epoch(s); {args.seeds} paired seeds; {seconds / 60:.1f} min on this CPU.")
    fig = plot(cells, args.parent_names, figure_path(args, "accuracy"))
    markdown = "\n\n".join([
        "Random search over node-space sub-networks of an over-parameterised parent (space `node_subnet`: hidden "
        "nodes dropped, the parent's initial weights kept; sparsity = fraction of the parent's weights removed) "
        "vs one random sub-network at the same sparsity vs the dense parent (Random Search as a Baseline for "
        "Sparse NAS, arXiv 2403.08265). Searched: the `random` strategy's best of N by validation accuracy "
        "after a short training, then trained with the full budget; random and dense: the full budget. Paired: "
        "seed r initialises the parent and orders the data for all three.",
        f"Scale: {scale} Simplified for a 2-core CPU: small parents, a training subset and short training; the "
        "primary analysis pools every cell (report.primary: TOST for the paper's \"no difference\" claim, with "
        "its power at the observed variance); per cell, a two-sided paired t-test, Bonferroni-corrected.",
        primary_lines,
        markdown_table(headers, table),
        text,
    ] + ([f"![searched vs random vs dense]({Path(fig).name})"] if fig else []))
    summary.update({"primary_diff": main_test["mean_diff"], "primary_median_diff": robust["median"],
                    "primary_trimmed_diff": robust["trimmed_mean"], "primary_tost_p": main_test["tost"]["p"],
                    "primary_power": main_test["power"], "primary_seeds_for_80": main_test["seeds_for_80"],
                    "primary_reproduced": int(main_test["verdict"] == "reproduced"),
                    "reproduced": int(reproduced), "cells_searched_better": n_better,
                    "cells_p_below_005": n_raw, "seconds": round(seconds, 1)})
    finish(args, "random_search_baseline", rows, summary, markdown=markdown, figures=[fig] if fig else [],
           extra={"cells": cells, "trial_cpu_s": trial_cpu, "final_cpu_s": final_cpu})


if __name__ == "__main__":
    main()
