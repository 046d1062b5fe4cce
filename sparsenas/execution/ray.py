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

Without `execution.address` a local Ray is started (its node advertised on a loopback address, no
dashboard) and shut down on `close()`; with `--address HOST:PORT` the driver joins that cluster and
leaves it running. If Ray is already initialised in this process (e.g. by a test), it is used as is.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from ..errors import ConfigError
from ..evaluation import TrialTask, run_trial
from ..journal import TrialResult
from ..objective import Objective
from ..space import EvalContext, SearchSpace
from .base import Executor

log = logging.getLogger(__name__)

# A local Ray swaps 127.0.0.1 for the host's address; any other 127.x address is kept (Linux routes
# all of 127.0.0.0/8 to loopback), so a local cluster stays on loopback.
LOCAL_NODE_IP = "127.0.0.2" if sys.platform.startswith("linux") else None


def connect(execution: dict) -> bool:
    """Initialise Ray for this driver and check that a trial fits on some node; True when this call started
    a local Ray (the caller shuts it down). A ConfigError leaves no Ray started by this call."""
    owns = _init(execution)
    try:
        check_resources(execution)
    except ConfigError:
        if owns:
            ray.shutdown()
        raise
    return owns


def _init(execution: dict) -> bool:
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    address = execution.get("address")
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ConfigError(f"cannot join the Ray cluster at {address}: {str(e).splitlines()[0]}") from None
        return False
    need = math.ceil(execution["workers"] * execution["cpus_per_trial"])
    node_ip = {"_node_ip_address": LOCAL_NODE_IP} if LOCAL_NODE_IP else {}
    ray.init(num_cpus=max(os.cpu_count() or 1, need), include_dashboard=False, **node_ip, **quiet)
    return True


def _check_reachable(address: str) -> None:
    """ConfigError when nothing listens at HOST:PORT (ray.init would retry for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "ray://..." and the like: left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as e:
        raise ConfigError(f"no Ray cluster at {address} ({e.strerror or e}); start one with 'ray start --head'") \
            from None


def check_resources(execution: dict) -> None:
    """ConfigError when no live node could ever hold one trial's CPUs and GPUs."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    for key, res in (("cpus_per_trial", "CPU"), ("gpus_per_trial", "GPU")):
        want = execution[key]
        have = max((n.get(res, 0.0) for n in nodes), default=0.0)
        if want > have:
            raise ConfigError(f"execution.{key}={want:g} but the largest Ray node has {have:g} {res}")


def worker_id() -> str:
    """This Ray worker as `host/node-id:pid` (node id shortened to 12 hex digits)."""
    node = ray.get_runtime_context().get_node_id()
    return f"{socket.gethostname()}/{node[:12]}:{os.getpid()}"


def node_of(worker: str) -> str:
    """The node id part of a `worker_id()` string."""
    return worker.rsplit(":", 1)[0].rsplit("/", 1)[-1]


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

    def run(self, task: TrialTask) -> TrialResult:
        return run_trial(self.space, self.spec.objective, self.spec.context, task, worker=self.name)


@dataclass
class _Attempt:
    task: TrialTask
    number: int  # 0 for the first attempt
    actor: Any
    worker: str
    started: float
    deadline: float | None


class RayExecutor(Executor):
    def __init__(self, space, objective, context, execution):
        super().__init__(space, objective, context, execution)
        self.workers = execution["workers"]
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
        self._owns_ray = connect(execution)
        self._actor_cls = ray.remote(TrialWorker).options(
            num_cpus=execution["cpus_per_trial"], num_gpus=execution["gpus_per_trial"],
            max_restarts=0, max_task_retries=0)
        self._spec = TrialSpec.of(space, objective, context)
        self._progress_at = time.monotonic()
        for _ in range(self.workers):
            self._spawn()

    @property
    def capacity(self) -> int:
        return self.workers

    def submit(self, task: TrialTask) -> None:
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
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False

    # -- internals --------------------------------------------------------------------------------
    def _spawn(self) -> None:
        actor = self._actor_cls.remote(self._spec)
        self._starting[actor.ready.remote()] = actor

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            (task, number), (actor, worker) = self._queue.popleft(), self._idle.pop()
            now = time.monotonic()
            deadline = now + self.kill_timeout_s if self.kill_timeout_s else None
            self._running[actor.run.remote(task)] = _Attempt(task, number, actor, worker, now, deadline)

    def _timeout(self) -> float | None:
        deadlines = [a.deadline for a in self._running.values() if a.deadline is not None]
        if not self._running and not self._idle:
            deadlines.append(self._progress_at + self.start_timeout_s)
        return None if not deadlines else max(0.0, min(deadlines) - time.monotonic())

    def _started(self, ref) -> None:
        actor = self._starting.pop(ref)
        try:
            worker = ray.get(ref)
        except RayError as e:
            self._start_failures += 1
            if self._start_failures > max(3, self.workers):
                raise RuntimeError(f"Ray workers keep failing to start; last error: {_first_line(e)}") from None
            log.warning("a Ray worker failed to start (%s); starting another", _first_line(e))
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
            self._retry_or_fail(attempt, f"worker {attempt.worker} died: {_first_line(e)}", results)
            return
        except RayError as e:  # e.g. the task could not be (un)pickled; the actor is fine
            results.append(self._failed(attempt, f"{type(e).__name__}: {_first_line(e)}"))
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
            self._queue.appendleft((attempt.task, attempt.number + 1))
        else:
            results.append(self._failed(attempt, f"{why} (attempt {attempt.number + 1} of {self.retries + 1})"))

    def _failed(self, attempt: _Attempt, error: str) -> TrialResult:
        task = attempt.task
        return TrialResult(task.trial, task.arch, self.space.label(task.arch), "failed", seed=task.seed,
                           duration_s=time.monotonic() - attempt.started, worker=attempt.worker, error=error)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


__all__ = ["RayExecutor", "TrialSpec", "TrialWorker", "connect", "check_resources", "worker_id", "node_of"]
