"""TAS end to end: the Gumbel width/depth search toward a FLOP target, then the found network trained
from scratch with knowledge distillation from the unpruned network (TAS: a=0.9, T=4) vs plain CE.

    nice -n 10 python benchmarks/tas_kd.py [--search-epochs 40] [--epochs 15] [--seeds 3] [--ratio 0.5]

Prints the search trajectory summary, a table of accuracies (mean ± std over seeds) and one RESULT line.
"""
from __future__ import annotations

import argparse
import statistics
import time

from sparsenas.ops import count_model
from sparsenas.space import EvalContext
from sparsenas.spaces.tas import TasSpace
from sparsenas.spaces.tas_supernet import TasSupernetSearch


def mean_std(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--search-epochs", type=int, default=40)
    p.add_argument("--epochs", type=int, default=15, help="training epochs of the found network and the teacher")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--ratio", type=float, default=0.5, help="FLOP target ratio")
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--depth", type=int, default=20)
    args = p.parse_args(argv)

    ctx = EvalContext(train={"epochs": args.epochs, "batch_size": 64, "lr": 0.05, "momentum": 0.9,
                             "weight_decay": 3e-4, "score_lr": 0.1, "grad_clip": 5.0},
                      data={"name": "digits", "val_fraction": 0.25, "test_fraction": 0.25}, device="cpu")
    space = TasSpace(C=args.C, depth=args.depth)
    start = time.perf_counter()
    search = TasSupernetSearch(space, ctx, 0, {"epochs": args.search_epochs, "flop_ratio": args.ratio})
    ratios = []
    for epoch in range(search.epochs):
        scalars, _ = search.run_epoch(epoch)
        ratios.append(scalars["flops_ratio"])
    search_s = time.perf_counter() - start
    arch = search.derive()
    shape = (1, 8, 8)
    full = count_model(space.build(space.full_arch(), shape, 10), shape)
    found = count_model(space.build(arch, shape, 10), shape)
    ratio = found["flops"] / full["flops"]
    print(f"ResNet-{args.depth} C={args.C} on digits; search {args.search_epochs} epochs in {search_s:.0f} s")
    print(f"argmax FLOP ratio per epoch: {' '.join(f'{r:.2f}' for r in ratios)}")
    print(f"found: {space.label(arch)}")
    print(f"FLOPs {found['flops']:.0f} / {full['flops']:.0f} = {ratio:.3f} (target {args.ratio}); "
          f"params {found['params']:.0f} / {full['params']:.0f}")

    rows = {}
    for name, distill in (("KD (a=0.9, T=4)", True), ("plain CE", False)):
        runs = [TasSpace(C=args.C, depth=args.depth, distill=distill).evaluate(arch, seed, ctx)
                for seed in range(args.seeds)]
        rows[name] = runs
    teacher = rows["KD (a=0.9, T=4)"][0]
    print()
    print(f"{'network':<28}{'val_acc':>16}{'test_acc':>16}")
    print(f"{'unpruned teacher (CE)':<28}{teacher['teacher_val_acc']:>16.4f}{teacher['teacher_test_acc']:>16.4f}")
    summary = {}
    for name, runs in rows.items():
        v, t = mean_std([r["val_acc"] for r in runs]), mean_std([r["test_acc"] for r in runs])
        summary[name] = t
        print(f"{'found, ' + name:<28}{v[0]:>9.4f} ± {v[1]:.4f}{t[0]:>9.4f} ± {t[1]:.4f}")
    kd, ce = summary["KD (a=0.9, T=4)"], summary["plain CE"]
    print(f"RESULT flops_ratio={ratio:.4f} target={args.ratio} within_tolerance={abs(ratio - args.ratio) <= 0.05} "
          f"kd_test_acc={kd[0]:.4f} kd_test_std={kd[1]:.4f} ce_test_acc={ce[0]:.4f} ce_test_std={ce[1]:.4f} "
          f"teacher_test_acc={teacher['teacher_test_acc']:.4f} seeds={args.seeds} search_s={search_s:.0f}")


if __name__ == "__main__":
    main()
