"""The DASS network: a DARTS cell network whose convolutions and classifier are sparse layers (SparseConv2d /
SparseLinear with the mask kind of `Sparse`); the ops, the cell and the whole network, shared by the `dass`
space (a derived cell) and its supernet (every op mixed)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import SparseConv2d, SparseLinear
from ..ops.masks import mask_kind
from ..ops.allocation import ALLOCATIONS, allocatable, scale_densities

NODES = 4
CELL_TYPES = ("normal", "reduce")


@dataclass(frozen=True)
class Sparse:
    """Makes the sparse layers of one cell at one keep ratio, and its norms (`affine: false` in the supernet, as
    the search network of DARTS and DASS). With an N:M `mask_mode`, a layer whose inputs per group are not a
    multiple of M (a depthwise conv) takes `fallback` (the space's unstructured mask) at `keep` instead."""

    keep: float
    mask_mode: str
    affine: bool = True
    fallback: str | None = None

    def norm(self, c: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(c, affine=self.affine)

    def mode(self, fan_in: int) -> str:
        """The mask of a layer with `fan_in` inputs per output (per group)."""
        kind = mask_kind(self.mask_mode)
        return self.fallback if kind.pattern == "nm" and fan_in % kind.m and self.fallback else self.mask_mode

    def conv(self, c_in, c_out, kernel, stride=1, padding=0, dilation=1, groups=1) -> SparseConv2d:
        return SparseConv2d(c_in, c_out, kernel, stride, padding, dilation, groups, bias=False,
                            keep=self.keep, mask_mode=self.mode(c_in // groups))

    def linear(self, c_in, c_out) -> SparseLinear:
        return SparseLinear(c_in, c_out, keep=self.keep, mask_mode=self.mode(c_in))


ALLOCATION_METHODS = ("uniform", "er", "erk")


def group_shape(layer: nn.Module) -> tuple[int, ...]:
    """The weight shape of one group of a (grouped) conv: (C_out/g, C_in/g, k_h, k_w); a depthwise conv is
    C_out kernels of shape (1, 1, k_h, k_w), each connected as densely as a dense layer of that shape."""
    g = getattr(layer, "groups", 1)
    return (layer.weight.shape[0] // g, *layer.weight.shape[1:])


def reallocate(net: nn.Module, method: str, fixed: tuple[nn.Module, ...] = ()) -> None:
    """Spread the weights that the sparse layers' keep ratios keep over the layers by `method` (uniform, er,
    erk of sparsenas.ops.allocation, each layer's raw density from the shape of one of its groups): the overall
    density stays; the `fixed` layers keep their ratios."""
    layers = allocatable(net)
    sizes = [m.weight.numel() for m in layers]
    density = sum(m.keep * n for m, n in zip(layers, sizes)) / sum(sizes)
    if method == "uniform" or density >= 1:
        return
    raw = [ALLOCATIONS.get(method)(group_shape(m), None) for m in layers]
    pinned = {i: m.keep for i, m in enumerate(layers) if any(m is f for f in fixed)}
    for m, d in zip(layers, scale_densities(sizes, raw, density, pinned)):
        m.keep = min(1.0, max(d, 1.0 / m.weight.numel()))


class ReLUConvBN(nn.Sequential):
    def __init__(self, sp: Sparse, c_in, c_out, kernel, stride, padding):
        super().__init__(nn.ReLU(), sp.conv(c_in, c_out, kernel, stride, padding), sp.norm(c_out))


class DilConv(nn.Sequential):
    def __init__(self, sp: Sparse, c_in, c_out, kernel, stride, padding, dilation):
        super().__init__(nn.ReLU(), sp.conv(c_in, c_in, kernel, stride, padding, dilation, groups=c_in),
                         sp.conv(c_in, c_out, 1), sp.norm(c_out))


class SepConv(nn.Sequential):
    def __init__(self, sp: Sparse, c_in, c_out, kernel, stride, padding):
        super().__init__(DilConv(sp, c_in, c_in, kernel, stride, padding, 1),
                         DilConv(sp, c_in, c_out, kernel, 1, padding, 1))


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset 1×1 stride-2 convs, concatenated."""

    def __init__(self, sp: Sparse, c_in, c_out):
        super().__init__()
        self.relu = nn.ReLU()
        self.a = sp.conv(c_in, c_out // 2, 1, 2)
        self.b = sp.conv(c_in, c_out - c_out // 2, 1, 2)
        self.bn = sp.norm(c_out)

    def forward(self, x):
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]  # same size as x, so odd sizes work too
        return self.bn(torch.cat([self.a(x), self.b(shifted)], dim=1))


OPS = {
    "max_pool_3x3": lambda sp, c, stride: nn.MaxPool2d(3, stride, 1),
    "avg_pool_3x3": lambda sp, c, stride: nn.AvgPool2d(3, stride, 1, count_include_pad=False),
    "skip_connect": lambda sp, c, stride: nn.Identity() if stride == 1 else FactorizedReduce(sp, c, c),
    "sep_conv_3x3": lambda sp, c, stride: SepConv(sp, c, c, 3, stride, 1),
    "sep_conv_5x5": lambda sp, c, stride: SepConv(sp, c, c, 5, stride, 2),
    "dil_conv_3x3": lambda sp, c, stride: DilConv(sp, c, c, 3, stride, 2, 2),
    "dil_conv_5x5": lambda sp, c, stride: DilConv(sp, c, c, 5, stride, 4, 2),
}
PRIMITIVES = ("none", *OPS)  # the supernet's 8 ops; `none` never appears in a derived cell


def input_pairs(node: int) -> list[str]:
    return [f"{a}-{b}" for a, b in itertools.combinations(range(node + 2), 2)]


class Cell(nn.Module):
    def __init__(self, genes, sp: Sparse, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__()
        self.pre0 = FactorizedReduce(sp, c_pp, c) if reduction_prev else ReLUConvBN(sp, c_pp, c, 1, 1, 0)
        self.pre1 = ReLUConvBN(sp, c_p, c, 1, 1, 0)
        self.inputs = [tuple(int(i) for i in pair.split("-")) for pair, _ in genes]
        self.ops = nn.ModuleList(
            nn.ModuleList(OPS[op](sp, c, 2 if reduction and src < 2 else 1) for src, op in zip(srcs, ops))
            for srcs, (_, ops) in zip(self.inputs, genes))

    def forward(self, s0, s1):
        states = [self.pre0(s0), self.pre1(s1)]
        for srcs, ops in zip(self.inputs, self.ops):
            states.append(sum(op(states[s]) for s, op in zip(srcs, ops)))
        return torch.cat(states[2:], dim=1)


class DassNetwork(nn.Module):
    """Stem → `layers` cells (reductions at 1/3 and 2/3 of the depth) → global pool → sparse classifier.
    `make_cell(kind, c_pp, c_p, c, reduction, reduction_prev)` makes each cell (discrete or mixed)."""

    def __init__(self, input_shape, num_classes, C, layers, stem_multiplier, head: Sparse, make_cell):
        super().__init__()
        c_stem = stem_multiplier * C
        self.stem = nn.Sequential(head.conv(input_shape[0], c_stem, 3, padding=1), nn.BatchNorm2d(c_stem))
        c_pp, c_p, c = c_stem, c_stem, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            c = c * 2 if reduction else c
            self.cells.append(make_cell("reduce" if reduction else "normal", c_pp, c_p, c, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, NODES * c
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = head.linear(c_p, num_classes)

    def forward(self, x):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.pool(s1).flatten(1))
