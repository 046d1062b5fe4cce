"""SparseConv2d / SparseLinear: a layer that computes with W ⊙ mask, the mask chosen by a mask kind.

The default kind "scores" is HYDRA/DASS: a score per weight, mask = top-k(|s|) keeping exactly
`kept_count(numel, keep)` weights, straight-through gradient to the scores (DASS layers.py). The other
kinds (random, magnitude, channel, N:M — see ops/masks.py) keep their mask in the buffer `mask_buf`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .masks import MASK_KINDS, MaskKind, check_keep, kept_count, mask_kind

MASK_MODES = ("scores", "random")  # the kinds of the first release; every spec of masks.mask_kind works

__all__ = ["MASK_MODES", "SparseConv2d", "SparseLinear", "SparseMixin", "kept_count"]


class SparseMixin:
    """Adds `keep`, `mask()`, `effective_weight()` and the mask state to a layer that has `weight`.

    mask_mode "scores": scores are learnable, init s = sqrt(6/fan_in) · W / max|W| (DASS).
    mask_mode "random": scores are fixed uniform noise, i.e. a random mask at the same keep ratio.
    Other modes: see sparsenas.ops.masks. Setting `keep` recomputes a buffer-held mask.
    """

    weight: nn.Parameter

    def _init_sparse(self, keep: float, mask_mode) -> None:
        kind: MaskKind = mask_kind(mask_mode)
        kind.check(self)
        self.mask_kind = kind
        self.mask_mode = kind.spec
        self.register_buffer("mask_buf", None)
        self._keep = check_keep(keep)
        if kind.pattern == "nm":
            self._keep = kind.n / kind.m
        kind.setup(self)
        self.refresh_mask()

    @property
    def keep(self) -> float:
        return self._keep

    @keep.setter
    def keep(self, value: float) -> None:
        self._keep = check_keep(value)
        self.refresh_mask()

    @property
    def k(self) -> int:
        """Exact number of kept weights."""
        return self.mask_kind.count(self)

    @property
    def dense(self) -> bool:
        return self._keep >= 1

    def refresh_mask(self) -> None:
        """Recompute a buffer-held mask from the kind (magnitude: from the current weights)."""
        if self.mask_kind.learned:
            return
        with torch.no_grad():
            self.mask_buf = None if self.dense else self.mask_kind.compute(self).detach().to(self.weight.dtype)

    def set_mask(self, mask: torch.Tensor) -> None:
        """Fix the mask from outside (random baseline, sparse training): the layer's kind becomes "fixed";
        a learned-score layer stops training its scores."""
        if mask.shape != self.weight.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} != weight shape {tuple(self.weight.shape)}")
        if self.mask_kind.pattern == "unstructured" and self.mask_kind.spec != "fixed":
            self.mask_kind = MASK_KINDS.get("fixed")()
            self.mask_mode = "fixed"
        if getattr(self, "scores", None) is not None:
            self.scores.requires_grad_(False)
        self._keep = float(mask.sum()) / mask.numel()
        self.mask_buf = mask.detach().to(dtype=self.weight.dtype, device=self.weight.device).clone()

    def mask(self) -> torch.Tensor:
        if self.mask_kind.learned:
            return self.mask_kind.compute(self)
        if self.mask_buf is None:
            return torch.ones_like(self.weight)
        return self.mask_buf

    def effective_weight(self) -> torch.Tensor:
        if self.mask_kind.learned and self.dense:
            return self.weight
        if not self.mask_kind.learned and self.mask_buf is None:
            return self.weight
        w = self.weight * self.mask()
        hook = getattr(self, "_dense_grad_hook", None)
        if hook is not None and w.requires_grad:
            w.register_hook(hook)
        return w

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a state dict's mask (possibly None ↔ tensor) replaces ours before the copy
        key = prefix + "mask_buf"
        if key in state_dict and not self.mask_kind.learned:
            self.mask_buf = state_dict[key].detach().clone()
        return super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class SparseConv2d(SparseMixin, nn.Conv2d):
    def __init__(self, *args, keep: float = 1.0, mask_mode: str = "scores", **kwargs):
        super().__init__(*args, **kwargs)
        self._init_sparse(keep, mask_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


class SparseLinear(SparseMixin, nn.Linear):
    def __init__(self, *args, keep: float = 1.0, mask_mode: str = "scores", **kwargs):
        super().__init__(*args, **kwargs)
        self._init_sparse(keep, mask_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)
