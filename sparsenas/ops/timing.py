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
  available), so that it is not migrated between cores (cold caches) in the middle of a measurement;
- the allocator is held steady (`steady_allocator`): glibc's malloc otherwise returns freed activation memory
  to the OS and maps it anew, so a forward pass can page-fault thousands of times, as often or not depending on
  how earlier allocations happened to lie. On this project's VM, 5 builds each of 8 batch-64 dass networks
  (one thread) had a build 1.4-1.6× slower than the others in every run (116,982 minor faults in its timing,
  ~5,000 in the others'); two builds agreed within 10% for 70-94% of pairs in 5 runs. Held steady: no such
  build, faults near 0, 84-100% of pairs within 10% in 7 runs;
- with `realtime=True` and one intra-op thread (torch then computes in the calling thread), that thread runs at
  the lowest real-time priority (Linux SCHED_FIFO) while timing, where the OS allows it (root or
  CAP_SYS_NICE; elsewhere nothing changes and `Timing.realtime` is False): other processes' threads are then
  not scheduled on its core until it yields (the kernel keeps 5% of each second for them by default).

What the low quantile cannot remove: preemption that hits every call, and a slowdown of every call — busy
neighbours sharing the core's caches, memory bandwidth or clock. On this project's 2-core VM, two processes
running 2-thread matrix products (load 4.8) made the 10% quantile of a small 6-layer depthwise network
0.79 ms and of a 3×3 conv (batch 8, 64 channels, 28×28) 23.4 ms; at real-time priority, beside the same
processes, they were 0.43 and 3.16 ms, the values of a quieter moment (0.44 and 3.20 ms). Without real-time
priority an earlier profile beside two busy loops had dass kernels at 1.29× their idle value.

Each callable gets a `Timing`: `ms` (the estimate), `median`, `spread` = median/ms − 1 (how much the machine
interfered: ~0 when quiet) and `noise` = |even − odd| / ms, the repeatability of `ms` itself (two independent
halves of the measurement disagree by this much; the noise floor of a profile is built from it).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
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
    steady_allocator()
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


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
STEADY_MMAP_BYTES = 32 << 20  # glibc's own ceiling for its dynamic mmap threshold on 64-bit


@functools.cache
def steady_allocator() -> bool:
    """Hold glibc's malloc in the state its dynamic thresholds reach in a long-running process: blocks up to
    32 MiB come from the heap (not fresh, page-faulting mmaps) and up to 64 MiB free at its top is kept rather
    than returned to the OS. Process-wide, so done once per process; True where it applied (glibc), False
    elsewhere (musl, macOS, Windows: their allocators are left as they are)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, STEADY_MMAP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                          2 * STEADY_MMAP_BYTES))


@dataclass(frozen=True)
class Timing:
    """One callable's robust timing (see the module docstring): estimate, median, spread, noise, timed calls."""

    ms: float
    median: float
    spread: float
    noise: float
    repeats: int
    realtime: bool = False  # timed at real-time priority (`prioritised`)


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


@contextlib.contextmanager
def prioritised(enabled: bool = True):
    """Run the calling thread at the lowest real-time priority (Linux SCHED_FIFO) inside the block, when
    `enabled`, torch computes in this thread alone (1 intra-op thread) and the OS permits it; yields whether it
    did. The thread's policy is restored afterwards."""
    fifo = getattr(os, "SCHED_FIFO", None)
    granted = False
    if enabled and fifo is not None and torch.get_num_threads() == 1:
        before = os.sched_getscheduler(0), os.sched_getparam(0)
        try:
            os.sched_setscheduler(0, fifo, os.sched_param(os.sched_get_priority_min(fifo)))
            granted = True
        except OSError:  # not permitted (no root / CAP_SYS_NICE) or no real-time budget
            pass
    try:
        yield granted
    finally:
        if granted:
            os.sched_setscheduler(0, *before)


def _estimate(ts: Sequence[float], quantile: float) -> float:
    return float(np.quantile(ts, quantile))


def _timing(ts: list[float], quantile: float, realtime: bool = False) -> Timing:
    ms = _estimate(ts, quantile) * 1e3
    halves = [_estimate(ts[k::2], quantile) * 1e3 for k in (0, 1)]
    median = statistics.median(ts) * 1e3
    return Timing(ms, median, median / ms - 1, abs(halves[0] - halves[1]) / ms, len(ts), realtime)


def robust_ms(fns: Sequence[Callable[[], Any]], device: str = "cpu", warmup: int = 3, repeats: int = 15,
              max_repeats: int | None = None, quantile: float = 0.1, tolerance: float = 0.02,
              pin: bool = True, realtime: bool = True) -> list[Timing]:
    """A `Timing` of each callable (see the module docstring): interleaved rounds, warm-up until stable, at
    least `repeats` timed rounds and more (up to `max_repeats`, default 4·repeats) while noisier than
    `tolerance`; CUDA calls are synchronised."""
    if not fns:
        return []
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    max_repeats = max(repeats, max_repeats or 4 * repeats)
    steady_allocator()

    def round_(times):
        for fn, ts in zip(fns, times):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - start)

    with torch.no_grad(), pinned(pin and device == "cpu"), prioritised(realtime and device == "cpu") as rt:
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
    return [_timing(ts, quantile, rt) for ts in times]


def pass_order(items: Sequence, p: int) -> Sequence:
    """`items` in the order of timing pass `p` (0-based): in order, reversed, in order, ... — a slow spell hits the
    end of one pass and the start of the next, so no item is timed late in every pass."""
    return items if p % 2 == 0 else items[::-1]
