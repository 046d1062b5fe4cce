"""sparsenas — neural architecture search for sparse networks."""

__version__ = "0.1.0"
