"""Masked dense vs exported sparse execution on this CPU.

For a Linear 1024×1024 (batch 256) and a linear-heavy MLP (1024 → 2048 → 2048 → 1024 → 10, batch 256) at
50/80/90/95/99% unstructured (magnitude) sparsity: the dense twin, the masked model (W ⊙ mask every
forward) and the exported model (`sparsenas.ops.deploy.to_deployable`, CSR where timed faster), median ms of
`--reps` runs after warm-up at a fixed thread count, the three run in turn in each repetition. speedup = dense ms / exported ms.

    nice -n 10 python benchmarks/sparse_speed.py [--threads 1] [--reps 15]
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

from report import add_json_argument, finish, markdown_table
from sparsenas.ops.deploy import max_abs_diff, to_deployable
from sparsenas.ops.timing import median_ms
from sparsenas.ops import SparseLinear

SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.99)
BATCH = 256


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--reps", type=int, default=15, help="timed runs per measurement (median)")
    add_json_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(BATCH, 1024, generator=torch.Generator().manual_seed(1))
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {BATCH}, median of {args.reps}")
    print(f"{'model':<8} {'sparsity':>8} {'dense ms':>9} {'masked ms':>9} {'export ms':>9} {'speedup':>8} "
          f"{'csr layers':>10} {'max diff':>9}")
    result, rows = {}, []
    for name, make in (("linear", linear), ("mlp", mlp)):
        dense = make(None).eval()
        for s in SPARSITIES:
            masked = make(s).eval()
            exported, plan = to_deployable(masked, x, csr="auto")
            diff = max_abs_diff(masked, exported, x)
            dense_ms, masked_ms, export_ms = median_ms([lambda m=m: m(x) for m in (dense, masked, exported)], args.reps)
            csr = sum(e["action"] == "csr" for e in plan.values())
            speedup = dense_ms / export_ms
            print(f"{name:<8} {s:>8.2f} {dense_ms:>9.3f} {masked_ms:>9.3f} {export_ms:>9.3f} {speedup:>7.2f}x "
                  f"{csr:>4}/{len(plan):<5} {diff:>9.1e}")
            result[f"speedup_{'linear' if name == 'linear' else 'model'}_{round(s * 100)}"] = speedup
            rows.append({"model": name, "sparsity": s, "dense_ms": dense_ms, "masked_ms": masked_ms,
                         "export_ms": export_ms, "speedup": speedup, "csr_layers": csr, "layers": len(plan),
                         "max_abs_diff": diff})
    summary = {k: round(result[k], 2) for k in ("speedup_linear_90", "speedup_model_90", "speedup_linear_99",
                                                 "speedup_model_99")}
    finish(args, "sparse_speed", rows, summary, markdown=markdown(rows, args))


def markdown(rows: list[dict], args) -> str:
    """The RESULTS.md section: the table and what it shows, worded from the numbers."""
    table = markdown_table(
        ["model", "sparsity", "dense ms", "masked ms", "exported ms", "speedup (dense / exported)", "CSR layers",
         "max |diff|"],
        [[r["model"], f"{r['sparsity']:.2f}", f"{r['dense_ms']:.3f}", f"{r['masked_ms']:.3f}", f"{r['export_ms']:.3f}",
          f"{r['speedup']:.2f}x", f"{r['csr_layers']}/{r['layers']}", f"{r['max_abs_diff']:.1e}"] for r in rows])
    lines = []
    for name, label in (("linear", "Linear 1024×1024"), ("mlp", "MLP 1024→2048→2048→1024→10")):
        rs = [r for r in rows if r["model"] == name]
        faster = [r["sparsity"] for r in rs if r["speedup"] > 1.05]
        masked = sorted(r["masked_ms"] / r["dense_ms"] for r in rs)
        median = masked[len(masked) // 2]
        top = max(rs, key=lambda r: r["speedup"])
        lines.append(f"- {label}: exported is faster than dense (> 1.05x) "
                     + (f"at {', '.join(f'{f:.0%}' for f in faster)} sparsity, up to {top['speedup']:.2f}x at {top['sparsity']:.0%}"
                        if faster else "at no sparsity tested")
                     + f"; masked execution (W ⊙ mask every forward) takes {masked[0]:.2f}–{masked[-1]:.2f}x the "
                       f"dense time (median {median:.2f}x): "
                     + ("masking alone saves no time, the speedup comes only from the export."
                        if median >= 0.95 else "masking alone is faster than dense here (unexpected: likely noise)."))
    return (f"Masked dense vs exported sparse execution on this CPU (torch {torch.__version__}, {args.threads} "
            f"thread(s), batch {BATCH}, magnitude masks; `sparsenas.ops.deploy.to_deployable` turns a sparse linear "
            f"into CSR where it times faster): median of {args.reps} runs, the three models run in turn in each "
            f"repetition. Timings depend on the load of the machine while it ran.\n\n{table}\n\n"
            + "\n".join(lines))


if __name__ == "__main__":
    main()
