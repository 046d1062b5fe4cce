"""Executors run trials: `local` in this process; others plug in through EXECUTORS."""
from .base import EXECUTORS, Executor
from . import local  # noqa: F401

__all__ = ["EXECUTORS", "Executor"]
