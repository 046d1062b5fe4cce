"""sparsenas — neural architecture search for sparse networks."""

from .study import Study

__version__ = "0.1.0"
__all__ = ["Study"]
