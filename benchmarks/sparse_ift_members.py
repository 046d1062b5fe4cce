"""Sparse-IFT members at iso-FLOP: the dense ResNet against each member (every block the same) at each sparsity,
trained with a static random mask and with RigL, paired seeds.

Every row has the dense network's effective FLOPs (checked here: the run stops if a member is off by >= 1%);
the members differ in parameters and in how the FLOPs are spent. Small scale: the preset's ResNet (C=8, one block
per stage), sklearn's digits, 5 epochs; one torch thread (the 2-core machine is shared).

    python benchmarks/sparse_ift_members.py --seeds 2
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from sparsenas.config import CORE, validate_section
from sparsenas.space import Arch, EvalContext
from sparsenas.spaces.sparse_ift import SparseIFTSpace


def uniform(space: SparseIFTSpace, member: str, s: float) -> Arch:
    n = len(space.plan)
    return Arch({**{f"b{i}.member": member for i in range(n)}, **{f"b{i}.sparsity": s for i in range(n)}})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--sparsities", default="0.5,0.75,0.9")
    p.add_argument("--members", default="wide,parallel,factorized,doped")
    p.add_argument("--methods", default="static,rigl")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    space = SparseIFTSpace()
    data = validate_section("data", {}, CORE["data"])
    sparsities = [float(s) for s in args.sparsities.split(",")]
    configs = [("dense", 0.0, "static")] + [(m, s, method) for m in args.members.split(",") for s in sparsities
                                             for method in args.methods.split(",")]
    start = time.perf_counter()
    rows = []
    print(f"{'member':11} {'sparsity':>8} {'method':>6} {'test_acc':>14} {'val_acc':>8} {'params':>8} "
          f"{'flops_sparse':>12} {'flops_dense':>11} {'meas_sparsity':>13} {'s/trial':>7}")
    reference = None
    for member, s, method in configs:
        train = validate_section("train", {"epochs": args.epochs, "sparse_training": method,
                                           "update_interval": 10}, CORE["train"])
        ctx = EvalContext(train=train, data=data)
        arch = uniform(space, member, s if member != "dense" else sparsities[0])
        runs, t0 = [], time.perf_counter()
        for seed in range(args.seeds):
            runs.append(space.evaluate(arch, seed, ctx))
        m0 = runs[0]
        reference = reference or m0["flops"]
        if abs(m0["flops_sparse"] / reference - 1) >= 0.01:
            raise SystemExit(f"{member}@{s}: flops_sparse {m0['flops_sparse']} is not within 1% of {reference}")
        test = [r["test_acc"] for r in runs]
        val = statistics.mean(r["val_acc"] for r in runs)
        sd = statistics.stdev(test) if len(test) > 1 else 0.0
        rows.append((member, s, method, statistics.mean(test)))
        print(f"{member:11} {s:8.2f} {method:>6} {statistics.mean(test):8.4f}±{sd:.3f} {val:8.4f} "
              f"{m0['params']:8.0f} {m0['flops_sparse']:12.0f} {m0['flops']:11.0f} {m0['sparsity']:13.3f} "
              f"{(time.perf_counter() - t0) / args.seeds:7.1f}")
    dense = rows[0][3]
    best = max(rows[1:], key=lambda r: r[3])
    by_method = {meth: statistics.mean(r[3] for r in rows[1:] if r[2] == meth) for meth in args.methods.split(",")}
    print(f"\ndense test_acc {dense:.4f}; best member {best[0]}@{best[1]:g} ({best[2]}) {best[3]:.4f}; "
          + "; ".join(f"mean over members with {k}: {v:.4f}" for k, v in by_method.items()))
    print("RESULT " + " ".join([f"dense_test_acc={dense:.4f}", f"best_member_test_acc={best[3]:.4f}",
                                f"best_member={best[0]}@{best[1]:g}/{best[2]}"]
                               + [f"mean_{k}_test_acc={v:.4f}" for k, v in by_method.items()]
                               + [f"seeds={args.seeds}", f"seconds={time.perf_counter() - start:.0f}"]))


if __name__ == "__main__":
    main()
