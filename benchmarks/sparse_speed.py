"""Sparse execution speed: exported (`sparsenas.ops.deploy.to_deployable`) vs the dense twin, on a searched
DARTS architecture and on linear layers.

Searched architecture: the best arch of a small, quick `dass` search (C = 64, 3 cells, MNIST 28×28, random
strategy, `--trials` trials of 1 epoch on the first `--limit` training images, validated on `--limit`/2: the
search picks the cells; accuracy plays no part in speed). Its cells are then built three ways, freshly initialised (speed does not depend on the weight
values): the dense twin (keep 1.0), every layer unstructured at 90% sparsity (magnitude masks, stem and
classifier too), and channel-structured with 50% of each layer's output channels kept (L1 filter masks, aligned
by the space over each group of coupled layers — a node's summed ops —, `ops.channel_align`, so export can remove
them). Each
sparse net is exported *for its target* — the planner times its candidates at that batch and thread count —
and timed against the dense twin, interleaved (`ops.timing.robust_ms`: 10% quantile), at batch 1 and 64,
1 and 2 threads. The speedup is over the dense twin *exported the same way* (`to_deployable` of the dense
twin: its pooling layers get the planner's channels-last kernel where faster and its BNs are folded into their
convs, as the sparse nets' are — neither is sparse, so neither may count as a sparse speedup); the speedup over the plain dense twin (the
module as built, as measured before the layout kernel existed) is shown too, and so is the one over the dense
twin run wholly channels-last (`memory_format=torch.channels_last`, model and input: oneDNN's faster layout for
dense convs and pooling; a stronger dense baseline that export does not produce). Linear part (as before): a
Linear 1024×1024 and an MLP 1024→2048→2048→1024→10 at batch 256, 50–99% unstructured sparsity, 1 thread.

    flock /tmp/heavy.lock python benchmarks/sparse_speed.py [--trials 4] [--limit 256] [--reps 10]
"""
from __future__ import annotations

import argparse
import copy
import gzip
import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from report import MNIST, add_json_argument, finish, markdown_table
from sparsenas import Study
from sparsenas.ops import SparseLinear
from sparsenas.ops.deploy import max_abs_diff, to_deployable
from sparsenas.ops.timing import robust_ms
from sparsenas.spaces.dass import DassSpace

SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.99)
BATCH = 256
STRUCTURES = {"unstructured": ("magnitude", 0.1), "channel": ("channel", 0.5)}
C, LAYERS = 64, 3


def linear(sparsity: float | None) -> nn.Module:
    torch.manual_seed(0)
    if sparsity is None:
        return nn.Linear(1024, 1024)
    return SparseLinear(1024, 1024, keep=1 - sparsity, mask_mode="magnitude")


def mlp(sparsity: float | None) -> nn.Module:
    torch.manual_seed(0)
    widths = (1024, 2048, 2048, 1024)
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b) if sparsity is None else SparseLinear(a, b, keep=1 - sparsity, mask_mode="magnitude"),
                   nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(1024, 10))


def mnist_subset(limit: int, folder: Path) -> Path:
    """The first `limit` MNIST training images and `limit // 2` validation images (28×28) as an .npz: a quick
    search validates on a few hundred images, not on MNIST's 10,000."""
    with gzip.open(MNIST) as f:
        (xt, yt), (xv, yv), _ = pickle.load(f, encoding="latin1")
    shape = (-1, 1, 28, 28)
    path = folder / "mnist_subset.npz"
    np.savez(path, x_train=xt[:limit].reshape(shape), y_train=yt[:limit], x_val=xv[:limit // 2].reshape(shape),
             y_val=yv[:limit // 2])
    return path


def searched_arch(args) -> dict:
    """The cells of the best arch (val_acc) of a quick random dass search on MNIST 28×28."""
    with tempfile.TemporaryDirectory() as folder:
        data = mnist_subset(args.limit, Path(folder))
        study = Study({"name": "dass", "C": C, "layers": LAYERS, "keep_ratios": [0.1]}, {"name": "random"}, seed=0,
                      overrides={"train.epochs": 1, "data.name": "npz", "data.path": str(data),
                                 "search.budget": args.trials})
        study.optimize()
    return dict(study.best.arch)


def build(arch: dict, mask: str, keep: float) -> nn.Module:
    space = DassSpace(C=C, layers=LAYERS, mask=mask, keep_ratios=[keep], stem_head_keep=keep)
    torch.manual_seed(0)
    arch = space.sample(np.random.default_rng(0)).replace(**{k: v for k, v in arch.items() if not k.endswith("keep")},
                                                          **{"normal.keep": keep, "reduce.keep": keep})
    return space.build(arch, (1, 28, 28), 10).eval()


SPARSE_KERNELS = ("csr", "direct", "bsr")  # counted per exported net (the planner's sparse kernels on the CPU)


def kernels(plan: dict) -> str:
    count = lambda a: sum(e["action"] == a for e in plan.values() if "mask" in e)  # noqa: E731
    return "/".join(str(count(a)) for a in SPARSE_KERNELS)


def stored_weights(model: nn.Module) -> int:
    """Parameters plus the stored nonzeros of CSR/BSR layers (their values are buffers)."""
    values = sum(b.numel() for name, b in model.named_buffers() if name.endswith("values"))
    return sum(p.numel() if p.layout == torch.strided else p.values().numel() for p in model.parameters()) + values


def time_all(fns: list, reps: int) -> list[float]:
    return [t.ms for t in robust_ms(fns, repeats=reps, max_repeats=2 * reps)]


def searched_rows(args, arch: dict) -> list[dict]:
    dense = build(arch, "magnitude", 1.0)
    channels_last = copy.deepcopy(dense).to(memory_format=torch.channels_last)
    inputs = {b: torch.randn(b, 1, 28, 28, generator=torch.Generator().manual_seed(1)) for b in (1, 64)}
    twins = {}  # (threads, batch) -> the dense twin exported for that target
    rows = []
    for structure, (mask, keep) in STRUCTURES.items():
        masked = build(arch, mask, keep)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for batch, x in inputs.items():
                if (threads, batch) not in twins:
                    twins[threads, batch] = to_deployable(dense, x, csr="auto")[0]
                t0 = time.perf_counter()
                exported, plan = to_deployable(masked, x, csr="auto")
                export_s = time.perf_counter() - t0
                diff = max_abs_diff(masked, exported, x)
                x_cl = x.contiguous(memory_format=torch.channels_last)
                dense_ms, twin_ms, cl_ms, export_ms = time_all(
                    [lambda: dense(x), lambda: twins[threads, batch](x), lambda: channels_last(x_cl),
                     lambda: exported(x)], args.reps)
                params = stored_weights(exported) / stored_weights(dense)
                row = {"structure": structure, "batch": batch, "threads": threads, "dense_ms": dense_ms,
                       "twin_ms": twin_ms, "channels_last_ms": cl_ms, "export_ms": export_ms,
                       "speedup": twin_ms / export_ms, "speedup_plain": dense_ms / export_ms,
                       "speedup_channels_last": cl_ms / export_ms, "kernels": kernels(plan),
                       "weights_stored": params, "max_abs_diff": diff, "export_s": export_s}
                rows.append(row)
                print(f"{structure:<13} {batch:>5} {threads:>7} {dense_ms:>9.3f} {twin_ms:>9.3f} {cl_ms:>9.3f} "
                      f"{export_ms:>9.3f} {row['speedup']:>7.2f}x {row['speedup_plain']:>7.2f}x "
                      f"{row['speedup_channels_last']:>7.2f}x {row['kernels']:>8} {params:>7.2f} {diff:>9.1e} "
                      f"{export_s:>6.1f}", flush=True)
    torch.set_num_threads(1)
    return rows


def linear_rows(args) -> list[dict]:
    x = torch.randn(BATCH, 1024, generator=torch.Generator().manual_seed(1))
    rows = []
    for name, make in (("linear", linear), ("mlp", mlp)):
        dense = make(None).eval()
        for s in SPARSITIES:
            masked = make(s).eval()
            exported, plan = to_deployable(masked, x, csr="auto")
            diff = max_abs_diff(masked, exported, x)
            dense_ms, export_ms = time_all([lambda: dense(x), lambda: exported(x)], args.reps)
            rows.append({"model": name, "sparsity": s, "dense_ms": dense_ms, "export_ms": export_ms,
                         "speedup": dense_ms / export_ms, "kernels": kernels(plan), "layers": len(plan),
                         "max_abs_diff": diff})
            print(f"{name:<8} {s:>8.2f} {dense_ms:>9.3f} {export_ms:>9.3f} {dense_ms / export_ms:>7.2f}x "
                  f"{kernels(plan):>8} {diff:>9.1e}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="trials of the dass search")
    parser.add_argument("--limit", type=int, default=256, help="MNIST training images of each search trial")
    parser.add_argument("--reps", type=int, default=10, help="timed rounds per measurement (at least)")
    add_json_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    arch = searched_arch(args)
    search_s = time.perf_counter() - t0
    print(f"torch {torch.__version__}; dass search: {args.trials} trials in {search_s:.0f} s; load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'structure':<13} {'batch':>5} {'threads':>7} {'plain ms':>9} {'twin ms':>9} {'NHWC ms':>9} "
          f"{'export ms':>9} {'speedup':>8} {'/plain':>8} {'/NHWC':>8} {'csr/dir/bsr':>8} {'weights':>7} "
          f"{'max diff':>9} {'plan s':>6}")
    searched = searched_rows(args, arch)
    print(f"\n{'model':<8} {'sparsity':>8} {'dense ms':>9} {'export ms':>9} {'speedup':>8} {'csr/dir/bsr':>8} "
          f"{'max diff':>9}")
    lin = linear_rows(args)
    pick = lambda s, b, key="speedup": next(r[key] for r in searched  # noqa: E731
                                            if r["structure"] == s and r["batch"] == b and r["threads"] == 1)
    summary = {"speedup_channel_b1": pick("channel", 1), "speedup_channel_b64": pick("channel", 64),
               "speedup_unstructured_b1": pick("unstructured", 1), "speedup_unstructured_b64": pick("unstructured", 64),
               "speedup_mlp_90": next(r["speedup"] for r in lin if r["model"] == "mlp" and r["sparsity"] == 0.9),
               "plain_channel_b64": pick("channel", 64, "speedup_plain"),
               "plain_unstructured_b64": pick("unstructured", 64, "speedup_plain"),
               "nhwc_channel_b64": pick("channel", 64, "speedup_channels_last"),
               "nhwc_unstructured_b64": pick("unstructured", 64, "speedup_channels_last")}
    summary = {k: round(v, 2) for k, v in summary.items()}
    load = [round(v, 2) for v in os.getloadavg()]
    finish(args, "sparse_speed", searched + lin, summary, markdown=markdown(searched, lin, arch, args, load),
           extra={"arch": arch, "search_s": search_s, "load_average": load})


def markdown(searched: list[dict], lin: list[dict], arch: dict, args, load) -> str:
    """The RESULTS.md section: both tables and what they show."""
    t1 = markdown_table(
        ["structure", "batch", "threads", "dense twin ms: plain", "exported", "channels-last", "exported ms",
         "speedup (vs exported twin)", "vs plain twin", "vs channels-last twin", "CSR/direct/BSR layers",
         "weights stored", "max |diff|"],
        [[r["structure"], r["batch"], r["threads"], f"{r['dense_ms']:.3f}", f"{r['twin_ms']:.3f}",
          f"{r['channels_last_ms']:.3f}", f"{r['export_ms']:.3f}", f"{r['speedup']:.2f}x", f"{r['speedup_plain']:.2f}x",
          f"{r['speedup_channels_last']:.2f}x", r["kernels"], f"{r['weights_stored']:.2f}", f"{r['max_abs_diff']:.1e}"]
         for r in searched])
    t2 = markdown_table(
        ["model", "sparsity", "dense ms", "exported ms", "speedup", "CSR/direct/BSR layers", "max |diff|"],
        [[r["model"], f"{r['sparsity']:.2f}", f"{r['dense_ms']:.3f}", f"{r['export_ms']:.3f}", f"{r['speedup']:.2f}x",
          r["kernels"], f"{r['max_abs_diff']:.1e}"] for r in lin])
    return (f"Exported vs dense twin on this CPU (torch {torch.__version__}; timing: interleaved rounds, 10% "
            f"quantile; load average at the end {', '.join(map(str, load))}). Searched DARTS cells (best of a "
            f"{args.trials}-trial random dass search, C={C}, {LAYERS} cells, MNIST 28×28), freshly initialised: "
            f"unstructured = every layer 90% sparse (magnitude), channel = 50% of each layer's filters kept; each "
            f"exported for its batch and thread count. Speedup = exported dense twin ÷ exported sparse net: both "
            f"pass through `to_deployable`, whose planner also gives pooling layers a channels-last kernel where "
            f"faster — not a sparse kernel, so the twin gets it too; 'vs plain twin' divides by the dense twin as "
            f"built instead (the RESULT's plain_* keys), 'vs channels-last twin' by the dense twin run wholly "
            f"channels-last (model and input; the nhwc_* keys): a stronger dense baseline than export gives.\n\n{t1}\n\nLinear layers (batch {BATCH}, 1 thread):\n\n{t2}")


if __name__ == "__main__":
    main()
