"""The CUDA paths, measured on the GPU at hand: sparse kernels for a linear layer (a 1×1 conv is the same product
on an (N·H·W, C) activation) and a search trial trained on cuda vs the same trial on the CPU.

    python benchmarks/gpu_paths.py            # needs a CUDA GPU; prints a table and a RESULT line

Kernels, each on the layer's weight W (out, in) at the stated sparsity, against the dense fp16 product:
  nm_2_4      2:4 semi-structured (torch.sparse.to_sparse_semi_structured: cuSPARSELt or CUTLASS), fp16,
              compute capability >= 8.0; 50% sparsity by construction
  bsr_90      block-sparse rows, 32×32 blocks, 90% of the blocks zero (W_bsr @ xᵀ), fp16
  csr_90      unstructured CSR, 90% zero (torch.sparse.mm, cuSPARSE), fp32 (its dense twin is timed in fp32)
Times are CUDA-event medians over `--repeats` runs after warm-up; `max_err` is the largest absolute difference from
the dense product of the same masked weight, relative to the largest output. A kernel torch does not have on this
device is reported as `unsupported` with the error, not skipped silently.
Training: one `dass` trial on digits (`--epochs`) through sparsenas.Study with execution.device cuda and cpu.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import sparsenas


def cuda_ms(fn, repeats: int, inner: int = 20) -> float:
    """Time of one fn() in ms: the median over `repeats` CUDA-event spans of `inner` back-to-back calls (so that
    launch gaps between calls are not counted as the kernel's), after 5 warm-up calls."""
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / inner)
    return statistics.median(times)


def graph_ms(fn, repeats: int, inner: int = 20) -> float:
    """As cuda_ms, but `inner` calls captured once in a CUDA graph and replayed: the kernels' time without the
    Python/dispatch overhead that eager mode adds to every call (what torch.compile's cudagraphs mode gets)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(inner):
            fn()
    return cuda_ms(graph.replay, repeats, inner=1) / inner


def two_of_four(weight: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest |w| of every 4 consecutive inputs (the 2:4 pattern)."""
    groups = weight.reshape(weight.shape[0], -1, 4)
    keep = groups.abs().topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return (groups * mask).reshape(weight.shape)


def block_sparse(weight: torch.Tensor, block: int, sparsity: float, generator: torch.Generator) -> torch.Tensor:
    rows, cols = weight.shape[0] // block, weight.shape[1] // block
    kept = torch.rand(rows, cols, generator=generator, device="cpu") >= sparsity
    mask = kept.repeat_interleave(block, 0).repeat_interleave(block, 1).to(weight.device)
    return weight * mask


def unstructured(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    k = int(weight.numel() * (1 - sparsity))
    threshold = weight.abs().flatten().kthvalue(weight.numel() - k).values
    return weight * (weight.abs() > threshold)


def unsupported(name, out, inp, batch, error: Exception) -> dict:
    return {"kernel": name, "shape": f"{out}x{inp}", "batch": batch,
            "error": f"unsupported: {type(error).__name__}: {str(error).splitlines()[0][:90]}"}


def kernel_row(name, out, inp, batch, dense_fn, sparse_fn, reference, repeats):
    row = {"kernel": name, "shape": f"{out}x{inp}", "batch": batch}
    try:
        result = sparse_fn()
        scale = reference.abs().max().item() or 1.0
        row["max_err"] = (result.float() - reference.float()).abs().max().item() / scale
        row["dense_ms"], row["sparse_ms"] = cuda_ms(dense_fn, repeats), cuda_ms(sparse_fn, repeats)
        row["speedup"] = row["dense_ms"] / row["sparse_ms"]
        try:
            row["graph_speedup"] = graph_ms(dense_fn, repeats) / graph_ms(sparse_fn, repeats)
        except (RuntimeError, NotImplementedError) as e:  # a kernel that cannot be captured
            row["graph_speedup"] = f"no graph: {type(e).__name__}"
    except (RuntimeError, NotImplementedError, ValueError, TypeError) as e:
        return unsupported(name, out, inp, batch, e)
    return row


def layer_rows(out: int, inp: int, batch: int, repeats: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    w32 = torch.randn(out, inp, generator=generator).cuda()
    x32 = torch.randn(batch, inp, generator=generator).cuda()
    w16, x16 = w32.half(), x32.half()
    rows = []
    nm = two_of_four(w16)
    xt16 = x16.t().contiguous()  # every product below is W @ xᵀ: the sparse operand first, as the kernels want it
    try:
        semi = torch.sparse.to_sparse_semi_structured(nm)
    except (RuntimeError, NotImplementedError, ValueError) as e:
        rows.append(unsupported("nm_2_4", out, inp, batch, e))
    else:
        rows.append(kernel_row("nm_2_4", out, inp, batch, lambda: nm @ xt16, lambda: semi @ xt16, nm @ xt16,
                               repeats))
    bsr_dense = block_sparse(w16, 32, 0.9, generator)
    try:
        bsr = bsr_dense.to_sparse_bsr((32, 32))
        rows.append(kernel_row("bsr_90", out, inp, batch, lambda: bsr_dense @ xt16, lambda: bsr @ xt16,
                               bsr_dense @ xt16, repeats))
    except (RuntimeError, NotImplementedError) as e:
        rows.append(unsupported("bsr_90", out, inp, batch, e))
    csr_dense = unstructured(w32, 0.9)
    csr = csr_dense.to_sparse_csr()
    xt32 = x32.t().contiguous()
    rows.append(kernel_row("csr_90", out, inp, batch, lambda: csr_dense @ xt32, lambda: torch.sparse.mm(csr, xt32),
                           csr_dense @ xt32, repeats))
    return rows


def training_rows(epochs: int) -> list[dict]:
    rows = []
    for device in ("cuda", "cpu"):
        study = sparsenas.Study(space="dass", strategy="random", seed=0,
                                overrides={"execution.device": device, "train.epochs": epochs,
                                           "execution.cpus_per_trial": torch.get_num_threads()})
        start = time.perf_counter()
        study.optimize(n_trials=2)
        wall = time.perf_counter() - start
        trials = [t for t in study.trials if t.status == "ok"]
        rows.append({"device": device, "trials_ok": len(trials), "wall_s": wall,
                     "train_time_s": sum(t.metrics["train_time_s"] for t in trials),
                     "val_acc": max((t.metrics["val_acc"] for t in trials), default=float("nan"))})
    return rows


def print_table(rows: list[dict], keys: list[str]) -> None:
    print("  ".join(f"{k:>12}" for k in keys))
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k, "")
            cells.append(f"{v:12.4g}" if isinstance(v, float) else f"{str(v):>12}")
        print("  ".join(cells) + (f"  {r['error']}" if "error" in r else ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_paths.py: no CUDA device here; this benchmark measures the CUDA paths only")
    name = torch.cuda.get_device_name()
    print(f"device: {name}, compute capability {torch.cuda.get_device_capability()}, torch {torch.__version__}")
    sizes = [(1024, 1024, 64), (1024, 1024, 4096), (4096, 4096, 64), (4096, 4096, 4096), (8192, 8192, 8192)]
    rows = [r for out, inp, batch in sizes for r in layer_rows(out, inp, batch, args.repeats)]
    print_table(rows, ["kernel", "shape", "batch", "dense_ms", "sparse_ms", "speedup", "graph_speedup", "max_err"])
    train = training_rows(args.epochs)
    print()
    print_table(train, ["device", "trials_ok", "wall_s", "train_time_s", "val_acc"])

    def best(kernel):
        found = [r["speedup"] for r in rows if r["kernel"] == kernel and "speedup" in r]
        return f"{max(found):.3f}" if found else "nan"
    def at_8192(key):
        return {r["kernel"]: f"{r[key]:.3f}" if isinstance(r.get(key), float) else "nan"
                for r in rows if r["shape"] == "8192x8192"}
    fmt, gfmt = at_8192("speedup"), at_8192("graph_speedup")
    cpu, cuda = (next(t for t in train if t["device"] == d) for d in ("cpu", "cuda"))
    print(f"RESULT gpu={name.replace(' ', '_')} speedup_nm24_8192={fmt.get('nm_2_4', 'nan')} "
          f"speedup_bsr90_8192={fmt.get('bsr_90', 'nan')} speedup_csr90_8192={fmt.get('csr_90', 'nan')} "
          f"graph_nm24_8192={gfmt.get('nm_2_4', 'nan')} graph_bsr90_8192={gfmt.get('bsr_90', 'nan')} "
          f"best_nm24={best('nm_2_4')} best_bsr90={best('bsr_90')} best_csr90={best('csr_90')} "
          f"train_speedup_cuda={cpu['train_time_s'] / max(cuda['train_time_s'], 1e-9):.3f}")


if __name__ == "__main__":
    main()
