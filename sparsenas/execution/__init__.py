"""Executors run trials: `local` in this process; others plug in through EXECUTORS."""
from importlib import import_module

from .base import EXECUTORS, Executor
from . import local  # noqa: F401


def _lazy(module: str, cls: str):
    """An executor factory that imports `module` only when the executor is built (importing ray costs
    seconds and ~650 MB, which the local executor must not pay)."""
    def build(*args, **kwargs):
        return getattr(import_module(module, __name__), cls)(*args, **kwargs)
    return build


EXECUTORS.register("ray")(_lazy(".ray", "RayExecutor"))
EXECUTORS.register("tune")(_lazy(".tune", "TuneExecutor"))

__all__ = ["EXECUTORS", "Executor"]
