"""Random pruning with layer-wise allocation: uniform vs ER vs ERK random masks at 90 / 95% (Random Pruning
paper, Liu et al. ICLR 2022), at a base and a wider convnet, against the dense network, paired seeds.

Protocol: a small convnet (conv3×3 c → BN → ReLU → maxpool; conv c→2c → BN → ReLU → maxpool; conv 2c→2c → BN →
ReLU; linear → 10) in which every conv and the classifier are `SparseConv2d` / `SparseLinear` with a random mask
(mask kind "random"). `sparsenas.ops.allocation.allocate` sets each layer's density by uniform / ER / ERK for the
global sparsity (exactly round(d_l · n_l) kept weights per layer; layers that would exceed density 1 become dense
and the rest is re-solved, PAPERS.md); the mask stays fixed while the weights train (`train.sparse_training:
static`, sparsenas/training.py: SGD + momentum 0.9, cosine LR, batch 64). For one seed, every allocation of a width
starts from the same weights, the same mask noise (its masks are the top-k of the same uniform scores, so they
differ only in the per-layer counts) and the same batch order: the comparisons are paired by seed.

Scale (simplified vs the paper's CIFAR ResNets/VGGs trained for 160+ epochs): MNIST (../shared/data/mnist/
mnist.pkl.gz) average-pooled to 14×14, the first 5,000 training images, 10 epochs (the dense net's last-two-epoch
validation gain is reported to show it has converged), 90 and 95% sparsity (98% is left out: after 2 epochs it left
conv1 ~3 weights — layer collapse, not allocation), 6 paired seeds; test accuracy on the 10,000 MNIST test images.
Base width c = 16 (≈16k prunable weights), the wider net 2× the channels (c = 32). All conv and linear weights
are pruned, first layer and classifier included (the paper's sparselearning code masks every conv/linear weight).
6 seeds × 2 widths × (dense + 2 sparsities × 3 allocations) = 84 trainings; ≈22 min on one thread (estimated from
a timed 1-epoch run of these settings: ≈0.7 s per training epoch at c = 16, ≈2.1 s at c = 32, plus ≈1 s of
evaluation per training — not run at full size).

Primary, pre-registered comparison: ERK − uniform at c = 16, paired over seeds × sparsities, claim "ERK is better"
with a smallest effect of interest of 1 point; its power at the observed variance and the pairs 80% power needs
are printed (report.primary).

Questions: does allocation matter (ERK / ER − uniform, paired t-test over seeds × sparsities, per width), and does
the ERK − uniform gap shrink at the wider net (paired test of the per-(seed, sparsity) gaps of the two widths)?
The paper's companion claim — random sparse nets approach the dense one as width grows — is reported as the gap
dense − best allocation at each width.

    python benchmarks/random_pruning_erk.py                 # defaults (≈22 min, 1 thread)
    python benchmarks/random_pruning_erk.py --seeds 2 --epochs 1 --limit 1000   # a quick look
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from report import (MNIST, add_json_argument, figure_path, finish, markdown_table, mean_std, paired_test, primary,
                    primary_text)
from sparsenas.config import CORE, validate_section
from sparsenas.data import load_data
from sparsenas.ops import SparseConv2d, SparseLinear, count_model
from sparsenas.ops.allocation import allocate
from sparsenas.training import train_and_evaluate

ALLOCATIONS = ("uniform", "er", "erk")
EFFECT = 0.01  # smallest ERK − uniform gain of interest: 1 point (the paper's gaps at 90-95% are of this order or more)
CONVERGED = 0.003  # the dense net counts as converged when its last two epochs add < 0.3 points of val accuracy


class ConvNet(nn.Module):
    """Three sparse 3×3 convs (c, 2c, 2c channels) with BN, two max-pools, a sparse linear classifier."""

    def __init__(self, width: int, input_shape: tuple[int, ...], num_classes: int, mask_mode: str = "random"):
        super().__init__()
        c_in, h, w = input_shape

        def block(a, b, pool):
            layers = [SparseConv2d(a, b, 3, padding=1, bias=False, mask_mode=mask_mode), nn.BatchNorm2d(b), nn.ReLU()]
            return layers + ([nn.MaxPool2d(2)] if pool else [])

        self.features = nn.Sequential(*block(c_in, width, True), *block(width, 2 * width, True),
                                      *block(2 * width, 2 * width, False))
        self.classifier = SparseLinear(2 * width * (h // 4) * (w // 4), num_classes, mask_mode=mask_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def run(width: int, sparsity: float, allocation: str | None, seed: int, data, train_cfg: dict) -> dict:
    """Build at `seed`, allocate the density (None: dense), train with the static mask, evaluate."""
    torch.manual_seed(seed)
    model = ConvNet(width, data.input_shape, data.num_classes)
    densities = allocate(model, 1.0 - sparsity, allocation) if allocation else []
    curve: list[float] = []  # the dense net's validation accuracy after every epoch: has it converged?
    metrics = train_and_evaluate(model, data, train_cfg, seed, "cpu",
                                 None if allocation else (lambda epoch, m: curve.append(m["val_acc"])))
    counts = count_model(model, data.input_shape)
    return {"width": width, "sparsity": sparsity, "allocation": allocation or "dense", "seed": seed, "curve": curve,
            "test_acc": metrics["test_acc"], "val_acc": metrics["val_acc"], "measured_sparsity": counts["sparsity"],
            "layer_densities": [round(d, 4) for d in densities], "train_time_s": metrics["train_time_s"]}


def _acc(rows, width, allocation, sparsity=None) -> list[float]:
    """Test accuracies ordered by seed."""
    sel = [r for r in rows if r["width"] == width and r["allocation"] == allocation
           and (sparsity is None or r["sparsity"] == sparsity)]
    return [r["test_acc"] for r in sorted(sel, key=lambda r: (r["sparsity"], r["seed"]))]


def _pm(values) -> str:
    m, s = mean_std(values)
    return f"{m:.4f} ± {s:.4f}"


def _p(test: dict) -> str:
    return f"{test['mean_diff']:+.4f} ± {test['ci95']:.4f} (p={test['p_ttest']:.3g})"


def _figure(args, rows, widths, sparsities):
    path = figure_path(args, "accuracy")
    if path is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(widths), figsize=(5 * len(widths), 3.6), sharey=True)
    for ax, width in zip(axes, widths):
        for alloc in ALLOCATIONS:
            means = [statistics.mean(_acc(rows, width, alloc, s)) for s in sparsities]
            ax.plot([100 * s for s in sparsities], means, marker="o", label=alloc)
        ax.axhline(statistics.mean(_acc(rows, width, "dense")), color="k", ls="--", label="dense")
        ax.set_title(f"width c={width}")
        ax.set_xlabel("sparsity (%)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("MNIST test accuracy")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sparsities", default="0.9,0.95")
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--width", type=int, default=16, help="base channels c")
    p.add_argument("--wide", type=int, default=2, help="channel multiplier of the wider network")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--limit", type=int, default=5000, help="training images (the first N of MNIST's train split)")
    p.add_argument("--downsample", type=int, default=2, help="average-pool factor of the 28×28 images")
    p.add_argument("--threads", type=int, default=1)
    add_json_argument(p)
    args = p.parse_args(argv)
    if args.seeds < 2:
        raise SystemExit("--seeds must be >= 2 (paired tests)")
    if not MNIST.exists():
        raise SystemExit(f"MNIST not found at {MNIST}")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    data = load_data(validate_section("data", {"name": "mnist", "path": str(MNIST), "limit": args.limit,
                                               "downsample": args.downsample}, CORE["data"]))
    train_cfg = validate_section("train", {"epochs": args.epochs, "sparse_training": "static"}, CORE["train"])
    sparsities = [float(s) for s in args.sparsities.split(",")]
    widths = [args.width, args.width * args.wide]

    rows = []
    print(f"{'width':>5} {'sparsity':>8} {'allocation':>10} {'seed':>4} {'test_acc':>8} {'meas_sp':>7} "
          f"{'s':>5}  layer densities")
    for width in widths:
        for seed in range(args.seeds):
            for sparsity, alloc in [(0.0, None)] + [(s, a) for s in sparsities for a in ALLOCATIONS]:
                r = run(width, sparsity, alloc, seed, data, train_cfg)
                rows.append(r)
                print(f"{width:5d} {sparsity:8.2f} {r['allocation']:>10} {seed:4d} {r['test_acc']:8.4f} "
                      f"{r['measured_sparsity']:7.4f} {r['train_time_s']:5.1f}  {r['layer_densities']}", flush=True)

    # per (width, sparsity): mean ± std of each allocation, paired ERK − uniform and ER − uniform
    table, summary = [], {}
    tests = {}
    for width in widths:
        dense = _acc(rows, width, "dense")
        summary[f"dense_acc_c{width}"] = statistics.mean(dense)
        table.append([str(width), "0 (dense)", _pm(dense), "", "", "", ""])
        for s in sparsities:
            acc = {a: _acc(rows, width, a, s) for a in ALLOCATIONS}
            table.append([str(width), f"{100 * s:g}%", *(_pm(acc[a]) for a in ALLOCATIONS),
                          _p(paired_test(acc["erk"], acc["uniform"])), _p(paired_test(acc["er"], acc["uniform"]))])
        # pooled over sparsities: n = seeds × sparsities pairs
        pooled = {a: _acc(rows, width, a) for a in ALLOCATIONS}
        for a in ("erk", "er"):
            tests[(width, a)] = paired_test(pooled[a], pooled["uniform"])
            summary[f"{a}_minus_uniform_c{width}"] = tests[(width, a)]["mean_diff"]
            summary[f"{a}_minus_uniform_c{width}_p"] = tests[(width, a)]["p_ttest"]
        tests[(width, "er_vs_erk")] = paired_test(pooled["er"], pooled["erk"])
        summary[f"er_minus_erk_c{width}"] = tests[(width, "er_vs_erk")]["mean_diff"]
        best = max(statistics.mean(pooled[a]) for a in ALLOCATIONS)
        summary[f"dense_minus_best_c{width}"] = summary[f"dense_acc_c{width}"] - best
    base, wide = widths
    gap = {w: [e - u for e, u in zip(_acc(rows, w, "erk"), _acc(rows, w, "uniform"))] for w in widths}
    shrink = paired_test(gap[base], gap[wide])
    # > 0: the ERK − uniform gap is closer to zero at the wide net (whatever its sign)
    summary["gap_shrink"] = abs(statistics.mean(gap[base])) - abs(statistics.mean(gap[wide]))
    summary["gap_shrink_p"] = shrink["p_ttest"]
    result = primary(_acc(rows, base, "erk"), _acc(rows, base, "uniform"), EFFECT)
    gains = {w: dense_gain(rows, w) for w in widths}
    summary.update(primary_delta=result["mean_diff"], primary_p=result["p_ttest"], primary_power=result["power"],
                   primary_seeds_for_80=result["seeds_for_80"], primary_reproduced=int(result["verdict"] == "reproduced"),
                   **{f"dense_last2_gain_c{w}": g for w, g in gains.items()})
    summary["seeds"] = args.seeds
    summary["seconds"] = round(time.perf_counter() - start)
    head = [primary_text(f"ERK − uniform test accuracy at c={base}, pooled over the sparsities "
                         f"({args.seeds} seeds × {len(sparsities)} sparsities)", result), "",
            _convergence_line(gains, args.epochs), ""]

    headers = ["c", "sparsity", "uniform", "ER", "ERK", "ERK − uniform (95% CI, p)", "ER − uniform (95% CI, p)"]
    print("\n" + markdown_table(headers, table))
    figure = _figure(args, rows, widths, sparsities)
    markdown = _markdown(args, rows, widths, sparsities, table, headers, tests, shrink, summary, head)
    print("\n" + "\n".join(head))
    finish(args, "random_pruning_erk", rows, summary, markdown=markdown, figures=[figure],
           extra={"widths": widths, "sparsities": sparsities})


def _densities_table(rows, widths, sparsity) -> str:
    """Per-layer densities of each allocation at `sparsity` (the same for every seed)."""
    table = []
    for width in widths:
        for alloc in ALLOCATIONS:
            r = next(r for r in rows if r["width"] == width and r["allocation"] == alloc and r["sparsity"] == sparsity)
            table.append([str(width), alloc, *(f"{d:.4f}" for d in r["layer_densities"])])
    return markdown_table(["c", "allocation", "conv1", "conv2", "conv3", "linear"], table)


def dense_gain(rows, width) -> float:
    """Mean over seeds of the dense net's validation-accuracy gain over its last two epochs (nan below 3)."""
    curves = [r["curve"] for r in rows if r["width"] == width and r["allocation"] == "dense"]
    return statistics.mean(c[-1] - c[-3] for c in curves) if len(curves[0]) >= 3 else float("nan")


def _convergence_line(gains: dict[int, float], epochs: int) -> str:
    parts = [f"c={w}: {100 * g:+.2f} points" for w, g in gains.items()]
    done = all(abs(g) < CONVERGED for g in gains.values())
    return (f"Dense convergence: validation-accuracy gain over the last two of {epochs} epochs, mean over seeds — "
            + "; ".join(parts) + (f": **converged** (below {100 * CONVERGED:g} point at both widths)." if done else
                                  f": **not converged** (a gain of {100 * CONVERGED:g} point or more remains): "
                                  "read the comparisons as of a short training."))


def _markdown(args, rows, widths, sparsities, table, headers, tests, shrink, summary, head) -> str:
    base, wide = widths
    alpha = 0.05
    n = f"n={args.seeds}×{len(sparsities)} pairs"
    sig = lambda t, sign: t["p_ttest"] < alpha and sign * t["mean_diff"] > 0  # noqa: E731

    def matters(width):
        named = (("ERK", tests[(width, "erk")]), ("ER", tests[(width, "er")]))
        better = [name for name, t in named if sig(t, 1)]
        worse = [name for name, t in named if sig(t, -1)]
        parts = ([f"{' and '.join(better)} beat{'s' if len(better) == 1 else ''} uniform"] if better else []) + (
            [f"{' and '.join(worse)} lose{'s' if len(worse) == 1 else ''} to uniform"] if worse else [])
        er_erk = tests[(width, "er_vs_erk")]
        return (f"c={width}: {'; '.join(parts) or 'no allocation differs significantly from uniform'} "
                + "(" + "; ".join(f"{name} − uniform {_p(t)}" for name, t in named) + f"; {n}); ER − ERK {_p(er_erk)}")

    claim1 = all(sig(tests[(w, "erk")], 1) for w in widths)
    some1 = any(sig(tests[(w, a)], 1) for w in widths for a in ("erk", "er"))
    verdict1 = ("**Layer-wise allocation matters: reproduced** (ERK beats uniform at both widths)" if claim1 else
                "**Layer-wise allocation matters: partly reproduced**" if some1 else
                "**Layer-wise allocation matters: not reproduced at this scale**")
    g_base, g_wide = summary[f"erk_minus_uniform_c{base}"], summary[f"erk_minus_uniform_c{wide}"]
    if shrink["p_ttest"] < alpha:
        verdict2 = ("**the ERK − uniform gap shrinks with width**" if summary["gap_shrink"] > 0
                    else "**the ERK − uniform gap grows with width**")
    else:
        verdict2 = "**no significant change of the ERK − uniform gap with width**"
    verdict2 += (f": {g_base:+.4f} at c={base} vs {g_wide:+.4f} at c={wide} (paired difference of the per-(seed, "
                 f"sparsity) gaps {_p(shrink)}, {n})")
    d_base, d_wide = summary[f"dense_minus_best_c{base}"], summary[f"dense_minus_best_c{wide}"]
    verdict3 = (f"The best allocation trails the dense net by {d_base:.4f} at c={base} and {d_wide:.4f} at c={wide} "
                "(mean over the sparsities): " + ("random sparse nets get closer to dense at the wider net, as the "
                                                  "paper says" if d_wide < d_base else "not closer at the wider net"))
    reasons = []
    for w in widths:
        t = tests[(w, "erk")]
        if sig(t, 1):
            continue
        if sig(t, -1):
            reasons.append(f"at c={w} uniform beats ERK: ERK moves density from the 3×3 convs to the first conv and "
                           "the classifier (densities below), and in this short training the middle convs seem to "
                           "be the bottleneck")
        else:
            reasons.append(f"at c={w} ERK − uniform ({t['mean_diff']:+.4f}) is within the seed-to-seed noise of a "
                           f"{args.epochs}-epoch training (95% CI ±{t['ci95']:.4f}, {n})")
    if tests[(base, "er_vs_erk")]["p_ttest"] < alpha or tests[(wide, "er_vs_erk")]["p_ttest"] < alpha:
        better = [w for w in widths if sig(tests[(w, "er_vs_erk")], 1)]
        if better:
            reasons.append(f"ER beats ERK at c={', '.join(map(str, better))}: for the 3×3 convs ERK's kernel term "
                           "lowers their density relative to the classifier (see the densities), the reverse of "
                           "what helps this small net")
    text = [
        f"Static random masks at {', '.join(f'{100 * s:g}%' for s in sparsities)} global sparsity, allocated "
        "uniformly, by ER or by ERK (`sparsenas.ops.allocation`), on a 3-conv + linear convnet (BN, all conv and "
        f"linear weights pruned) at width c={base} and c={wide} ({args.wide}× the channels), and the dense net. "
        f"Scale: MNIST pooled to {28 // args.downsample}×{28 // args.downsample}, first {args.limit} training "
        f"images, {args.epochs} epochs of SGD (cosine), {args.seeds} paired seeds, test accuracy on 10,000 images "
        "(the paper: CIFAR ResNets/VGGs trained for 160+ epochs — reduced to fit a CPU run). Cells: mean ± std "
        "over seeds; differences: mean paired difference ± 95% CI, paired t-test p. 98% is left out: with 2 epochs "
        "there it left conv1 ~3 weights (layer collapse), which tests collapse, not allocation.",
        "",
        *head,
        markdown_table(headers, table),
        "",
        f"- {verdict1}. " + " ".join(f"{matters(w)}." for w in widths),
        f"- Wider network: {verdict2}.",
        f"- {verdict3}.",
    ]
    if reasons:
        text.append(f"- Likely reasons where ERK does not beat uniform / ER: {'; '.join(reasons)}.")
    text += ["", f"Per-layer densities at {100 * max(sparsities):g}% sparsity:", "",
             _densities_table(rows, widths, max(sparsities))]
    return "\n".join(text)


if __name__ == "__main__":
    main()
