"""DASS-derived vs DARTS-derived-then-pruned vs random arch with a random mask, at equal sparsity.

For each sparsity and seed (paired: the same seed for the three methods):
  dass    — the DASS supernet search (pretrain → prune → finetune, α on the masked val loss), derived arch
  darts   — the same supernet searched without masks (keep 1 throughout: DARTS), derived arch pruned to the
            target keep ratio
  random  — a random arch of the space with a fixed random mask at the same keep ratio
Each derived/sampled arch is then trained as an ordinary trial (same epochs, same seed) and its test
accuracy is reported. Small scale: C=8, 3 cells, sklearn's digits by default. MNIST (`--dataset mnist`,
../shared/data) is the issue's target, but a DARTS supernet at 28×28 costs several seconds per batch-32
step on this 2-core CPU (sep_conv_5x5 alone ~0.15–0.7 s per edge), so a 3-seed MNIST run does not fit
the budget here; use `--limit` to train on a subset.

    python benchmarks/dass_vs_baselines.py --seeds 3
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from sparsenas.config import CORE
from sparsenas.space import EvalContext
from sparsenas.spaces.dass import DassSpace


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=("digits", "mnist"), default="digits")
    p.add_argument("--data", default=str(here.parent / "shared/data/mnist/mnist.pkl.gz"), help="MNIST file")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--keeps", default="0.1,0.01", help="keep ratios (0.1 = 90%% sparse, 0.01 = 99%%)")
    p.add_argument("--limit", type=int, default=None, help="training images used (default: all)")
    p.add_argument("--epochs", type=int, default=8, help="training epochs of each final arch")
    p.add_argument("--phase-epochs", type=int, default=3, help="epochs of each supernet phase")
    args = p.parse_args()

    keeps = [float(k) for k in args.keeps.split(",")]
    data = {k: f.default for k, f in CORE["data"].items()} | {"name": args.dataset, "limit": args.limit}
    if args.dataset == "mnist":
        data["path"] = args.data
    train = {k: f.default for k, f in CORE["train"].items()} | {"epochs": args.epochs}
    ctx = EvalContext(train=train, data=data)
    e = args.phase_epochs
    searches = {
        "dass": {"pretrain_epochs": e, "prune_epochs": e, "finetune_epochs": e},
        "darts": {"pretrain_epochs": 3 * e, "prune_epochs": 0, "finetune_epochs": 0},
    }
    results: dict[tuple[str, float], list[float]] = {}
    start = time.perf_counter()
    print(f"{'method':8} {'sparsity':>8} {'seed':>4} {'test_acc':>8} {'sparsity_measured':>17} {'seconds':>7}")
    for keep in keeps:
        learned = DassSpace(keep_ratios=sorted(set(keeps)))
        random_masks = DassSpace(keep_ratios=sorted(set(keeps)), mask="random")
        for seed in range(args.seeds):
            for method in ("dass", "darts", "random"):
                t0 = time.perf_counter()
                if method == "random":
                    arch = random_masks.sample(np.random.default_rng(seed)).replace(**{"normal.keep": keep,
                                                                                      "reduce.keep": keep})
                    metrics = random_masks.evaluate(arch, seed, ctx)
                else:
                    search = learned.supernet_search(ctx, seed, {**searches[method], "keep": keep})
                    for epoch in range(search.epochs):
                        search.run_epoch(epoch)
                    metrics = learned.evaluate(search.derive(), seed, ctx)
                results.setdefault((method, keep), []).append(metrics["test_acc"])
                print(f"{method:8} {1 - keep:8.2f} {seed:4d} {metrics['test_acc']:8.4f} {metrics['sparsity']:17.4f} "
                      f"{time.perf_counter() - t0:7.1f}", flush=True)
    print("\nmethod   sparsity  test_acc mean ± std")
    summary = []
    for (method, keep), accs in results.items():
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{method:8} {1 - keep:8.2f}  {statistics.mean(accs):.4f} ± {sd:.4f}")
        summary.append(f"{method}_{round(100 * (1 - keep))}={statistics.mean(accs):.4f}")
    print(f"total {time.perf_counter() - start:.0f} s")
    print("RESULT " + " ".join(summary))


if __name__ == "__main__":
    main()
