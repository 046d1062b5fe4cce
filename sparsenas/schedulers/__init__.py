"""Schedulers stop weak trials early from their per-epoch reports; importing this package registers them."""
from . import asha, hyperband, median  # noqa: F401
from .base import SCHEDULERS, Scheduler, register_scheduler

__all__ = ["SCHEDULERS", "Scheduler", "register_scheduler"]
