"""Layer-wise density allocation: uniform, ER, ERK (Random Pruning paper; RigL's ERK).

d_l = ε · raw_l, with raw_l = 1 (uniform), (C_out + C_in) / (C_out · C_in) (ER) or
(C_out + C_in + k_h + k_w) / (C_out · C_in · k_h · k_w) (ERK) from the layer's weight shape. ε solves
Σ_l d_l · n_l = D · Σ_l n_l; while some ε · raw_l > 1, the layer(s) of largest raw_l become dense, leave the
sum, and ε is solved again. A layer then keeps exactly round(d_l · n_l) weights, so the overall density
is the target within one weight per layer. For a linear layer (C_out, C_in) the ERK term is the ER term.
"""
from __future__ import annotations

import math

from torch import nn

from ..errors import ConfigError
from ..registry import Registry
from .masks import check_keep, kept_count
from .sparse import SparseMixin

ALLOCATIONS: Registry = Registry("layer-wise allocation")

ALLOCATIONS.register("uniform")(lambda shape: 1.0)
ALLOCATIONS.register("er")(lambda shape: (shape[0] + shape[1]) / (shape[0] * shape[1]))
ALLOCATIONS.register("erk")(lambda shape: sum(shape) / math.prod(shape))


def layer_densities(shapes: list[tuple[int, ...]], density: float, method: str = "erk") -> list[float]:
    """Per-layer densities for weight `shapes` at overall `density` (in (0, 1]) by `method`."""
    raw_of = ALLOCATIONS.get(method)
    density = check_keep(density)
    sizes = [math.prod(s) for s in shapes]
    raw = [raw_of(tuple(s)) for s in shapes]
    dense: set[int] = set()
    while True:
        free = [i for i in range(len(shapes)) if i not in dense]
        if not free:
            return [1.0] * len(shapes)
        rhs = density * sum(sizes) - sum(sizes[i] for i in dense)
        eps = rhs / sum(raw[i] * sizes[i] for i in free)
        top = max(raw[i] for i in free)
        if eps * top <= 1:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]
        dense |= {i for i in free if raw[i] == top}


def allocatable(model: nn.Module) -> list[SparseMixin]:
    """Sparse layers whose density is set by a keep ratio (N:M layers have a fixed density N/M)."""
    return [m for m in model.modules() if isinstance(m, SparseMixin) and m.mask_kind.pattern != "nm"]


def allocate(model: nn.Module, density: float, method: str = "erk") -> list[float]:
    """Set the keep ratio of every allocatable sparse layer of `model`; returns the densities.
    Channel-mask layers receive the density as their fraction of kept output channels."""
    layers = allocatable(model)
    if not layers:
        raise ConfigError("layer-wise allocation needs at least one sparse layer with a keep ratio")
    densities = layer_densities([tuple(m.weight.shape) for m in layers], density, method)
    for layer, d in zip(layers, densities):
        layer.keep = min(1.0, max(d, 1.0 / layer.weight.numel()))
    return densities


def kept_counts(shapes: list[tuple[int, ...]], densities: list[float]) -> list[int]:
    """Exact kept weights per layer: round(d_l · n_l), at least one."""
    return [kept_count(math.prod(s), d) for s, d in zip(shapes, densities)]
