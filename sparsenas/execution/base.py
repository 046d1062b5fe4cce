"""The executor protocol: submit trial tasks, wait for finished results."""
from __future__ import annotations

from ..evaluation import Progress, TrialTask
from ..journal import TrialResult
from ..objective import Objective
from ..registry import Registry
from ..space import EvalContext, SearchSpace


class Executor:
    """Runs up to `capacity` trials at once; `wait()` blocks until at least one is done, passing the epochs of
    running supernet jobs to `progress` (set by the loop) as they finish."""

    def __init__(self, space: SearchSpace, objective: Objective, context: EvalContext, execution: dict):
        self.space, self.objective, self.context = space, objective, context
        self.execution = execution
        self.progress: Progress | None = None

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
