"""Runs trials one after another in the search process (deterministic order)."""
from __future__ import annotations

from collections import deque

from ..evaluation import TrialTask, run_trial
from .base import EXECUTORS, Executor


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.queue: deque[TrialTask] = deque()

    def submit(self, task: TrialTask) -> None:
        self.queue.append(task)

    def running(self) -> int:
        return len(self.queue)

    def wait(self):
        task = self.queue.popleft()
        on_epoch = None
        if self.on_report is not None:
            def on_epoch(epoch: int, metrics: dict) -> bool:
                return self.on_report(task.trial, epoch + 1, metrics)
        return [run_trial(self.space, self.objective, self.context, task, on_epoch=on_epoch, progress=self.progress)]
