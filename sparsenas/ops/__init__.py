"""Sparse building blocks shared by every space."""
from .accounting import count_model
from .masks import MASK_KINDS, MaskKind, mask_kind, mask_specs
from .sparse import SparseConv2d, SparseLinear, SparseMixin, kept_count

__all__ = ["MASK_KINDS", "MaskKind", "SparseConv2d", "SparseLinear", "SparseMixin", "count_model", "kept_count",
           "mask_kind", "mask_specs"]
