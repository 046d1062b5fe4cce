"""The search loop: ask → submit → wait → journal → tell, checkpointed so that `--resume` loses nothing.

Checkpoint (state/checkpoint.json, plain JSON written atomically after every ask and every tell; see
`checkpoint`): the strategy's state_dict, the trials asked but not finished (re-run on resume with the same
arch and seed), and the trials already told (journal records beyond them are told on resume). With the local
executor a killed and resumed search therefore follows the same trajectory as an uninterrupted one. The budget
counts distinct finished trials: journal lines that are unreadable, duplicated or outside the space are set
aside by `Journal.load` and their trials run again.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .assemble import build_scheduler, build_space, build_strategy
from .config import check_machine
from .errors import ConfigError
from .evaluation import EpochReport, SupernetJob, TrialTask, epoch_metrics, task_for, trial_seed
from .execution import EXECUTORS
from .hardware import make_predictor
from .journal import TrialResult
from .objective import Objective
from .space import Arch, EvalContext, SearchSpace
from .strategies import Unique
from .strategies.dedupe import budget_warnings
from .rundir import MemoryRun, RunDir
from .tracking import TensorBoardLogger


log = logging.getLogger("sparsenas")


class SearchAborted(RuntimeError):
    """The search stopped before its budget (e.g. too many failures in a row)."""


class Search:
    """One run: its components are built (and so validated) on construction, before anything is written."""

    def __init__(self, config: dict, run: RunDir | MemoryRun | Path | None, progress: bool = True, *,
                 space: SearchSpace | None = None, strategy_cls: type | None = None):
        """`run`: where the run lives (a `RunDir` or its path; `MemoryRun` or None: in memory). `space` and
        `strategy_cls`: objects to use instead of building the config's registered ones."""
        self.config = config
        self.rundir = run if isinstance(run, (RunDir, MemoryRun)) else MemoryRun() if run is None else RunDir(run)
        self.objective = Objective.from_config(config["objective"])
        self.space = space or build_space(config)
        # the loop's de-duplication and exhaustion signal wrap the strategy (strategies/dedupe.py)
        self.strategy = Unique(build_strategy(config, self.space, self.objective, strategy_cls))
        self.context = EvalContext.from_config(config)
        self.space.prepare(self.context)
        self.context.latency = make_predictor(config["latency"], self.space, config["data"])
        self.executor_cls = EXECUTORS.get(config["execution"]["executor"])
        self.progress = progress
        self.epoch_bars: dict[int, tqdm] = {}
        # public hook: each callback(result) runs after a finished trial is journaled and told (e.g. timing)
        self.callbacks: list[Callable[[TrialResult], None]] = []
        check_machine(config)
        produced = self.space.metrics()
        if produced is not None and self.context.latency is not None:
            produced = produced | self.context.latency.metrics()
        self.objective.check_metrics(produced)
        self.scheduler = build_scheduler(config, self.objective)
        if self.scheduler.active:
            self._check_epoch_metrics()

    def _check_epoch_metrics(self) -> None:
        """ConfigError when the scheduler judges a metric that the space's trials do not report per epoch."""
        reported = epoch_metrics(self.space, self.context)
        if reported is None:
            return  # a space of unknown reports: a trial that never reports simply trains to the end
        where = f"scheduler {self.scheduler.name!r} (scheduler.metrics={','.join(self.scheduler.metrics)})"
        if not reported:
            raise ConfigError(f"{where} needs per-epoch reports, and space {self.space.name!r} reports none")
        missing = [m for m in self.scheduler.metrics if m not in reported]
        if missing:
            raise ConfigError(f"{where}: {missing[0]!r} is not reported per epoch by space {self.space.name!r} "
                              f"(per epoch: {', '.join(sorted(reported))})")

    # -- checkpoint -------------------------------------------------------------------------------
    def _save(self) -> None:
        if not self.rundir.persistent:
            return  # in memory: nothing to resume, so no state to collect
        state = {"strategy": self.strategy.state_dict(), "next_trial": self.next_trial,
                 "pending": [[t, dict(task.arch), task.seed, None if task.supernet is None else vars(task.supernet)]
                             for t, task in self.pending.items()],
                 "told": sorted(self.told), "scheduler": self.scheduler.state_dict()}
        self.rundir.save_state(state, self.space.name, self.strategy.name)

    def _restore(self) -> list[TrialTask]:
        """Load the checkpoint and journal; return the tasks that must run again."""
        if not self.rundir.persistent and hasattr(self, "results"):
            return []  # a second run of an in-memory search: the loop's state and the strategy are still here
        state = self.rundir.load_state(self.space.name, self.strategy.name)  # refused before the journal is touched
        self.results = self.rundir.journal.load(validate=lambda r: self.space.validate(r.arch))
        self.pending: dict[int, TrialTask] = {}
        self.told: set[int] = set()
        self.next_trial = 0
        if state is not None:
            self._load_state(state)
        done = {r.trial for r in self.results}
        for r in sorted(self.results, key=lambda r: r.trial):
            if r.trial not in self.told:
                self.strategy.tell(r)
                self.told.add(r.trial)
            self.pending.pop(r.trial, None)
        self.next_trial = max([self.next_trial, *(t + 1 for t in done)])
        return [self.pending[t] for t in sorted(self.pending)]

    def _load_state(self, state: dict) -> None:
        try:
            self.strategy.load_state_dict(state["strategy"])
            self.next_trial = int(state["next_trial"])
            self.told = {int(t) for t in state["told"]}
            self.pending = {int(t): self._pending_task(int(t), arch, int(seed), job)
                            for t, arch, seed, job in state["pending"]}
            self.scheduler.load_state_dict(state.get("scheduler") or self.scheduler.state_dict())
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as e:
            raise ConfigError(f"checkpoint of {self.rundir} does not fit this run's "
                              f"{self.strategy.name} strategy or {self.space.name} space ({type(e).__name__}: {e})"
                              .splitlines()[0]) from None

    def _pending_task(self, trial: int, arch: dict, seed: int, job: dict | None) -> TrialTask:
        if job is None:
            return TrialTask(trial, self.space.validate(arch), seed)
        return TrialTask(trial, Arch({}), seed, SupernetJob(dict(job["options"]), int(job["seed"])),
                         resume=self._supernet_checkpoint(trial))

    def _supernet_checkpoint(self, trial: int) -> bytes | None:
        """state/supernet.pt if it belongs to `trial` (checked with torch.load(weights_only=True))."""
        data = self.rundir.supernet_checkpoint()
        if data is None:
            return None
        try:
            saved = torch.load(io.BytesIO(data), weights_only=True)
            epoch, owner = int(saved["epoch"]), saved.get("trial", trial)
        except Exception as e:  # noqa: BLE001 — unpickling errors have no common base
            raise ConfigError(f"{self.rundir}/state/supernet.pt is not a supernet checkpoint ({type(e).__name__}); "
                              "remove it to restart the supernet search") from None
        return data if owner == trial and epoch >= 0 else None

    def _on_epoch(self, report: EpochReport) -> None:
        """A running supernet job finished an epoch: checkpoint it, log it, show it."""
        self.rundir.save_supernet_checkpoint(report.checkpoint)
        self.tb.log_epoch(report.epoch, report.scalars, report.text)
        bar = self.epoch_bars.get(report.trial)
        if bar is None:
            bar = self.epoch_bars[report.trial] = tqdm(
                total=report.epochs, initial=report.epoch, disable=not self.progress, unit="epoch", position=1,
                leave=False, desc=f"trial {report.trial} supernet", dynamic_ncols=True)
        bar.update(1)
        bar.set_postfix({k: f"{v:.3g}" for k, v in list(report.scalars.items())[:3]})

    def _on_report(self, trial: int, epochs: int, metrics: dict) -> bool:
        """A scheduled trial finished an epoch: log its curve, ask the scheduler, checkpoint the scheduler's
        state (so that a kill loses no rung of a trial that then finishes); True stops the trial."""
        self.tb.log_curve(trial, epochs, metrics)
        stop = self.scheduler.report(trial, epochs, metrics)
        self._save()
        return stop

    # -- loop -------------------------------------------------------------------------------------
    def run(self, resume: bool = True) -> list[TrialResult]:
        """Finish the budget. The run directory is locked for the whole search; with `resume` False a run that
        already exists there is refused."""
        # the executor first: a Ray cluster that cannot be reached is refused before anything is written
        scheduled = {"scheduler": self.scheduler} if self.scheduler.active else {}  # plug-ins may predate it
        executor = self.executor_cls(self.space, self.objective, self.context, self.config["execution"], **scheduled)
        try:
            with self.rundir.writing(resume):
                return self._run(executor)
        finally:
            executor.close()

    def _run(self, executor) -> list[TrialResult]:
        retry = self._restore()  # a checkpoint or journal that cannot be resumed is refused here
        self.rundir.write_config(self.config)
        budget = self.config["search"]["budget"]
        max_failures = self.config["search"]["max_failures"]
        tb = self.tb = self.rundir.tensorboard(self.objective)
        for text in budget_warnings(self.strategy.strategy, budget):  # a budget within the strategy's warm-up
            log.warning("sparsenas: %s", text)
            tb.note(text)
        executor.progress = self._on_epoch
        if self.scheduler.active:
            executor.on_report, executor.on_curve = self._on_report, tb.log_curve
        bar = tqdm(total=budget, initial=len(self.results), disable=not self.progress, unit="trial",
                   desc=f"{self.space.name}/{self.strategy.name}", dynamic_ncols=True)
        self._show_best(bar)
        failures_in_row = 0
        try:
            for task in retry:
                executor.submit(task)
            while len(self.results) < budget:
                while executor.running() < executor.capacity and len(self.results) + len(self.pending) < budget:
                    arch = self.strategy.ask()
                    if arch is None:
                        break
                    task = task_for(arch, self.next_trial, trial_seed(self.config["search"]["seed"], self.next_trial))
                    self.pending[task.trial] = task
                    self.next_trial += 1
                    self._save()
                    executor.submit(task)
                if executor.running() == 0:
                    break  # the strategy has nothing more to propose
                for result in executor.wait():
                    self._record(result, tb)
                    failures_in_row = failures_in_row + 1 if result.status == "failed" else 0
                    bar.update(1)
                    self._show_best(bar)
                    if max_failures and failures_in_row >= max_failures:
                        raise SearchAborted(f"stopped after {failures_in_row} failed trials in a row "
                                            f"(search.max_failures={max_failures}); last error: {result.error}")
        finally:
            for epoch_bar in self.epoch_bars.values():
                epoch_bar.close()
            bar.close()
            tb.close()
        return self.results

    def _record(self, result: TrialResult, tb: TensorBoardLogger) -> None:
        if result.trial in self.epoch_bars:
            self.epoch_bars.pop(result.trial).close()
        self.rundir.journal.append(result)
        self.results.append(result)
        self.strategy.tell(result)
        self.told.add(result.trial)
        self.pending.pop(result.trial, None)
        self._save()
        self.rundir.write_summaries(self.objective, self.results)
        tb.log(result, self.results)
        for callback in self.callbacks:
            callback(result)

    def _show_best(self, bar) -> None:
        best = self.objective.best(self.results)
        if best is not None:
            bar.set_postfix({self.objective.names[0]: f"{best.metrics[self.objective.names[0]]:.4g}"})
