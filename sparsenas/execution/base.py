"""The executor protocol: submit trial tasks, wait for finished results."""
from __future__ import annotations

from ..evaluation import OnCurve, OnReport, Progress, TrialTask
from ..journal import TrialResult
from ..objective import Objective
from ..registry import Registry
from ..schedulers import Scheduler
from ..space import EvalContext, SearchSpace


class Executor:
    """Runs up to `capacity` trials at once; `wait()` blocks until at least one is done, passing the epochs of
    running supernet jobs to `progress` (set by the loop) as they finish. With `on_report` set (by the loop, when
    the run has an active `scheduler`), each epoch of a trained trial goes to it while the trial runs, and the
    trial stops after the epoch for which it returns True (see `evaluation.run_trial`). `scheduler` is the run's
    scheduler, for executors that hand stopping to another system (tune); those pass each epoch to `on_curve`
    (set by the loop alongside `on_report`: the learning curve's logging, without the scheduler's decision)."""

    def __init__(self, space: SearchSpace, objective: Objective, context: EvalContext, execution: dict,
                 scheduler: Scheduler | None = None):
        self.space, self.objective, self.context = space, objective, context
        self.execution = execution
        self.scheduler = scheduler
        self.progress: Progress | None = None
        self.on_report: OnReport | None = None
        self.on_curve: OnCurve | None = None

    @property
    def capacity(self) -> int:
        return 1

    def submit(self, task: TrialTask) -> None:
        raise NotImplementedError

    def running(self) -> int:
        raise NotImplementedError

    def wait(self) -> list[TrialResult]:
        raise NotImplementedError

    def close(self) -> None:
        pass


EXECUTORS: Registry[type[Executor]] = Registry("executor")
