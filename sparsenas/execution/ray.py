"""`--executor ray`: trials on a pool of warm Ray actors; ask/tell and the journal stay on the driver.

Each actor (one per `execution.workers`, each holding `cpus_per_trial` CPUs and `gpus_per_trial` GPUs,
fractions allowed) rebuilds the space from its class and options once, calls `space.prepare` (so data are
loaded once per worker, not per trial) and then runs trials one at a time. A trial goes only to an actor
that has finished starting, and `wait()` returns as soon as any trial is done, so a slow trial never
blocks the others.

Faults: when a worker process dies mid-trial (killed, out of memory, node lost) or runs past
`execution.kill_timeout_s` (it is then killed), the actor is replaced and the trial is retried on another
worker up to `execution.retries` times, then recorded `failed` with the reason. If no worker starts
within `execution.start_timeout_s` while nothing runs, the search stops with an error instead of hanging.

With a scheduler (`on_report` set by the loop), each epoch of a trial goes from its actor to the driver on a Ray
queue, and the actor waits for the driver's decision (a small async `StopBoard` actor) before its next epoch, so
a trial stops after exactly the epoch the scheduler says, as on the local executor.

The cluster (a private local Ray, stopped on `close()`, or one joined at `--address`) and the number of
workers come from `ray_cluster.py`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError
from ray.util.queue import Queue

from ..evaluation import TrialTask, run_trial, task_label
from ..journal import TrialResult
from ..objective import Objective
from ..space import EvalContext, SearchSpace
from .base import Executor
from .ray_cluster import (
    LocalRay,
    check_resources,
    connect,
    first_line,
    node_of,
    worker_id,
    workers,
)

log = logging.getLogger(__name__)

REPORT_POLL_S = 0.5  # how often a running supernet job's epoch reports are collected
DECISION_POLL_S = 0.05  # how often a scheduled trial's epoch reports are collected (its actor waits meanwhile)


@dataclass(frozen=True)
class EpochMetrics:
    """One finished epoch of a scheduled trial, from its actor to the driver."""

    trial: int
    attempt: int
    epochs: int  # done so far
    metrics: dict[str, float]


class StopBoard:
    """The driver's stop decisions, awaited by the actors: (trial, attempt, epochs) -> stop."""

    def __init__(self):
        self.events: dict[tuple, asyncio.Event] = {}
        self.stops: dict[tuple, bool] = {}

    async def decide(self, key: tuple, stop: bool) -> None:
        self.stops[key] = stop
        self.events.setdefault(key, asyncio.Event()).set()

    async def decision(self, key: tuple) -> bool:
        await self.events.setdefault(key, asyncio.Event()).wait()
        del self.events[key]
        return self.stops.pop(key)


@dataclass(frozen=True)
class TrialSpec:
    """What a worker needs to run trials, small enough to ship: the space's class and options (not the
    prepared space, which may hold data), the objective and the evaluation context."""

    space_cls: type
    space_options: dict[str, Any]
    objective: Objective
    context: EvalContext

    @classmethod
    def of(cls, space: SearchSpace, objective: Objective, context: EvalContext) -> "TrialSpec":
        return cls(type(space), dict(space.options), objective, context)

    def build(self) -> SearchSpace:
        space = self.space_cls(**self.space_options)
        space.prepare(self.context)
        return space


class TrialWorker:
    """The actor: builds and prepares the space once, then runs trials."""

    def __init__(self, spec: TrialSpec):
        self.spec = spec
        self.space = spec.build()
        self.name = worker_id()

    def ready(self) -> str:
        return self.name

    def run(self, task: TrialTask, reports: Any = None, board: Any = None, attempt: int = 0) -> TrialResult:
        """`reports`: a `ray.util.queue.Queue` that a supernet job's epochs are put on as they finish, and, with a
        `board` (a StopBoard actor), a trained trial's `EpochMetrics`, each followed by waiting for the decision."""
        progress = None if reports is None or task.supernet is None else reports.put
        on_epoch = None
        if board is not None:
            def on_epoch(epoch: int, metrics: dict) -> bool:
                reports.put(EpochMetrics(task.trial, attempt, epoch + 1, metrics))
                return ray.get(board.decision.remote((task.trial, attempt, epoch + 1)))
        return run_trial(self.space, self.spec.objective, self.spec.context, task, worker=self.name,
                         on_epoch=on_epoch, progress=progress)


@dataclass
class _Attempt:
    task: TrialTask
    number: int  # 0 for the first attempt
    actor: Any
    worker: str
    started: float
    deadline: float | None


class RayExecutor(Executor):
    def __init__(self, space, objective, context, execution, scheduler=None):
        super().__init__(space, objective, context, execution, scheduler)
        self.retries = execution["retries"]
        self.kill_timeout_s = execution["kill_timeout_s"]
        if self.kill_timeout_s is None and context.time_limit_s is not None:
            self.kill_timeout_s = 2 * context.time_limit_s + 60  # the cooperative limit failed to stop it
        self.start_timeout_s = execution["start_timeout_s"]
        self._starting: dict[Any, Any] = {}  # ready() ref -> actor
        self._idle: list[tuple[Any, str]] = []  # (actor, worker name)
        self._running: dict[Any, _Attempt] = {}  # run() ref -> attempt
        self._queue: deque[tuple[TrialTask, int]] = deque()  # (task, attempt number)
        self._start_failures = 0
        self._local = connect(execution)
        self.workers = workers(execution)
        self._actor_cls = ray.remote(TrialWorker).options(
            num_cpus=execution["cpus_per_trial"], num_gpus=execution["gpus_per_trial"],
            max_restarts=0, max_task_retries=0)
        self._spec = TrialSpec.of(space, objective, context)
        self._progress_at = time.monotonic()
        self._reports: Any = None  # a ray.util.queue.Queue, made for the first supernet job or scheduled trial
        self._board: Any = None  # a StopBoard actor, made for the first scheduled trial
        self._checkpoints: dict[int, bytes] = {}  # trial -> last epoch checkpoint: a retry continues from it
        for _ in range(self.workers):
            self._spawn()

    @property
    def capacity(self) -> int:
        return self.workers

    def submit(self, task: TrialTask) -> None:
        if (task.supernet is not None or self.on_report is not None) and self._reports is None:
            self._reports = Queue()
        if self.on_report is not None and self._board is None:
            self._board = ray.remote(StopBoard).options(num_cpus=0).remote()
        self._queue.append((task, 0))
        self._dispatch()

    def running(self) -> int:
        return len(self._queue) + len(self._running)

    def wait(self) -> list[TrialResult]:
        results: list[TrialResult] = []
        while not results:
            self._dispatch()
            refs = [*self._running, *self._starting]
            if not refs:
                raise RuntimeError("RayExecutor.wait() called with no trial submitted")
            ready, _ = ray.wait(refs, num_returns=1, timeout=self._timeout())
            if ready:
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            self._drain_reports()
            for ref in ready:
                if ref in self._starting:
                    self._started(ref)
                else:
                    self._finished(ref, results)
            self._expire(results)
        self._dispatch()
        return results

    def close(self) -> None:
        actors = [*self._starting.values(), *(a for a, _ in self._idle), *(a.actor for a in self._running.values())]
        self._starting, self._idle, self._running = {}, [], {}
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if self._reports is not None:
            self._reports.shutdown(force=True)
            self._reports = None
        if self._board is not None:
            ray.kill(self._board, no_restart=True)
            self._board = None
        if self._local is not None:
            self._local.stop()
            self._local = None

    # -- internals --------------------------------------------------------------------------------
    def _spawn(self) -> None:
        actor = self._actor_cls.remote(self._spec)
        self._starting[actor.ready.remote()] = actor

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            (task, number), (actor, worker) = self._queue.popleft(), self._idle.pop()
            now = time.monotonic()
            deadline = now + self.kill_timeout_s if self.kill_timeout_s else None
            scheduled = self.on_report is not None  # a supernet job's derived arch is scheduled as it trains
            reports = self._reports if task.supernet is not None or scheduled else None
            ref = actor.run.remote(task, reports, self._board if scheduled else None, number)
            self._running[ref] = _Attempt(task, number, actor, worker, now, deadline)

    def _timeout(self) -> float | None:
        deadlines = [a.deadline for a in self._running.values() if a.deadline is not None]
        if not self._running and not self._idle:
            deadlines.append(self._progress_at + self.start_timeout_s)
        if self._running and self.on_report is not None:
            deadlines.append(time.monotonic() + DECISION_POLL_S)  # a scheduled trial waits for its decision
        elif any(a.task.supernet is not None for a in self._running.values()):
            deadlines.append(time.monotonic() + REPORT_POLL_S)  # show a running supernet job's epochs
        return None if not deadlines else max(0.0, min(deadlines) - time.monotonic())

    def _drain_reports(self) -> None:
        if self._reports is None or self._reports.empty():
            return
        for report in self._reports.get_nowait_batch(self._reports.qsize()):
            if isinstance(report, EpochMetrics):
                stop = bool(self.on_report(report.trial, report.epochs, report.metrics))
                self._board.decide.remote((report.trial, report.attempt, report.epochs), stop)
                continue
            self._checkpoints[report.trial] = report.checkpoint
            if self.progress is not None:
                self.progress(report)

    def _started(self, ref) -> None:
        actor = self._starting.pop(ref)
        try:
            worker = ray.get(ref)
        except RayError as e:
            self._start_failures += 1
            if self._start_failures > max(3, self.workers):
                raise RuntimeError(f"Ray workers keep failing to start; last error: {first_line(e)}") from None
            log.warning("a Ray worker failed to start (%s); starting another", first_line(e))
            self._spawn()
            return
        self._start_failures = 0
        self._progress_at = time.monotonic()
        self._idle.append((actor, worker))

    def _finished(self, ref, results: list[TrialResult]) -> None:
        attempt = self._running.pop(ref)
        self._progress_at = time.monotonic()
        try:
            results.append(ray.get(ref))
        except RayActorError as e:
            self._spawn()  # the actor is gone: replace it
            self._retry_or_fail(attempt, f"worker {attempt.worker} died: {first_line(e)}", results)
            return
        except RayError as e:  # e.g. the task could not be (un)pickled; the actor is fine
            results.append(self._failed(attempt, f"{type(e).__name__}: {first_line(e)}"))
        self._idle.append((attempt.actor, attempt.worker))

    def _expire(self, results: list[TrialResult]) -> None:
        now = time.monotonic()
        for ref, attempt in list(self._running.items()):
            if attempt.deadline is not None and now >= attempt.deadline:
                del self._running[ref]
                ray.kill(attempt.actor, no_restart=True)
                self._spawn()
                self._retry_or_fail(attempt, f"worker {attempt.worker} killed after "
                                             f"execution.kill_timeout_s={self.kill_timeout_s:g} s", results)
        if not self._running and not self._idle and now - self._progress_at >= self.start_timeout_s:
            raise RuntimeError(f"no Ray worker started within execution.start_timeout_s={self.start_timeout_s:g} s "
                               f"(each needs {self.execution['cpus_per_trial']:g} CPU and "
                               f"{self.execution['gpus_per_trial']:g} GPU; cluster: {ray.available_resources()})")

    def _retry_or_fail(self, attempt: _Attempt, why: str, results: list[TrialResult]) -> None:
        if attempt.number < self.retries:
            log.warning("trial %d: %s; retrying on another worker", attempt.task.trial, why)
            task = attempt.task
            if task.supernet is not None and task.trial in self._checkpoints:  # continue from its last epoch
                task = replace(task, resume=self._checkpoints[task.trial])
            self._queue.appendleft((task, attempt.number + 1))
        else:
            results.append(self._failed(attempt, f"{why} (attempt {attempt.number + 1} of {self.retries + 1})"))

    def _failed(self, attempt: _Attempt, error: str) -> TrialResult:
        task = attempt.task
        return TrialResult(task.trial, task.arch, task_label(self.space, task), "failed", seed=task.seed,
                           duration_s=time.monotonic() - attempt.started, worker=attempt.worker, error=error)


__all__ = ["RayExecutor", "EpochMetrics", "StopBoard", "TrialSpec", "TrialWorker", "LocalRay", "connect",
           "check_resources", "workers", "worker_id", "node_of"]
