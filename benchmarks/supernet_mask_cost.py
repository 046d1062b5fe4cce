"""Cost of the DASS masks in a supernet training step: masked (top-k score masks at the target keep ratio)
vs the same supernet with masks disabled (keep ratio 1: the layers use their dense weights directly).
Blocks of steps alternate between the two settings so that machine noise hits both alike.

A step is the one of the search's weight phases (`DassSupernetSearch.run_epoch` outside pruning, first-order,
no latency term): an α step (Adam) on a validation batch, then a weight step (SGD, gradient clipped) on a
training batch; it is written here from the search's public model and optimisers. The search starts in its
pretrain phase, which trains the same parameters as finetune (weights and α; scores frozen), and each block
sets the layers' keep ratio itself.

    python benchmarks/supernet_mask_cost.py
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from sparsenas.config import CORE
from sparsenas.space import EvalContext
from sparsenas.spaces.dass import DassSpace


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--steps", type=int, default=5, help="steps per block")
    p.add_argument("--keep", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ctx = EvalContext(train={k: f.default for k, f in CORE["train"].items()},
                      data={k: f.default for k, f in CORE["data"].items()})
    search = DassSpace(keep_ratios=[args.keep]).supernet_search(ctx, 0, {"keep": args.keep})
    model = search.model
    layers = model.sparse_layers()
    batch = (search.train_split[0][:32], search.train_split[1][:32])
    val = (search.val_split[0][:32], search.val_split[1][:32])

    def step() -> None:
        search.a_opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(val[0]), val[1]).backward()
        search.a_opt.step()
        search.w_opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(batch[0]), batch[1]).backward()
        nn.utils.clip_grad_norm_(model.weights(), search.o["grad_clip"])
        search.w_opt.step()

    def block(keep: float) -> float:
        for layer in layers:
            layer.keep = keep
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        return (time.perf_counter() - start) / args.steps * 1000

    block(1.0), block(args.keep)  # warm-up
    times = {"masked": [], "unmasked": []}
    for _ in range(args.blocks):
        times["unmasked"].append(block(1.0))
        times["masked"].append(block(args.keep))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'setting':10} {'ms/step (median of blocks)':>28}")
    for k, v in med.items():
        print(f"{k:10} {v:28.1f}")
    ratio = med["masked"] / med["unmasked"]
    print(f"masked / unmasked = {ratio:.3f} (target <= 1.3)")
    print(f"RESULT step_ms_masked={med['masked']:.1f} step_ms_unmasked={med['unmasked']:.1f} mask_cost_ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
