"""Conformance suites: what every space, strategy, scheduler, executor, latency predictor, mask kind and
sparse-training method must do, as plain functions that raise AssertionError (no pytest needed to call them).

The project's tests run them over every registry; a plug-in author runs them on their own class:

    from sparsenas.testing import check_space, check_strategy
    check_space(MySpace())
    check_strategy(MyStrategy, MySpace())

With pytest, parametrise over a registry as timm does over its models:
`@pytest.mark.parametrize("name", SPACES.names())`, then `check_space(SPACES.get(name)())`.

Beyond the contracts, `check_beats_random` (quality.py) asserts that a learning strategy searches problems of
known structure (`PROBLEMS`, a tabulated benchmark) better than random search, with significance.
"""
from ._common import ProbeSpace, TinySpace, tiny_context
from .executors import check_executor, probe_tasks
from .hardware import check_predictor
from .ops import check_mask_kind, check_sparse_training, run_trainer, trainer_net
from .quality import PROBLEMS, Comparison, Problem, check_beats_random, compare, nb201_problem, table_problem
from .schedulers import check_scheduler
from .spaces import check_space, check_space_evaluates
from .strategies import OBJECTIVE, STATUSES, applicable, check_resume, check_strategy, drive, fake_result

__all__ = ["OBJECTIVE", "PROBLEMS", "STATUSES", "Comparison", "ProbeSpace", "Problem", "TinySpace", "applicable",
           "check_beats_random", "check_executor", "check_mask_kind", "check_predictor", "check_resume", "check_scheduler",
           "check_space",
           "check_space_evaluates", "check_sparse_training", "check_strategy", "compare", "drive", "fake_result",
           "nb201_problem", "probe_tasks", "run_trainer", "table_problem", "tiny_context", "trainer_net"]
