"""Layer-wise density allocation: uniform, ER, ERK (Random Pruning paper; RigL's ERK), random.

d_l = ε · raw_l, with raw_l = 1 (uniform), (C_out + C_in) / (C_out · C_in) (ER) or
(C_out + C_in + k_h + k_w) / (C_out · C_in · k_h · k_w) (ERK) from the layer's weight shape, or a uniform draw
in (0, 1] per layer (random: a random layer-wise allocation at the same overall density, drawn from `seed`).
`scale_densities` is the same rescaling for any raw weights (e.g. the relative densities of a searched arch),
with layers of a fixed density (N:M) left out of the solve. ε solves
Σ_l d_l · n_l = D · Σ_l n_l; while some ε · raw_l > 1, the layer(s) of largest raw_l become dense, leave the
sum, and ε is solved again. A layer then keeps exactly round(d_l · n_l) weights, so the overall density
is the target within one weight per layer. For a linear layer (C_out, C_in) the ERK term is the ER term.
"""
from __future__ import annotations

import math

import numpy as np
from torch import nn

from ..errors import ConfigError
from ..registry import Registry
from .masks import check_keep, kept_count
from .sparse import SparseMixin

ALLOCATIONS: Registry = Registry("layer-wise allocation")

# each method: raw(shape, rng) -> the layer's unscaled density (rng: a numpy Generator, used by `random` only)
ALLOCATIONS.register("uniform")(lambda shape, rng: 1.0)
ALLOCATIONS.register("er")(lambda shape, rng: (shape[0] + shape[1]) / (shape[0] * shape[1]))
ALLOCATIONS.register("erk")(lambda shape, rng: sum(shape) / math.prod(shape))
ALLOCATIONS.register("random")(lambda shape, rng: 1.0 - float(rng.random()))  # in (0, 1]


def layer_densities(shapes: list[tuple[int, ...]], density: float, method: str = "erk", seed: int = 0) -> list[float]:
    """Per-layer densities for weight `shapes` at overall `density` (in (0, 1]) by `method` (`seed`: random's)."""
    raw_of = ALLOCATIONS.get(method)
    rng = np.random.default_rng(seed)
    return scale_densities([math.prod(s) for s in shapes], [raw_of(tuple(s), rng) for s in shapes], density)


def scale_densities(sizes: list[int], raw: list[float | None], density: float,
                    fixed: dict[int, float] | None = None) -> list[float]:
    """Densities ε · raw_l of layers of `sizes` weights at overall `density`: the layers of largest raw become
    dense while ε · raw_l > 1; layers in `fixed` ({index: density}) keep theirs (their raw is ignored).
    ConfigError when the fixed layers alone exceed the budget or no layer is free to absorb it."""
    density = check_keep(density)
    fixed = dict(fixed or {})
    if any(raw[i] is None or raw[i] <= 0 for i in range(len(sizes)) if i not in fixed):
        raise ValueError("raw densities must be > 0")
    dense: set[int] = set()
    while True:
        free = [i for i in range(len(sizes)) if i not in dense and i not in fixed]
        rhs = density * sum(sizes) - sum(sizes[i] for i in dense) - sum(sizes[i] * d for i, d in fixed.items())
        if not free:
            if fixed and abs(rhs) > 0.01 * sum(sizes):
                raise ConfigError(f"the fixed-density layers give overall density "
                                  f"{density - rhs / sum(sizes):.3f}, not {density:g}, and no layer is free")
            return [fixed.get(i, 1.0) for i in range(len(sizes))]
        if rhs <= 0:
            raise ConfigError(f"overall density {density:g} cannot be met: the fixed-density layers alone "
                              f"keep more weights")
        eps = rhs / sum(raw[i] * sizes[i] for i in free)
        top = max(raw[i] for i in free)
        if eps * top <= 1:
            return [fixed[i] if i in fixed else 1.0 if i in dense else eps * raw[i] for i in range(len(sizes))]
        dense |= {i for i in free if raw[i] == top}


def allocatable(model: nn.Module) -> list[SparseMixin]:
    """Sparse layers whose density is set by a keep ratio (N:M layers have a fixed density N/M)."""
    return [m for m in model.modules() if isinstance(m, SparseMixin) and m.mask_kind.pattern != "nm"]


def allocate(model: nn.Module, density: float, method: str = "erk", seed: int = 0) -> list[float]:
    """Set the keep ratio of every allocatable sparse layer of `model`; returns the densities.
    Channel-mask layers receive the density as their fraction of kept output channels."""
    layers = allocatable(model)
    if not layers:
        raise ConfigError("layer-wise allocation needs at least one sparse layer with a keep ratio")
    densities = layer_densities([tuple(m.weight.shape) for m in layers], density, method, seed)
    for layer, d in zip(layers, densities):
        layer.keep = min(1.0, max(d, 1.0 / layer.weight.numel()))
    return densities


def kept_counts(shapes: list[tuple[int, ...]], densities: list[float]) -> list[int]:
    """Exact kept weights per layer: round(d_l · n_l), at least one."""
    return [kept_count(math.prod(s), d) for s, d in zip(shapes, densities)]
