"""`space.structures` of the dass and sparse_ift spaces: the sparsity structures a cell or block may take (a
`structure` dim next to its sparsity when several are listed; the default, unstructured only, adds no dim)."""
from __future__ import annotations

from ..ops.masks import mask_kind
from ..schema import Field

STRUCTURES = ("unstructured", "channel")  # and N:M specs, e.g. "2:4"


def structures_ok(v) -> bool:
    """A non-empty list of distinct structures: unstructured, channel or N:M (mask_kind raises its own error)."""
    def ok(x):
        return isinstance(x, str) and (x in STRUCTURES or mask_kind(x).pattern == "nm")
    return isinstance(v, list) and bool(v) and len(set(map(str, v))) == len(v) and all(ok(x) for x in v)


def structures_field() -> Field:
    return Field(["unstructured"], (list,), structures_ok,
                 "must be a non-empty list of distinct structures: unstructured, channel or N:M (e.g. 2:4)")


def structure_mask(structure: str, mask: str) -> str:
    """The mask spec of `structure`: the space's own (unstructured) `mask`, else the structure itself."""
    return mask if structure == "unstructured" else structure
