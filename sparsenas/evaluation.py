"""Runs one trial: cheap metrics → constraints (infeasible without training) → evaluate → TrialResult.
Any error becomes a `failed` result, so a bad trial never stops the search.

A one-shot strategy proposes a `SupernetJob` instead of an arch: its trial first runs the space's supernet
search (epoch after epoch, each reported to the loop with a checkpoint, resumable from one), then evaluates
the derived arch like any other — on whichever executor runs the trial, with the trial's threads."""
from __future__ import annotations

import inspect
import io
import math
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch

from .errors import InfeasibleArch
from .journal import TrialResult
from .objective import Objective
from .space import Arch, EvalContext, SearchSpace
from .spaces.trained import TrainedSpace


@dataclass(frozen=True)
class SupernetJob:
    """A one-shot strategy's proposal: train the space's supernet with `options` (seeded `seed`), derive an arch."""

    options: dict[str, Any]
    seed: int


@dataclass(frozen=True)
class TrialTask:
    trial: int
    arch: Arch  # empty for a supernet job until it is derived
    seed: int
    supernet: SupernetJob | None = None
    resume: bytes | None = None  # a supernet job's last EpochReport.checkpoint, to continue from


@dataclass(frozen=True)
class EpochReport:
    """One finished epoch of a running supernet job, sent to the loop while the trial runs."""

    trial: int
    epoch: int  # 0-based
    epochs: int
    scalars: dict[str, float]
    text: dict[str, str]
    checkpoint: bytes  # torch.save({"trial", "epoch": epochs done, "search": state}); loads with weights_only=True


Progress = Callable[[EpochReport], None]
OnReport = Callable[[int, int, dict], bool]
"""`on_report(trial, epochs, metrics) -> stop`: a trained trial finished epoch `epochs` (1-based) with `metrics`
(its cheap metrics merged in); True stops it after that epoch (see `run_trial`)."""
OnCurve = Callable[[int, int, dict], None]
"""`on_curve(trial, epochs, metrics)`: the same report, where another system decides the stop (tune)."""

EPOCH_METRICS = frozenset({"val_acc", "train_loss"})  # what sparsenas.training reports after every epoch
FIDELITY_METRICS = ("epochs", "stopped_early")  # what `run_trial` adds to a trial that reported its epochs


def epoch_metrics(space: SearchSpace, context: EvalContext) -> frozenset[str] | None:
    """The metrics a trial of `space` reports after every epoch, cheap ones included: none when its `evaluate`
    takes no `on_epoch` (or it is a table); for a `TrainedSpace`, those of the shared training loop; None
    (unknown) for other spaces."""
    if "on_epoch" not in inspect.signature(space.evaluate).parameters or getattr(space, "tabular", False):
        return frozenset()
    if not isinstance(space, TrainedSpace):
        return None
    cheap = set(space.cheap_metrics(space.sample(np.random.default_rng(0)), context))
    latency = context.latency.metrics() if context.latency is not None else frozenset()
    return frozenset(EPOCH_METRICS | cheap | latency)


class StoppedEarly(Exception):
    """Raised from a trial's per-epoch hook to end its training: the scheduler stopped it."""

    def __init__(self, epochs: int, metrics: dict[str, float]):
        super().__init__(f"stopped after epoch {epochs}")
        self.epochs, self.metrics = epochs, metrics


def task_for(proposal: Arch | SupernetJob, trial: int, seed: int) -> TrialTask:
    """The task of what a strategy's `ask()` proposed: an arch, or a supernet job (whose arch comes later)."""
    if isinstance(proposal, SupernetJob):
        return TrialTask(trial, Arch({}), seed, supernet=proposal)
    return TrialTask(trial, proposal, seed)


def trial_seed(run_seed: int, trial: int) -> int:
    """Independent, reproducible seed of trial `trial` in a run seeded `run_seed`."""
    return int(np.random.SeedSequence([run_seed, trial]).generate_state(1)[0] & 0x7FFFFFFF)


def derive(space: SearchSpace, context: EvalContext, task: TrialTask, progress: Progress | None) -> Arch:
    """Run (or continue, from `task.resume`) the supernet search of `task.supernet` and derive its arch."""
    search = space.supernet_search(context, task.supernet.seed, task.supernet.options)
    start = 0
    if task.resume is not None:
        saved = torch.load(io.BytesIO(task.resume), weights_only=True)
        search.load_state_dict(saved["search"])
        start = saved["epoch"]
    for epoch in range(start, search.epochs):
        scalars, text = search.run_epoch(epoch)
        if progress is not None:
            buf = io.BytesIO()
            torch.save({"trial": task.trial, "epoch": epoch + 1, "search": search.state_dict()}, buf)
            progress(EpochReport(task.trial, epoch, search.epochs, scalars, text, buf.getvalue()))
    return search.derive()


def task_label(space: SearchSpace, task: TrialTask) -> str:
    return "supernet search" if task.supernet is not None else space.label(task.arch)


def run_trial(space: SearchSpace, objective: Objective, context: EvalContext, task: TrialTask,
              worker: str = "local", on_epoch: Callable[[int, dict], Any] | None = None,
              progress: Progress | None = None) -> TrialResult:
    """`on_epoch(epoch, metrics)` (0-based epoch), when given, is passed to spaces whose `evaluate` reports per
    epoch (trained spaces), with the cheap and latency metrics merged in; when it returns True before the last
    epoch, training ends there and the trial is `ok` with that epoch's metrics plus `epochs` (epochs trained) and
    `stopped_early=1`. A trial that reported its epochs and was not stopped gets `epochs` too. `progress`
    receives a supernet job's epochs."""
    start = time.perf_counter()
    torch.set_num_threads(context.threads)
    if task.supernet is not None:
        try:
            task = replace(task, arch=derive(space, context, task, progress), supernet=None, resume=None)
        except Exception as e:  # noqa: BLE001 — as below
            return TrialResult(task.trial, task.arch, task_label(space, task), "failed", seed=task.seed, worker=worker,
                               error=f"{type(e).__name__}: {e}", duration_s=time.perf_counter() - start)
    result = TrialResult(task.trial, task.arch, space.label(task.arch), "ok", seed=task.seed, worker=worker)
    try:
        result.metrics = space.cheap_metrics(task.arch, context)
        if context.latency is not None:
            result.metrics.update(context.latency.cheap_metrics(task.arch))
        broken = objective.violations(result.metrics)
        if broken:
            result.status, result.error = "infeasible", "; ".join(broken)
        else:
            _train(space, context, task, result, on_epoch)
            missing = [n for n in objective.names if not math.isfinite(result.metrics.get(n, math.nan))]
            if missing:
                result.status, result.error = "failed", f"objective metric {missing[0]} missing or not finite"
            else:
                broken = objective.violations(result.metrics)
                if broken:
                    result.status, result.error = "infeasible", "; ".join(broken)
    except InfeasibleArch as e:
        result.status, result.error = "infeasible", str(e)
    except Exception as e:  # noqa: BLE001 — a trial's failure is data, not a crash
        result.status, result.error = "failed", f"{type(e).__name__}: {e}"
    result.duration_s = time.perf_counter() - start
    return result


def _train(space: SearchSpace, context: EvalContext, task: TrialTask, result: TrialResult, on_epoch) -> None:
    """`space.evaluate` with the per-epoch hook of `run_trial`; its metrics go into `result.metrics`."""
    hook, cheap, reported = {}, dict(result.metrics), [0]
    if on_epoch is not None and "on_epoch" in inspect.signature(space.evaluate).parameters:
        def report(epoch: int, metrics: dict) -> None:
            merged = {**cheap, **metrics}
            if context.latency is not None:
                merged.update(context.latency.derived_metrics(merged))
            reported[0] = epoch + 1
            if on_epoch(epoch, merged) and epoch + 1 < context.train["epochs"]:
                raise StoppedEarly(epoch + 1, merged)
        hook = {"on_epoch": report}
    try:
        result.metrics.update(space.evaluate(task.arch, task.seed, context, **hook))
    except StoppedEarly as stop:
        result.metrics = {**stop.metrics, "epochs": float(stop.epochs), "stopped_early": 1.0}
        return
    if context.latency is not None:
        result.metrics.update(context.latency.derived_metrics(result.metrics))
    if reported[0]:
        result.metrics["epochs"] = float(reported[0])
