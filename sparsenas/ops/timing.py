"""Wall-clock timing of forward passes: median milliseconds after untimed warm-up calls."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

import torch


def median_ms(fns: Sequence[Callable[[], Any]], reps: int = 9, device: str = "cpu", warmup: int = 2) -> list[float]:
    """Median ms of each callable over `reps` timed calls after `warmup` untimed ones. The callables run in
    turn within each round, so a change of machine load hits all of them alike; on CUDA each call is
    synchronised."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times: list[list[float]] = [[] for _ in fns]
    with torch.no_grad():
        for rep in range(warmup + reps):
            for fn, ts in zip(fns, times):
                sync()
                start = time.perf_counter()
                fn()
                sync()
                if rep >= warmup:
                    ts.append(time.perf_counter() - start)
    return [statistics.median(ts) * 1e3 for ts in times]


def time_ms(fn: Callable[[], Any], device: str = "cpu", warmup: int = 5, repeats: int = 20) -> float:
    """Median wall-clock milliseconds of `fn()` after `warmup` untimed calls (CUDA: synchronised)."""
    return median_ms([fn], repeats, device, warmup)[0]
