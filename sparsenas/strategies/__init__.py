"""Built-in strategies; importing this package registers them."""
from . import differentiable, random  # noqa: F401
from . import evolution, opgfn, tpe  # noqa: F401
from .base import STRATEGIES, Strategy, register_strategy
from .dedupe import Unique

__all__ = ["STRATEGIES", "Strategy", "Unique", "register_strategy"]
