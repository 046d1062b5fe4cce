"""Conformance suite of an executor: submit / running / wait / capacity / close on the trivial ProbeSpace."""
from __future__ import annotations

from typing import Callable

from ..evaluation import TrialTask
from ..execution import Executor
from ..journal import TrialResult
from ..objective import Objective
from ..space import Arch, EvalContext, SearchSpace
from ._common import ProbeSpace, tiny_context

ExecutorFactory = Callable[[SearchSpace, Objective, EvalContext], Executor]


def probe_tasks() -> list[TrialTask]:
    """Eight trials of ProbeSpace, x = 0..7 (x = 0 fails, x = 6 and 7 are over the suite's cost constraint)."""
    return [TrialTask(i, Arch({"x": i, "letter": "abc"[i % 3]}), 100 + i) for i in range(8)]


def check_executor(make: ExecutorFactory, context: EvalContext | None = None) -> list[TrialResult]:
    """Assert the executor protocol: `make(space, objective, context)` builds the executor under test.

    - `capacity` is an int >= 1; `running()` counts the submitted trials that have not come back;
    - the search's loop (fill to capacity, `wait()`, refill) gets every trial back exactly once, with its
      arch, seed and label; `wait()` returns at least one result and never more than were running;
    - a trial whose evaluator raises comes back `failed` with the error (the executor does not raise); one
      whose cheap metrics break a constraint comes back `infeasible` and is not evaluated;
    - `close()` ends it. Returns the results in trial order."""
    space, objective = ProbeSpace(), Objective(["val_acc"], constraints={"cost": [None, 5.5]})
    executor = make(space, objective, context or tiny_context())
    try:
        results = _drain(executor, probe_tasks())
    finally:
        executor.close()
    results.sort(key=lambda r: r.trial)
    assert [r.trial for r in results] == list(range(8)), "every submitted trial must come back exactly once"
    for task, result in zip(probe_tasks(), results):
        assert isinstance(result, TrialResult) and result.arch == task.arch and result.seed == task.seed
        assert result.label == space.label(task.arch) and isinstance(result.worker, str) and result.worker
        x = task.arch["x"]
        if x == 0:
            assert result.status == "failed" and "probe evaluator fails on x=0" in result.error, result
        elif x >= 6:
            assert result.status == "infeasible" and "val_acc" not in result.metrics, result
        else:
            assert result.status == "ok" and result.metrics == {"cost": x, "val_acc": x / 8, "test_acc": x / 8}
    return results


def _drain(executor: Executor, tasks: list[TrialTask]) -> list[TrialResult]:
    capacity = executor.capacity
    assert isinstance(capacity, int) and capacity >= 1, f"capacity must be an int >= 1, got {capacity!r}"
    assert executor.running() == 0, "a new executor runs nothing"
    pending, results = list(tasks), []
    while pending or executor.running():
        while pending and executor.running() < capacity:
            before = executor.running()
            executor.submit(pending.pop(0))
            assert executor.running() == before + 1, "submit() must count the trial as running"
        before = executor.running()
        done = executor.wait()
        assert 1 <= len(done) <= before, f"wait() returned {len(done)} results with {before} running"
        assert executor.running() == before - len(done), "running() must drop by the results wait() returned"
        results += done
    return results
