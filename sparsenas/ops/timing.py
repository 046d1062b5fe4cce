"""Wall-clock timing of forward passes.

`median_ms` / `time_ms`: the median after a fixed number of untimed warm-up calls (quick; used by export's
CSR-or-dense choice). `robust_ms`: timing meant to hold on a busy machine (used by the latency predictors):

- the callables run interleaved, one call each per round, so a change of load hits all of them alike;
- warm-up until stable: untimed calls until the fastest of the last `warmup` calls is no faster (by 2%) than
  the fastest before them (first-call allocations, caches, lazy initialisation), at most 10·`warmup` rounds;
- the estimate is a low quantile (`quantile`, default 0.1) of the timed calls, not the median: interference
  (another process taking the core, an interrupt) only ever adds time, so the fast tail is what the code costs
  on a quiet core, and it moves little when the machine gets busy;
- repeats adapted to the observed noise: rounds continue past `repeats` (up to `max_repeats`) while the
  estimates of the even and the odd rounds differ by more than `tolerance`;
- with `pin=True` the calling thread is pinned to `torch.get_num_threads()` CPUs while timing (Linux `sched_setaffinity`, where
  available), so that it is not migrated between cores (cold caches) in the middle of a measurement.

What it cannot remove: a slowdown of every call, interrupted or not — busy neighbours sharing the core's
caches, memory bandwidth or clock. On this project's 2-core VM, two CPU-bound processes made the 10% quantile
of dass kernels 1.29× their idle value (median over kernels) and of whole dass networks 1.05–1.39×, while
the medians of the networks grew 6×: the estimate removes preemption, not contention.

Each callable gets a `Timing`: `ms` (the estimate), `median`, `spread` = median/ms − 1 (how much the machine
interfered: ~0 when quiet) and `noise` = |even − odd| / ms, the repeatability of `ms` itself (two independent
halves of the measurement disagree by this much; the noise floor of a profile is built from it).
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
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


@dataclass(frozen=True)
class Timing:
    """One callable's robust timing (see the module docstring): estimate, median, spread, noise, timed calls."""

    ms: float
    median: float
    spread: float
    noise: float
    repeats: int


@contextlib.contextmanager
def pinned(enabled: bool = True):
    """Pin the calling thread to as many CPUs as torch has intra-op threads (the last ones: CPU 0 takes most
    interrupts), restoring its affinity afterwards; does nothing where the OS has no `sched_setaffinity`."""
    if not (enabled and hasattr(os, "sched_setaffinity")):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(before)[-torch.get_num_threads():])
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _estimate(ts: Sequence[float], quantile: float) -> float:
    return float(np.quantile(ts, quantile))


def _timing(ts: list[float], quantile: float) -> Timing:
    ms = _estimate(ts, quantile) * 1e3
    halves = [_estimate(ts[k::2], quantile) * 1e3 for k in (0, 1)]
    median = statistics.median(ts) * 1e3
    return Timing(ms, median, median / ms - 1, abs(halves[0] - halves[1]) / ms, len(ts))


def robust_ms(fns: Sequence[Callable[[], Any]], device: str = "cpu", warmup: int = 3, repeats: int = 15,
              max_repeats: int | None = None, quantile: float = 0.1, tolerance: float = 0.02,
              pin: bool = True) -> list[Timing]:
    """A `Timing` of each callable (see the module docstring): interleaved rounds, warm-up until stable, at
    least `repeats` timed rounds and more (up to `max_repeats`, default 4·repeats) while noisier than
    `tolerance`; CUDA calls are synchronised."""
    if not fns:
        return []
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    max_repeats = max(repeats, max_repeats or 4 * repeats)

    def round_(times):
        for fn, ts in zip(fns, times):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - start)

    with torch.no_grad(), pinned(pin and device == "cpu"):
        warm: list[list[float]] = [[] for _ in fns]
        for _ in range(10 * warmup):
            round_(warm)
            if len(warm[0]) >= 2 * warmup and all(
                    min(ts[-warmup:]) >= 0.98 * min(ts[:-warmup]) for ts in warm):
                break
        times: list[list[float]] = [[] for _ in fns]
        while len(times[0]) < max_repeats:
            round_(times)
            n = len(times[0])
            if n >= max(repeats, 4) and n % 2 == 0 and all(
                    _timing(ts, quantile).noise <= tolerance for ts in times):
                break
    return [_timing(ts, quantile) for ts in times]
