"""`--executor tune`: trials run by Ray Tune, proposed by a sparsenas strategy through a Tune Searcher.

`StrategySearcher` is the adapter: Tune's `suggest(trial_id)` takes the next trial from a proposer and
`on_trial_complete(trial_id, result)` hands the finished `TrialResult` to a finisher. Used on its own
(`StrategySearcher.from_strategy`) the proposer is `strategy.ask` and the finisher `strategy.tell`, so
any sparsenas strategy drives any Tune experiment. Inside a search the executor makes the search loop
the proposer and finisher, so that ask/tell, the journal, checkpoints and `--resume` stay exactly as
with every other executor: `submit` queues a task for `suggest`, `on_trial_complete` queues its result
for `wait`, and `Tuner.fit()` runs in a background thread of the driver until `close()`.

Trials run in Tune's function trainables with `reuse_actors=True`; each worker process builds and
prepares the space once (cached per process). Trained spaces report every epoch (`val_acc`, `train_loss` and
the cheap metrics; the last one with the trial's whole result), so the run's `scheduler` section picks one of Ray Tune's own
schedulers to stop weak trials early (`make_scheduler`: asha → ASHAScheduler, hyperband → its asynchronous
Hyperband with several brackets, median → MedianStoppingRule; `grace_period`, `reduction_factor` as
configured; a trial stops after `max_epochs`, as on the other executors); they judge one metric, so several
`scheduler.metrics` are refused (the local and ray executors stop on several). A stopped trial is journalled
`ok` with its last epoch's metrics plus `epochs` (epochs trained) and `stopped_early=1`. With a scheduler,
every epoch's report also reaches the search loop, in its thread (`on_curve`: TensorBoard's per-trial curves).
A trial whose worker dies is retried by Tune (`FailureConfig(max_failures=execution.retries)`), then
journalled `failed`. Tune cannot kill one hung trial from outside; with `execution.kill_timeout_s` set the
search stops with an error when no trial finishes for that long (plus `start_timeout_s` before the first
result), rather than hang; closing the executor ends the Tune experiment, running trials included.
"""
from __future__ import annotations

import json
import math
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from typing import Any, Callable

from ray import tune
from ray.tune import FailureConfig, RunConfig, TuneConfig, Tuner
from ray.tune.result import AUTO_RESULT_KEYS
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from ..evaluation import SupernetJob, TrialTask, run_trial, task_for, task_label, trial_seed
from ..errors import ConfigError
from ..journal import TrialResult
from ..schedulers import Scheduler
from ..space import Arch, SearchSpace
from ..strategies import Strategy, Unique
from .base import Executor
from .ray import TrialSpec
from .ray_cluster import connect, worker_id, workers

RECORD = "sparsenas_record"  # final report: the whole TrialResult as JSON
METRICS = "sparsenas_metrics"  # per-epoch report: the metrics so far as JSON


class StrategySearcher(Searcher):
    """A Tune Searcher over `propose() -> TrialTask | None | Searcher.FINISHED` and
    `finish(task, TrialResult)`; configs are `{"trial", "arch", "seed"}`. `on_epoch(task, epochs, metrics)`, when
    given, gets each epoch that `tune_trial` reported, once, in order (also the one a scheduler stopped after,
    which Tune hands to `on_trial_complete` only)."""

    def __init__(self, space: SearchSpace, propose: Callable[[], Any], finish: Callable[[TrialTask, TrialResult], None],
                 metric: str, mode: str, on_epoch: Callable[[TrialTask, int, dict], None] | None = None):
        super().__init__(metric=metric, mode=mode)
        self.space, self._propose, self._finish, self._on_epoch = space, propose, finish, on_epoch
        self._live: dict[str, list] = {}  # Tune trial id -> [task, last intermediate result, epochs passed on]

    @classmethod
    def from_strategy(cls, strategy: Strategy, budget: int | None = None) -> "StrategySearcher":
        """The strategy itself as the searcher: suggest → ask, on_trial_complete → tell (trial seeds derive
        from the strategy's seed as in a search; `budget` ends the experiment after that many trials). Wrapped in
        `Unique` as in a search, unless it already is: no arch runs twice."""
        count = iter(range(budget if budget is not None else 2**62))
        strategy = strategy if isinstance(strategy, Unique) else Unique(strategy, budget=budget)

        def propose():
            trial = next(count, None)
            arch = strategy.ask() if trial is not None else None
            return Searcher.FINISHED if arch is None else task_for(arch, trial, trial_seed(strategy.seed, trial))

        objective = strategy.objective
        return cls(strategy.space, propose, lambda task, result: strategy.tell(result), objective.names[0],
                   "max" if objective.signs[0] > 0 else "min")

    @property
    def live(self) -> int:
        """Trials suggested and not yet complete."""
        return len(self._live)

    def __getstate__(self) -> dict:  # Tune pickles its searcher for restore; the live links stay behind
        return {**self.__dict__, "_propose": None, "_finish": None, "_on_epoch": None, "_live": {}}

    def suggest(self, trial_id: str):
        task = self._propose()
        if not isinstance(task, TrialTask):
            return task  # None (nothing yet) or Searcher.FINISHED
        self._live[trial_id] = [task, None, 0]
        job = None if task.supernet is None else {"options": task.supernet.options, "seed": task.supernet.seed}
        return {"trial": task.trial, "arch": dict(task.arch), "seed": task.seed, "supernet": job}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._live:
            self._live[trial_id][1] = result
            self._epoch(self._live[trial_id], result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self._live:
            return
        live = self._live.pop(trial_id)
        self._epoch(live, result)
        self._finish(live[0], self._to_result(live[0], result or live[1], error))

    def _epoch(self, live: list, result: dict | None) -> None:
        """Pass on the epoch `result` reports, unless it was passed on already (Tune repeats a trial's last
        result when it completes)."""
        result = result or {}
        epochs = int(result.get("epoch", 0))
        if self._on_epoch is not None and METRICS in result and epochs > live[2]:
            live[2] = epochs
            self._on_epoch(live[0], epochs, json.loads(result[METRICS]))

    def _to_result(self, task: TrialTask, result: dict | None, error: bool) -> TrialResult:
        result = result or {}
        if RECORD in result:
            return TrialResult.from_record(json.loads(result[RECORD]))
        worker = result.get("worker") or (f"{result['hostname']}:{result['pid']}" if "pid" in result else "ray-tune")
        out = TrialResult(task.trial, task.arch, task_label(self.space, task), "failed", seed=task.seed,
                          duration_s=float(result.get("time_total_s", 0.0)), worker=worker)
        if error:
            out.error = "the Ray Tune trial failed on every attempt (its worker died or the trainable crashed)"
        elif METRICS in result:  # stopped by the scheduler after an epoch
            out.status = "ok"
            out.metrics = {**json.loads(result[METRICS]), "epochs": float(result["epoch"]), "stopped_early": 1.0}
        elif self.metric in result:  # another trainable's plain report (StrategySearcher used on its own)
            out.status = "ok"
            out.metrics = {k: float(v) for k, v in result.items() if k not in AUTO_RESULT_KEYS
                           and isinstance(v, (int, float)) and not isinstance(v, bool)}
        else:
            out.error = "Ray Tune ended the trial before it reported anything"
        return out


class _Stop(Stopper):
    """Stops a trial after epoch `max_epochs` (scheduler.max_epochs, which Tune's MedianStoppingRule has no
    option for; None: never), and the whole experiment (running trials included) once the executor closes."""

    def __init__(self, closing: threading.Event, max_epochs: int | None):
        self.closing, self.max_epochs = closing, max_epochs

    def __call__(self, trial_id: str, result: dict) -> bool:
        return self.max_epochs is not None and RECORD not in result and result.get("epoch", 0) >= self.max_epochs

    def stop_all(self) -> bool:
        return self.closing is not None and self.closing.is_set()

    def __getstate__(self) -> dict:  # pickled by Tune for restore; the event stays behind
        return {"closing": None, "max_epochs": self.max_epochs}


_WARM: dict[str, SearchSpace] = {}  # per worker process: the prepared space of each search


def tune_trial(config: dict, spec: TrialSpec, token: str) -> None:
    """The function trainable: runs one trial, reporting each epoch but the last, then the whole result with
    the last epoch's report (so that one report per epoch is one Tune iteration, and `max_t` = train.epochs
    ends a trial only after its whole result)."""
    if token not in _WARM:
        _WARM.clear()
        _WARM[token] = spec.build()
    space, worker = _WARM[token], worker_id()
    job = config.get("supernet")  # a supernet job runs here too, without per-epoch progress
    task = TrialTask(config["trial"], Arch(config["arch"]), config["seed"],
                     None if job is None else SupernetJob(job["options"], job["seed"]))
    epochs, last = spec.context.train["epochs"], {}

    def on_epoch(epoch: int, metrics: dict) -> None:
        report = {"epoch": epoch + 1, METRICS: json.dumps(metrics)}
        if epoch + 1 < epochs:
            tune.report({**metrics, **report, "worker": worker})
        else:
            last.update({**metrics, **report})  # with a scheduler metric that is not an objective

    result = run_trial(space, spec.objective, spec.context, task, worker=worker, on_epoch=on_epoch)
    objectives = {}  # each one (the scheduler's metric among them), the worst value when missing or not finite
    for name, sign in zip(spec.objective.names, spec.objective.signs):
        value = result.metrics.get(name, math.nan)
        objectives[name] = value if math.isfinite(value) else -sign * math.inf
    tune.report({**last, **objectives, "worker": worker, RECORD: json.dumps(result.to_record(), allow_nan=True)})


def make_scheduler(scheduler: Scheduler | None):
    """Ray Tune's scheduler for the run's `scheduler` (FIFO, never stopping, for none)."""
    if scheduler is None or not scheduler.active:
        return FIFOScheduler()
    if len(scheduler.metrics) > 1:
        raise ConfigError(f"scheduler.metrics={scheduler.metrics}: Ray Tune's schedulers judge one metric; "
                          "choose one, or use --executor local or ray to stop on several")
    metric, mode = scheduler.metrics[0], "max" if scheduler.signs[0] > 0 else "min"
    options = scheduler.options
    if scheduler.name == "median":
        return MedianStoppingRule(time_attr="training_iteration", metric=metric, mode=mode,
                                  grace_period=options["grace_period"], min_samples_required=options["min_samples"])
    brackets = 1
    if scheduler.name == "hyperband":
        brackets = len(scheduler.brackets)
    elif scheduler.name != "asha":
        raise ConfigError(f"scheduler {scheduler.name!r} has no Ray Tune counterpart; use --executor local or ray")
    return ASHAScheduler(metric=metric, mode=mode, max_t=scheduler.max_epochs, grace_period=options["grace_period"],
                         reduction_factor=options["reduction_factor"], brackets=brackets)


class TuneExecutor(Executor):
    def __init__(self, space, objective, context, execution, scheduler=None):
        super().__init__(space, objective, context, execution, scheduler)
        tune_scheduler = make_scheduler(scheduler)  # refused before Ray starts
        max_epochs = scheduler.max_epochs if scheduler is not None and scheduler.active else None
        self._tasks: queue.SimpleQueue[TrialTask] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[TrialResult | tuple] = queue.SimpleQueue()  # and (trial, epochs, metrics)
        self._closing = threading.Event()
        self._in_flight = 0
        self._finished_any = False
        self._error: BaseException | None = None
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no experiment banner on stdout
        self._local = connect(execution)
        self._workers = workers(execution)
        metric, mode = objective.names[0], "max" if objective.signs[0] > 0 else "min"
        searcher = self._searcher = StrategySearcher(
            space, self._next_task, lambda task, result: self._results.put(result), metric, mode,
            on_epoch=lambda task, epochs, metrics: self._results.put((task.trial, epochs, metrics)))
        trainable = tune.with_resources(
            tune.with_parameters(tune_trial, spec=TrialSpec.of(space, objective, context), token=uuid.uuid4().hex),
            {"cpu": execution["cpus_per_trial"], "gpu": execution["gpus_per_trial"]})
        self._storage = tempfile.mkdtemp(prefix="sparsenas-tune-")
        self._tuner = Tuner(
            trainable,
            tune_config=TuneConfig(search_alg=searcher, num_samples=-1, max_concurrent_trials=self._workers,
                                   reuse_actors=True,
                                   scheduler=tune_scheduler),
            run_config=RunConfig(name="sparsenas", storage_path=self._storage, verbose=0,
                                 stop=_Stop(self._closing, max_epochs),
                                 failure_config=FailureConfig(max_failures=execution["retries"])))
        self._thread = threading.Thread(target=self._fit, name="sparsenas-tune", daemon=True)
        self._thread.start()

    @property
    def capacity(self) -> int:
        return self._workers

    def submit(self, task: TrialTask) -> None:
        self._tasks.put(task)
        self._in_flight += 1

    def running(self) -> int:
        return self._in_flight

    def wait(self) -> list[TrialResult]:
        limit = self.execution["kill_timeout_s"]
        if limit is not None and not self._finished_any:  # the first trials wait for workers to start
            limit += self.execution["start_timeout_s"]
        since, results = time.monotonic(), []
        while not results:
            try:
                results += self._take(self._results.get(timeout=0.5))
            except queue.Empty:
                if not self._thread.is_alive():
                    raise RuntimeError(f"Ray Tune stopped unexpectedly: {self._error!r}")
                if limit is not None and time.monotonic() - since > limit:
                    raise RuntimeError(f"no trial finished under Ray Tune for {limit:g} s (execution.kill_timeout_s="
                                       f"{self.execution['kill_timeout_s']:g}); a trial hangs")
        while not self._results.empty():
            results += self._take(self._results.get())
        self._in_flight -= len(results)
        self._finished_any = True
        return results

    def _take(self, item: TrialResult | tuple) -> list[TrialResult]:
        """A finished trial's result, or an epoch of a running one: passed to `on_curve` here, in the loop's
        thread, before its trial's result."""
        if isinstance(item, TrialResult):
            return [item]
        if self.on_curve is not None:
            self.on_curve(*item)
        return []

    def close(self) -> None:
        self._closing.set()
        self._tasks.put(None)  # wakes a waiting suggest
        if hasattr(self, "_thread"):
            self._thread.join(timeout=60)
            shutil.rmtree(self._storage, ignore_errors=True)
        if self._local is not None:
            self._local.stop()
            self._local = None

    def _next_task(self):
        """Tune asks for a trial. With none of ours running, Tune would sleep 1 s before asking again, so
        wait up to that long for the search loop's next submit (its tell → ask takes milliseconds)."""
        if self._closing.is_set():
            return Searcher.FINISHED
        try:
            task = self._tasks.get(block=not self._searcher.live, timeout=1.0)
        except queue.Empty:
            return None
        return Searcher.FINISHED if task is None else task

    def _fit(self) -> None:
        try:
            self._tuner.fit()
        except BaseException as e:  # noqa: BLE001 — reported by wait()
            self._error = e
