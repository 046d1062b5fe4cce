"""Sparse-IFT family members (Sparse Iso-FLOP Transformations, CerebrasResearch/Sparse-IFT): each replaces one
dense layer and its norm (conv k×k + BN, or linear + BN) by a sparse unit with the same FLOPs.

FLOPs are multiply-accumulates per output position (sparsenas.ops.accounting); every layer of a unit produces
the dense layer's output positions, so a unit is iso-FLOP when the non-zero weights of its layers add up to the
dense layer's weight count. Shapes follow the authors' formulas, with s the sparsity and
base = round(1 / (1 − s)) (their `base_scaling`):

  wide        widen the widened sides by base^(1/sides): one side (inside a block) by `base`, both sides by
              √base; width int(c · factor), as the authors. The paper's member widens the whole network by
              √base (sparsenas.spaces.sparse_ift, `scope: network`): there `SparseUnit`s take the kept counts
              of one density solved over the network, as stem, head and shortcuts widen too and stay dense.
  parallel    n = base sparse branches, each conv/linear + its own BN, summed (the block applies the ReLU).
  factorized  U (k×k, c_in → d, stride) → BN → ReLU → V (1×1, d → c_out), both sparse, then BN;
              d = ceil(k²·c_in·c_out / ((1 − s)(k²·c_in + c_out))) (authors' ceil). The BN + ReLU between U and
              V is the authors' `uv_layer: nonlinear_relu`, the setting of all their Sparse Factorized configs
              (their code's default, `linear`, is a plain U → V); it adds no FLOPs (norms are not counted).
  doped       sparse W (k×k, c_in → c_out) plus dense low-rank V∘U (k×k c_in → r, 1×1 r → c_out), then BN;
              r = floor(s·k²·c_in·c_out / (k²·c_in + c_out)) (authors' floor).

The sparsity of each unit is then *solved*, as the authors solve it for Sparse Wide (a binary search over one
global sparsity until the network's FLOPs are within 1e-3): here per unit and in closed form, its sparse layers
keep exactly as many weights as the dense layer has (for doped: minus the dense U, V weights), spread at one
density over them. So FLOPs match exactly up to the integer kept counts, and the realised sparsity is s up to
the rounding of the shapes (e.g. s = 0.6 → base 2 → wide/parallel at 0.5, as in the authors' code).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

from torch import nn
import torch.nn.functional as F

from .sparse import SparseConv2d, SparseLinear


@dataclass(frozen=True)
class LayerSpec:
    """The dense layer a unit replaces: `kind` conv (k×k, padding k//2) or linear (kernel 1)."""

    kind: str
    c_in: int
    c_out: int
    kernel: int = 1
    stride: int = 1

    def __post_init__(self):
        if self.kind not in ("conv", "linear"):
            raise ValueError(f"LayerSpec.kind must be conv or linear, got {self.kind!r}")
        if self.kind == "linear" and (self.kernel, self.stride) != (1, 1):
            raise ValueError("a linear LayerSpec has kernel 1 and stride 1")

    @property
    def fan_in(self) -> int:
        """Weights per output unit: k²·c_in."""
        return self.kernel * self.kernel * self.c_in

    @property
    def weights(self) -> int:
        """Weights of the dense layer = its FLOPs per output position."""
        return self.fan_in * self.c_out


def base_scaling(sparsity: float) -> int:
    """round(1 / (1 − s)), at least 1 (the authors' `base_scaling`)."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    return max(1, round(1.0 / (1.0 - sparsity)))


def factorized_rank(spec: LayerSpec, sparsity: float) -> int:
    """d of Sparse Factorized: ceil(k²·c_in·c_out / ((1 − s)(k²·c_in + c_out)))."""
    return max(1, math.ceil(spec.weights / ((1.0 - sparsity) * (spec.fan_in + spec.c_out)) - 1e-9))


def doped_rank(spec: LayerSpec, sparsity: float) -> int:
    """r of Sparse Doped: floor(s·k²·c_in·c_out / (k²·c_in + c_out))."""
    return int(math.floor(sparsity * spec.weights / (spec.fan_in + spec.c_out) + 1e-9))


def wide_widths(spec: LayerSpec, sparsity: float, widen_in: bool, widen_out: bool) -> tuple[int, int]:
    """(c_in, c_out) of Sparse Wide: the widened sides multiplied by base^(1/sides), truncated to int."""
    sides = int(widen_in) + int(widen_out)
    if sides == 0:
        raise ValueError("Sparse Wide needs at least one widened side")
    factor = base_scaling(sparsity) ** (1.0 / sides)
    grow = lambda c, on: int(c * factor + 1e-9) if on else c  # noqa: E731
    return grow(spec.c_in, widen_in), grow(spec.c_out, widen_out)


def split_kept(total: int, sizes: list[int]) -> list[int]:
    """Kept counts summing to `total`, one per layer of `sizes` weights, at one density (largest remainder)."""
    n = sum(sizes)
    if not 0 < total <= n:
        raise ValueError(f"cannot keep {total} of {n} weights")
    exact = [total * s / n for s in sizes]
    kept = [max(1, min(s, int(e))) for s, e in zip(sizes, exact)]
    order = sorted(range(len(sizes)), key=lambda i: exact[i] - int(exact[i]), reverse=True)
    i = 0
    while sum(kept) != total:
        j = order[i % len(order)]
        step = 1 if sum(kept) < total else -1
        if 1 <= kept[j] + step <= sizes[j]:
            kept[j] += step
        i += 1
    return kept


def _layer(spec: LayerSpec, mask: str | None, kept: int | None = None) -> nn.Module:
    """A conv/linear of `spec` (no bias): dense when `mask` is None, else sparse keeping exactly `kept`."""
    if spec.kind == "conv":
        args = (spec.c_in, spec.c_out, spec.kernel, spec.stride, spec.kernel // 2)
        if mask is None:
            return nn.Conv2d(*args, bias=False)
        return SparseConv2d(*args, bias=False, keep=kept / spec.weights, mask_mode=mask)
    if mask is None:
        return nn.Linear(spec.c_in, spec.c_out, bias=False)
    return SparseLinear(spec.c_in, spec.c_out, bias=False, keep=kept / spec.weights, mask_mode=mask)


def _norm(spec: LayerSpec, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if spec.kind == "conv" else nn.BatchNorm1d(channels)


class Unit(nn.Module):
    """Base of the members: `in_features` / `out_features` are the unit's actual widths."""

    in_features: int
    out_features: int


class DenseUnit(Unit):
    """The reference: the dense layer and its norm."""

    def __init__(self, spec: LayerSpec, sparsity: float, mask: str, widen_in=False, widen_out=False):
        super().__init__()
        self.in_features, self.out_features = spec.c_in, spec.c_out
        self.layer, self.norm = _layer(spec, None), _norm(spec, spec.c_out)

    def forward(self, x):
        return self.norm(self.layer(x))


class SparseUnit(Unit):
    """One sparse layer of `spec` keeping `kept` of its weights, and its norm: the layers of a network-wide
    Sparse Wide, whose kept counts come from one density solved over the whole network."""

    def __init__(self, spec: LayerSpec, kept: int, mask: str):
        super().__init__()
        self.in_features, self.out_features = spec.c_in, spec.c_out
        self.layer, self.norm = _layer(spec, mask, kept), _norm(spec, spec.c_out)

    def forward(self, x):
        return self.norm(self.layer(x))


class WideUnit(Unit):
    """Sparse Wide: the layer widened on `widen_in` / `widen_out`, keeping spec.weights weights."""

    def __init__(self, spec: LayerSpec, sparsity: float, mask: str, widen_in=False, widen_out=True):
        super().__init__()
        c_in, c_out = wide_widths(spec, sparsity, widen_in, widen_out)
        wide = replace(spec, c_in=c_in, c_out=c_out)
        self.in_features, self.out_features = c_in, c_out
        self.layer, self.norm = _layer(wide, mask, spec.weights), _norm(spec, c_out)

    def forward(self, x):
        return self.norm(self.layer(x))


class ParallelUnit(Unit):
    """Sparse Parallel: base sparse branches (layer + BN) summed; their kept weights add up to spec.weights."""

    def __init__(self, spec: LayerSpec, sparsity: float, mask: str, widen_in=False, widen_out=False):
        super().__init__()
        n = base_scaling(sparsity)
        self.in_features, self.out_features = spec.c_in, spec.c_out
        kept = split_kept(spec.weights, [spec.weights] * n)
        self.branches = nn.ModuleList(_layer(spec, mask, k) for k in kept)
        self.norms = nn.ModuleList(_norm(spec, spec.c_out) for _ in range(n))

    def forward(self, x):
        return sum(norm(layer(x)) for layer, norm in zip(self.branches, self.norms))


class FactorizedUnit(Unit):
    """Sparse Factorized: sparse U (k×k, c_in → d) → BN → ReLU → sparse V (1×1, d → c_out), then BN."""

    def __init__(self, spec: LayerSpec, sparsity: float, mask: str, widen_in=False, widen_out=False):
        super().__init__()
        d = factorized_rank(spec, sparsity)
        u_spec = replace(spec, c_out=d)
        v_spec = replace(spec, c_in=d, kernel=1, stride=1)
        kept_u, kept_v = split_kept(spec.weights, [u_spec.weights, v_spec.weights])
        self.in_features, self.out_features, self.rank = spec.c_in, spec.c_out, d
        self.u, self.v = _layer(u_spec, mask, kept_u), _layer(v_spec, mask, kept_v)
        self.u_norm, self.norm = _norm(spec, d), _norm(spec, spec.c_out)

    def forward(self, x):
        return self.norm(self.v(F.relu(self.u_norm(self.u(x)))))


class DopedUnit(Unit):
    """Sparse Doped: sparse W plus dense low-rank V∘U (rank r), then BN; W keeps what U, V leave of the FLOPs."""

    def __init__(self, spec: LayerSpec, sparsity: float, mask: str, widen_in=False, widen_out=False):
        super().__init__()
        r = doped_rank(spec, sparsity)
        self.in_features, self.out_features, self.rank = spec.c_in, spec.c_out, r
        low_rank = r * (spec.fan_in + spec.c_out)
        self.w = _layer(spec, mask, spec.weights - low_rank)
        self.u = _layer(replace(spec, c_out=r), None) if r else None
        self.v = _layer(replace(spec, c_in=r, kernel=1, stride=1), None) if r else None
        self.norm = _norm(spec, spec.c_out)

    def forward(self, x):
        out = self.w(x)
        if self.u is not None:
            out = out + self.v(self.u(x))
        return self.norm(out)


MEMBERS: dict[str, Callable[..., Unit]] = {
    "dense": DenseUnit,
    "wide": WideUnit,
    "parallel": ParallelUnit,
    "factorized": FactorizedUnit,
    "doped": DopedUnit,
}


def make_unit(member: str, spec: LayerSpec, sparsity: float, mask: str = "random",
              widen_in: bool = False, widen_out: bool = False) -> Unit:
    """The `member` replacement of `spec` (+ its norm) at `sparsity`; `widen_*` only matter for wide."""
    if member not in MEMBERS:
        raise ValueError(f"unknown Sparse-IFT member {member!r} (known: {', '.join(MEMBERS)})")
    return MEMBERS[member](spec, sparsity, mask, widen_in=widen_in, widen_out=widen_out)


__all__ = ["LayerSpec", "MEMBERS", "SparseUnit", "Unit", "base_scaling", "doped_rank", "factorized_rank", "make_unit",
           "split_kept", "wide_widths"]
