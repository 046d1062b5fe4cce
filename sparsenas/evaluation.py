"""Runs one trial: cheap metrics → constraints (infeasible without training) → evaluate → TrialResult.
Any error becomes a `failed` result, so a bad trial never stops the search."""
from __future__ import annotations

import inspect
import math
import os
import socket
import time
from dataclasses import dataclass

import numpy as np
import torch

from .journal import TrialResult
from .objective import Objective
from .space import Arch, EvalContext, SearchSpace


@dataclass(frozen=True)
class TrialTask:
    trial: int
    arch: Arch
    seed: int


def trial_seed(run_seed: int, trial: int) -> int:
    """Independent, reproducible seed of trial `trial` in a run seeded `run_seed`."""
    return int(np.random.SeedSequence([run_seed, trial]).generate_state(1)[0] & 0x7FFFFFFF)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_trial(space: SearchSpace, objective: Objective, context: EvalContext, task: TrialTask,
              worker: str = "local", on_epoch=None) -> TrialResult:
    """`on_epoch(epoch, metrics)`, when given, is passed to spaces whose `evaluate` reports per epoch (trained
    spaces), with the cheap metrics merged in (used by Ray Tune's schedulers)."""
    start = time.perf_counter()
    torch.set_num_threads(context.threads)
    result = TrialResult(task.trial, task.arch, space.label(task.arch), "ok", seed=task.seed, worker=worker)
    try:
        result.metrics = space.cheap_metrics(task.arch, context)
        if context.latency is not None:
            result.metrics.update(context.latency.cheap_metrics(task.arch))
        broken = objective.violations(result.metrics)
        if broken:
            result.status, result.error = "infeasible", "; ".join(broken)
        else:
            hook = {}
            if on_epoch is not None and "on_epoch" in inspect.signature(space.evaluate).parameters:
                cheap = dict(result.metrics)
                hook = {"on_epoch": lambda epoch, metrics: on_epoch(epoch, {**cheap, **metrics})}
            result.metrics.update(space.evaluate(task.arch, task.seed, context, **hook))
            if context.latency is not None:
                result.metrics.update(context.latency.derived_metrics(result.metrics))
            missing = [n for n in objective.names if not math.isfinite(result.metrics.get(n, math.nan))]
            if missing:
                result.status, result.error = "failed", f"objective metric {missing[0]} missing or not finite"
            else:
                broken = objective.violations(result.metrics)
                if broken:
                    result.status, result.error = "infeasible", "; ".join(broken)
    except Exception as e:  # noqa: BLE001 — a trial's failure is data, not a crash
        result.status, result.error = "failed", f"{type(e).__name__}: {e}"
    result.duration_s = time.perf_counter() - start
    return result
