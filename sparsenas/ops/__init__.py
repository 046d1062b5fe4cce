"""Sparse building blocks shared by every space."""
from .accounting import count_model
from .sparse import SparseConv2d, SparseLinear, SparseMixin, kept_count

__all__ = ["SparseConv2d", "SparseLinear", "SparseMixin", "count_model", "kept_count"]
