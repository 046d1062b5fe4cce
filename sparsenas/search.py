"""The search loop: ask → submit → wait → journal → tell, checkpointed so that `--resume` loses nothing.

Checkpoint (state/checkpoint.json, plain JSON written atomically after every ask and every tell; see
`checkpoint`): the strategy's state_dict, the trials asked but not finished (re-run on resume with the same
arch and seed), and the trials already told (journal records beyond them are told on resume). With the local
executor a killed and resumed search therefore follows the same trajectory as an uninterrupted one. The budget
counts distinct finished trials: journal lines that are unreadable, duplicated or outside the space are set
aside by `Journal.load` and their trials run again.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from . import checkpoint, spaces  # noqa: F401 — spaces registers the built-in spaces
from .config import dump
from .errors import ConfigError
from .evaluation import TrialTask, trial_seed
from .execution import EXECUTORS
from .hardware import make_predictor
from .journal import Journal, TrialResult, write_atomic
from .objective import Objective
from .space import SPACES, EvalContext, SearchSpace
from .strategies import STRATEGIES, Strategy, Unique
from .tracking import TensorBoardLogger, write_summaries


class SearchAborted(RuntimeError):
    """The search stopped before its budget (e.g. too many failures in a row)."""


def build_space(config: dict) -> SearchSpace:
    options = {k: v for k, v in config["space"].items() if k != "name"}
    return SPACES.get(config["space"]["name"])(**options)


def build_strategy(config: dict, space: SearchSpace, objective: Objective) -> Strategy:
    cls = STRATEGIES.get(config["strategy"]["name"])
    missing = [cap.__name__ for cap in cls.requires if not isinstance(space, cap)]
    if missing:
        raise ConfigError(f"strategy {cls.name!r} needs a space with {', '.join(missing)}; "
                          f"space {space.name!r} has none")
    options = {k: v for k, v in config["strategy"].items() if k != "name"}
    return cls(space, objective, config["search"]["seed"], **options)


class Search:
    """One run: its components are built (and so validated) on construction, before anything is written."""

    def __init__(self, config: dict, run_dir: Path, progress: bool = True):
        self.config = config
        self.run_dir = Path(run_dir)
        self.objective = Objective.from_config(config["objective"])
        self.space = build_space(config)
        # the loop's de-duplication and exhaustion signal wrap the strategy (strategies/dedupe.py)
        self.strategy = Unique(build_strategy(config, self.space, self.objective), budget=config["search"]["budget"])
        self.context = EvalContext(train=config["train"], data=config["data"],
                                   device=config["execution"]["device"],
                                   time_limit_s=config["search"]["trial_timeout_s"],
                                   threads=max(1, math.ceil(config["execution"]["cpus_per_trial"])))
        self.space.prepare(self.context)
        self.context.latency = make_predictor(config["latency"], self.space, config["data"])
        self.executor_cls = EXECUTORS.get(config["execution"]["executor"])
        self.progress = progress
        self.journal = Journal(self.run_dir / "trials.jsonl")
        self.checkpoint_path = self.run_dir / "state" / "checkpoint.json"

    # -- checkpoint -------------------------------------------------------------------------------
    def _save(self) -> None:
        state = {"strategy": self.strategy.state_dict(), "next_trial": self.next_trial,
                 "pending": [[t, dict(task.arch), task.seed] for t, task in self.pending.items()],
                 "told": sorted(self.told)}
        checkpoint.save(self.checkpoint_path, state, space=self.space.name, strategy=self.strategy.name)

    def _restore(self) -> list[TrialTask]:
        """Load the checkpoint and journal; return the tasks that must run again."""
        legacy = self.checkpoint_path.with_suffix(".pkl")
        if legacy.exists() and not self.checkpoint_path.exists():
            raise ConfigError(f"{self.run_dir} was written by an older sparsenas whose checkpoint ({legacy.name}) "
                              "cannot be loaded safely; start a new run (report still reads this one)")
        state = None
        if self.checkpoint_path.exists():  # read (or refused) before the journal is repaired
            state = checkpoint.load(self.checkpoint_path, space=self.space.name, strategy=self.strategy.name)
        self.results = self.journal.load(validate=lambda r: self.space.validate(r.arch))
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
            self.pending = {int(t): TrialTask(int(t), self.space.validate(arch), int(seed))
                            for t, arch, seed in state["pending"]}
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
            raise ConfigError(f"checkpoint {self.checkpoint_path} does not fit this run's "
                              f"{self.strategy.name} strategy or {self.space.name} space ({type(e).__name__}: {e})"
                              .splitlines()[0]) from None

    # -- loop -------------------------------------------------------------------------------------
    def run(self) -> list[TrialResult]:
        # the executor first: a Ray cluster that cannot be reached is refused before anything is written
        executor = self.executor_cls(self.space, self.objective, self.context, self.config["execution"])
        try:
            return self._run(executor)
        finally:
            executor.close()

    def _run(self, executor) -> list[TrialResult]:
        (self.run_dir / "state").mkdir(parents=True, exist_ok=True)
        retry = self._restore()  # a checkpoint or journal that cannot be resumed is refused here
        write_atomic(self.run_dir / "config.yaml", dump(self.config))
        budget = self.config["search"]["budget"]
        max_failures = self.config["search"]["max_failures"]
        tb = TensorBoardLogger(self.run_dir / "tb", self.objective)
        for text in self.strategy.warnings:  # e.g. a budget within the strategy's warm-up (logged when built)
            tb.note(text)
        self.strategy.bind(self.context, self.run_dir / "state", tb.log_epoch)
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
                    task = TrialTask(self.next_trial, arch, trial_seed(self.config["search"]["seed"], self.next_trial))
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
            bar.close()
            tb.close()
        return self.results

    def _record(self, result: TrialResult, tb: TensorBoardLogger) -> None:
        self.journal.append(result)
        self.results.append(result)
        self.strategy.tell(result)
        self.told.add(result.trial)
        self.pending.pop(result.trial, None)
        self._save()
        write_summaries(self.run_dir, self.objective, self.results)
        tb.log(result, self.results)

    def _show_best(self, bar) -> None:
        best = self.objective.best(self.results)
        if best is not None:
            bar.set_postfix({self.objective.names[0]: f"{best.metrics[self.objective.names[0]]:.4g}"})


def run_config(config: dict, run_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Convenience for scripts: run a resolved config in `run_dir` (created) and return a summary."""
    start = time.perf_counter()
    search = Search(config, run_dir, progress)
    results = search.run()
    best = search.objective.best(results)
    return {"trials": len(results), "best": best, "seconds": time.perf_counter() - start}
