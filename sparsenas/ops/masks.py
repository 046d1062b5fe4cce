"""Mask kinds of the sparse layers, one registry: which weights of a SparseLinear / SparseConv2d are kept.

A mask spec is a string, the same in every space's config:
  "scores"     learned top-k of |scores| (HYDRA/DASS; straight-through gradient to the scores)
  "random"     fixed random top-k at the keep ratio (the random-sparse baseline)
  "magnitude"  top-k of |W| at construction (and whenever `keep` is set or `refresh_mask()` is called)
  "channel"    whole output channels (filters) kept, those of largest L1 norm; k = round(keep · C_out)
  "N:M"        e.g. "2:4", "1:4": N kept of every M consecutive weights along the input dimension
               (for a conv, along C_in at each (c_out, kh, kw) position); density N/M, the keep ratio is ignored.
Every kind except "scores" holds its mask in the buffer `mask_buf` (in the state dict), which sparse
training (SET / RigL / IMP) may rewrite. `random_mask()` draws a mask of the same structure and the same
count per layer — the "same architecture, random mask at equal per-layer sparsity" baseline.
"""
from __future__ import annotations

import math
import re

import torch

from ..errors import ConfigError
from ..registry import Registry

MASK_KINDS: Registry = Registry("mask kind")


def kept_count(numel: int, keep: float) -> int:
    """Weights kept at keep ratio `keep`: round(keep · numel), at least one."""
    return max(1, min(numel, int(round(keep * numel))))


def check_keep(keep: float) -> float:
    """A keep ratio in (0, 1] (i.e. sparsity in [0, 1)), else a one-line ConfigError."""
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise ConfigError(f"keep ratio must be in (0, 1] (sparsity in [0, 1)), got {keep!r}")
    return float(keep)


def _topk_mask(values: torch.Tensor, k: int) -> torch.Tensor:
    flat = values.detach().flatten()
    mask = torch.zeros_like(flat)
    mask[torch.topk(flat, k, sorted=False).indices] = 1.0
    return mask.view_as(values)


class MaskKind:
    """One way of choosing the kept weights. `pattern` tells sparse training and export how the mask is
    structured: "unstructured", "nm" or "channel"."""

    pattern = "unstructured"
    learned = False  # True: the mask follows trainable scores at every forward (no buffer)

    def check(self, layer) -> None:
        """Raise ValueError if this kind cannot be applied to `layer`."""

    def setup(self, layer) -> None:
        """Create the kind's state on a freshly built layer."""

    def compute(self, layer) -> torch.Tensor:
        """A fresh mask for the layer's current weights and keep ratio."""
        raise NotImplementedError

    def count(self, layer) -> int:
        """Exact number of kept weights."""
        return kept_count(layer.weight.numel(), layer.keep)

    def random_mask(self, layer, generator: torch.Generator) -> torch.Tensor:
        """A random mask of the same structure and count."""
        noise = torch.rand(layer.weight.shape, generator=generator).to(layer.weight.device)
        return _topk_mask(noise, self.count(layer))

    def __repr__(self) -> str:
        return self.spec


class _TopK(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores: torch.Tensor, k: int) -> torch.Tensor:
        return _topk_mask(scores.abs(), k)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


@torch.no_grad()
def scores_from_weights(weight: torch.Tensor) -> torch.Tensor:
    """DASS/HYDRA's scaled score init: sqrt(6 / fan_in) · W / max|W|."""
    return math.sqrt(6.0 / weight[0].numel()) * weight / weight.abs().max().clamp_min(1e-12)


@MASK_KINDS.register("scores")
class ScoresMask(MaskKind):
    learned = True
    spec = "scores"

    def setup(self, layer) -> None:
        layer.scores = torch.nn.Parameter(scores_from_weights(layer.weight).clone(), requires_grad=layer.keep < 1)

    def compute(self, layer) -> torch.Tensor:
        if layer.scores.requires_grad:
            return _TopK.apply(layer.scores, layer.k)
        # frozen scores (e.g. DASS finetune): the mask only changes when the scores or k do — reuse it
        key = (layer.scores._version, layer.scores.data_ptr(), layer.k)
        cached = getattr(layer, "_frozen_mask", None)
        if cached is None or cached[0] != key:
            cached = layer._frozen_mask = (key, _topk_mask(layer.scores.detach().abs(), layer.k))
        return cached[1]


@MASK_KINDS.register("random")
class RandomMask(MaskKind):
    """Fixed uniform noise as scores (not trained): a random mask at the layer's keep ratio."""

    spec = "random"

    def setup(self, layer) -> None:
        layer.scores = torch.nn.Parameter(torch.rand_like(layer.weight), requires_grad=False)

    def compute(self, layer) -> torch.Tensor:
        return _topk_mask(layer.scores.abs(), layer.k)


@MASK_KINDS.register("magnitude")
class MagnitudeMask(MaskKind):
    spec = "magnitude"

    def compute(self, layer) -> torch.Tensor:
        return _topk_mask(layer.weight.abs(), layer.k)


@MASK_KINDS.register("fixed")
class FixedMask(MaskKind):
    """A mask set from outside (random baseline, sparse training); `compute` keeps the current one."""

    spec = "fixed"

    def compute(self, layer) -> torch.Tensor:
        if getattr(layer, "mask_buf", None) is None:
            raise ValueError("a 'fixed' mask must be given with set_mask()")
        return layer.mask_buf

    def count(self, layer) -> int:
        return int(layer.mask_buf.sum())


@MASK_KINDS.register("channel")
class ChannelMask(MaskKind):
    """Whole output channels, those of largest L1 norm (filter pruning, Li et al. 2017)."""

    pattern = "channel"
    spec = "channel"

    def channels(self, layer) -> int:
        return kept_count(layer.weight.shape[0], layer.keep)

    def count(self, layer) -> int:
        return self.channels(layer) * layer.weight[0].numel()

    def from_scores(self, layer, scores: torch.Tensor) -> torch.Tensor:
        """The mask keeping the layer's count of output channels, those of largest `scores` (one per channel)."""
        keep = _topk_mask(scores, self.channels(layer))
        return keep.view(-1, *[1] * (layer.weight.dim() - 1)).expand_as(layer.weight).contiguous()

    def compute(self, layer) -> torch.Tensor:
        return self.from_scores(layer, layer.weight.detach().abs().flatten(1).sum(1))

    def random_mask(self, layer, generator) -> torch.Tensor:
        return self.from_scores(layer, torch.rand(layer.weight.shape[0], generator=generator).to(layer.weight.device))


class NMMask(MaskKind):
    """N of every M consecutive weights along the input dimension, the largest |W| of each group."""

    pattern = "nm"

    def __init__(self, n: int, m: int):
        if not (isinstance(n, int) and isinstance(m, int)) or n < 1 or m < 1:
            raise ConfigError(f"N:M mask needs integers N, M >= 1, got {n}:{m}")
        if n > m:
            raise ConfigError(f"N:M mask needs N <= M, got {n}:{m}")
        self.n, self.m = n, m
        self.spec = f"{n}:{m}"

    def check(self, layer) -> None:
        c_in = layer.weight.shape[1]
        if c_in % self.m:
            raise ConfigError(f"N:M mask {self.spec}: input dimension {c_in} of {type(layer).__name__}"
                              f"{tuple(layer.weight.shape)} is not divisible by M={self.m}")

    def count(self, layer) -> int:
        return layer.weight.numel() * self.n // self.m

    def _groups(self, w: torch.Tensor) -> torch.Tensor:
        """(out, in, *k) → (out, *k, in/M, M): groups of M consecutive input weights."""
        return w.movedim(1, -1).reshape(*w.shape[:1], *w.shape[2:], w.shape[1] // self.m, self.m)

    def _ungroup(self, g: torch.Tensor, shape) -> torch.Tensor:
        return g.reshape(shape[0], *shape[2:], shape[1]).movedim(-1, 1).contiguous()

    def _from_scores(self, layer, scores: torch.Tensor) -> torch.Tensor:
        g = self._groups(scores)
        mask = torch.zeros_like(g).scatter_(-1, g.topk(self.n, dim=-1).indices, 1.0)
        return self._ungroup(mask, layer.weight.shape)

    def compute(self, layer) -> torch.Tensor:
        return self._from_scores(layer, layer.weight.detach().abs())

    def random_mask(self, layer, generator) -> torch.Tensor:
        return self._from_scores(layer, torch.rand(layer.weight.shape, generator=generator).to(layer.weight.device))


_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def mask_kind(spec: str) -> MaskKind:
    """The MaskKind of a spec string ("scores", "magnitude", "2:4", ...); bad specs → ConfigError."""
    if isinstance(spec, MaskKind):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"mask must be a string such as 'scores', 'magnitude' or '2:4', got {spec!r}")
    nm = _NM.match(spec)
    if nm:
        return NMMask(int(nm.group(1)), int(nm.group(2)))
    if spec not in MASK_KINDS or spec == "fixed":
        raise ConfigError(f"unknown mask {spec!r} (choose from: {', '.join(mask_specs())})")
    return MASK_KINDS.get(spec)()


def mask_specs() -> list[str]:
    """The selectable mask specs, for help texts and error messages ('fixed' is internal)."""
    return [n for n in MASK_KINDS.names() if n != "fixed"] + ["N:M"]
