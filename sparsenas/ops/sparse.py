"""SparseConv2d / SparseLinear (HYDRA/DASS style): a score per weight, the layer uses W ⊙ top-k(|s|).

The top-k mask keeps exactly `kept_count(numel, keep)` weights; its backward is the straight-through
estimator, so the scores receive the gradient of the masked weight's product (DASS layers.py).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MASK_MODES = ("scores", "random")


def kept_count(numel: int, keep: float) -> int:
    """Weights kept at keep ratio `keep`: round(keep · numel), at least one."""
    return max(1, min(numel, int(round(keep * numel))))


class _TopK(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores: torch.Tensor, k: int) -> torch.Tensor:
        flat = scores.detach().abs().flatten()
        mask = torch.zeros_like(flat)
        mask[torch.topk(flat, k, sorted=False).indices] = 1.0
        return mask.view_as(scores)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class SparseMixin:
    """Adds `scores`, `keep` and `effective_weight()` to a layer that has `weight`.

    mask_mode "scores": scores are learnable, init s = sqrt(6/fan_in) · W / max|W| (DASS).
    mask_mode "random": scores are fixed uniform noise, i.e. a random mask at the same keep ratio
    (the random-sparse baseline at equal per-layer sparsity).
    """

    weight: nn.Parameter

    def _init_sparse(self, keep: float, mask_mode: str) -> None:
        if not 0 < keep <= 1:
            raise ValueError(f"keep ratio must be in (0, 1], got {keep}")
        if mask_mode not in MASK_MODES:
            raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")
        self.keep = float(keep)
        self.mask_mode = mask_mode
        fan_in = self.weight[0].numel()
        with torch.no_grad():
            if mask_mode == "scores":
                init = math.sqrt(6.0 / fan_in) * self.weight / self.weight.abs().max().clamp_min(1e-12)
            else:
                init = torch.rand_like(self.weight)
        self.scores = nn.Parameter(init.clone(), requires_grad=mask_mode == "scores" and keep < 1)

    @property
    def k(self) -> int:
        return kept_count(self.weight.numel(), self.keep)

    def mask(self) -> torch.Tensor:
        return _TopK.apply(self.scores, self.k)

    def effective_weight(self) -> torch.Tensor:
        if self.keep >= 1:
            return self.weight
        return self.weight * self.mask()


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
