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

Without `execution.address` a private local Ray is started (see `LocalRay`: loopback only, token auth, its
own temp dir) and shut down on `close()`; with `--address HOST:PORT` the driver joins that cluster, after
checking within `execution.start_timeout_s` that a Ray GCS answers there, and leaves it running. If Ray is
already initialised in this process (e.g. by a test), it is used as is. `execution.workers` unset (None):
as many workers as trials fit on the cluster's live nodes at once.
"""
from __future__ import annotations

import logging
import math
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import grpc
import ray
from ray._private import ray_constants
from ray._private.grpc_utils import init_grpc_channel
from ray._raylet import AuthenticationTokenLoader, Config
from ray.core.generated.gcs_service_pb2 import GetClusterIdRequest
from ray.core.generated.gcs_service_pb2_grpc import NodeInfoGcsServiceStub
from ray.exceptions import RayActorError, RayError
from ray.util.queue import Queue

from ..errors import ConfigError
from ..evaluation import TrialTask, run_trial, task_label
from ..journal import TrialResult
from ..objective import Objective
from ..space import EvalContext, SearchSpace
from .base import Executor

log = logging.getLogger(__name__)

QUIET = {"logging_level": logging.WARNING, "log_to_driver": True}
REPORT_POLL_S = 0.5  # how often a running supernet job's epoch reports are collected


def connect(execution: dict) -> "LocalRay | None":
    """Initialise Ray for this driver and check that a trial fits on some node; the `LocalRay` this call
    started (the caller stops it), else None. Every start failure is a ConfigError (one line) that leaves no
    Ray started by this call."""
    if ray.is_initialized():
        local = None
    elif execution.get("address"):
        local = _join(execution["address"], execution.get("start_timeout_s", 60.0))
    else:
        need = math.ceil((execution.get("workers") or 0) * execution["cpus_per_trial"])
        local = LocalRay(max(os.cpu_count() or 1, need))
    try:
        check_resources(execution)
    except ConfigError:
        if local is not None:
            local.stop()
        raise
    return local


class LocalRay:
    """A private Ray on this machine for one search.

    Started with `address="local"` (RAY_ADDRESS and the `ray_current_cluster` file are ignored) in a temp
    dir of its own inside a 0700 one (Ray makes its temp dir world-writable; removed by `stop`). Its node address is 127.0.0.1, which Ray normally swaps
    for the host's address; with that swap off (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, the macOS/Windows
    default) every Ray gRPC server (GCS, raylet and object manager, this driver, the workers) and the
    runtime-env agent listen on loopback only. No dashboard. Token auth is on explicitly
    (RAY_AUTH_MODE=token) with a fresh token in a 0600 file of the temp dir (RAY_AUTH_TOKEN_PATH), never
    `~/.ray/auth_token`. These variables are set in this process for the life of the local Ray (the Ray
    processes inherit them) and restored by `stop`."""

    def __init__(self, num_cpus: int):
        self.dir = tempfile.mkdtemp(prefix="sparsenas-ray-")
        token = os.path.join(self.dir, "auth_token")
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token, "RAY_AUTH_TOKEN": None,
               "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        self._saved_env = {key: os.environ.get(key) for key in env}
        self._saved_cluster_flag = ray_constants.ENABLE_RAY_CLUSTER
        _set_env(env)
        ray_constants.ENABLE_RAY_CLUSTER = False  # read at import: the driver keeps 127.0.0.1 too
        _reload_auth()
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address=LOOPBACK,
                     _temp_dir=os.path.join(self.dir, "ray"), **QUIET)
        except Exception as e:  # noqa: BLE001 — any start failure is one line
            self.stop()
            raise ConfigError(f"cannot start a local Ray: {_first_line(e)}") from None

    def stop(self) -> None:
        if ray.is_initialized():
            ray.shutdown()
        _set_env(self._saved_env)
        ray_constants.ENABLE_RAY_CLUSTER = self._saved_cluster_flag
        _reload_auth()
        shutil.rmtree(self.dir, ignore_errors=True)


LOOPBACK = "127.0.0.1"


def _set_env(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _reload_auth() -> None:
    """Make this process's Ray core read RAY_AUTH_MODE and the token again (both are cached)."""
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _join(address: str, timeout: float) -> None:
    """Connect this driver to the cluster at `address`; ConfigError unless a Ray GCS answers within
    `timeout` seconds (ray.init alone retries for minutes against a service that is not Ray)."""
    _probe(address, timeout)
    try:
        ray.init(address=address, **QUIET)
    except Exception as e:  # noqa: BLE001 — e.g. AuthenticationError, ConnectionError, TimeoutError
        if ray.is_initialized():
            ray.shutdown()
        raise ConfigError(f"cannot join the Ray cluster at {address}: {_first_line(e)}") from None


def _probe(address: str, timeout: float) -> None:
    """ConfigError unless a Ray GCS at HOST:PORT answers GetClusterId within `timeout` s with this
    process's auth settings; other address forms ("auto", "ray://...") are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"no Ray cluster at {address} ({e.strerror or e}); start one with 'ray start --head'") \
            from None
    token_auth = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    if token_auth and not AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        raise ConfigError(f"RAY_AUTH_MODE=token but no Ray auth token here for {address}: copy the cluster's "
                          "token to ~/.ray/auth_token (or set RAY_AUTH_TOKEN_PATH)")
    channel = init_grpc_channel(address)
    try:
        NodeInfoGcsServiceStub(channel).GetClusterId(GetClusterIdRequest(), timeout=timeout)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNAUTHENTICATED:
            how = "its token does not match" if token_auth else "set RAY_AUTH_MODE=token and copy its token here"
            raise ConfigError(f"the Ray cluster at {address} requires token auth: {how}") from None
        raise ConfigError(f"{address} does not answer as a Ray cluster within execution.start_timeout_s="
                          f"{timeout:g} s ({e.code().name})") from None
    finally:
        channel.close()


def check_resources(execution: dict) -> None:
    """ConfigError when no live node could ever hold one trial's CPUs and GPUs."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    for key, res in (("cpus_per_trial", "CPU"), ("gpus_per_trial", "GPU")):
        want = execution[key]
        have = max((n.get(res, 0.0) for n in nodes), default=0.0)
        if want > have:
            raise ConfigError(f"execution.{key}={want:g} but the largest Ray node has {have:g} {res}")


def workers(execution: dict) -> int:
    """`execution.workers`, or when it is None as many trials as fit at once on the live nodes (each node:
    its CPUs // cpus_per_trial, and its GPUs // gpus_per_trial when trials take GPUs), at least 1."""
    if execution.get("workers"):
        return execution["workers"]
    fits = 0
    for node in (n["Resources"] for n in ray.nodes() if n.get("Alive")):
        per_node = [node.get(res, 0.0) / execution[key] for key, res in
                    (("cpus_per_trial", "CPU"), ("gpus_per_trial", "GPU")) if execution[key] > 0]
        fits += math.floor(min(per_node) + 1e-9)
    return max(1, fits)


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

    def run(self, task: TrialTask, reports: Any = None) -> TrialResult:
        """`reports`: a `ray.util.queue.Queue` that a supernet job's epochs are put on as they finish."""
        progress = None if reports is None else reports.put
        return run_trial(self.space, self.spec.objective, self.spec.context, task, worker=self.name,
                         progress=progress)


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
        self._reports: Any = None  # a ray.util.queue.Queue, made for the first supernet job
        self._checkpoints: dict[int, bytes] = {}  # trial -> last epoch checkpoint: a retry continues from it
        for _ in range(self.workers):
            self._spawn()

    @property
    def capacity(self) -> int:
        return self.workers

    def submit(self, task: TrialTask) -> None:
        if task.supernet is not None and self._reports is None:
            self._reports = Queue()
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
            reports = self._reports if task.supernet is not None else None
            self._running[actor.run.remote(task, reports)] = _Attempt(task, number, actor, worker, now, deadline)

    def _timeout(self) -> float | None:
        deadlines = [a.deadline for a in self._running.values() if a.deadline is not None]
        if not self._running and not self._idle:
            deadlines.append(self._progress_at + self.start_timeout_s)
        if any(a.task.supernet is not None for a in self._running.values()):
            deadlines.append(time.monotonic() + REPORT_POLL_S)  # show a running supernet job's epochs
        return None if not deadlines else max(0.0, min(deadlines) - time.monotonic())

    def _drain_reports(self) -> None:
        if self._reports is None or self._reports.empty():
            return
        for report in self._reports.get_nowait_batch(self._reports.qsize()):
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


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


__all__ = ["RayExecutor", "TrialSpec", "TrialWorker", "connect", "check_resources", "worker_id", "node_of"]
