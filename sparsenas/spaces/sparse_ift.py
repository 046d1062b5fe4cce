"""Sparse-IFT search space: a residual backbone whose blocks each pick a Sparse-IFT family member and a sparsity.

Backbones (`backbone`):
  resnet  CIFAR-style ResNet for image inputs: dense stem conv 3×3 → C, stages of basic blocks (widths C·2^i,
          `stages` blocks each, stride 2 at the start of every stage after the first) → global pool → dense head.
  mlp     the same shape for flat inputs (images are flattened): dense stem linear → `hidden`, `mlp_blocks`
          residual blocks of two linears (+BN) → dense head.
Block: unit1 → ReLU → unit2 (+ shortcut) → ReLU, where each unit is one dense layer + BN replaced by the block's
member (sparsenas.ops.sparse_ift): dense, wide, parallel, factorized or doped, at the block's sparsity s. Every
member has the FLOPs of the dense layer it replaces, so every arch of the space has the dense network's FLOPs
(`flops_sparse`); the space searches how those FLOPs are spent. Stem, head and the dense 1×1 shortcuts (where
shape changes) stay dense.

Dims, per block i: `b{i}.member` and `b{i}.sparsity` (the latter is unused by `dense`). The member is chosen per
block rather than per layer because Sparse Wide widens a tensor shared by two layers: the authors widen the whole
network; here a wide block widens its inner width (unit1's output, unit2's input) — one side of each layer, so
by base = round(1/(1−s)) rather than √base — and the block's own layers absorb it. The other members are per
layer in the paper and are applied to both layers of the block, as the authors' blocks do.

Training: the sparse layers start from the `mask` kind (default `random`, as the authors' random mask init) and
evolve by `train.sparse_training` (sparsenas.sparse_training): `static` keeps the random mask, `rigl` / `set`
drop and regrow at constant per-layer nnz, so every member stays iso-FLOP while its mask moves. The preset
uses RigL (the paper's main setting) with its drop fraction 0.3 and stop at 0.75 of training, but updates every
10 steps instead of 100, since a digits trial has only ~75 steps. Other deviations for small scale/CPU:
PyTorch default init (the authors: Kaiming fan-out, zero-init of the last BN); sizes for 8×8 digits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from torch import nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..ops.masks import mask_kind
from ..ops.sparse_ift import MEMBERS, DenseUnit, LayerSpec, make_unit
from ..schema import Field, count, counts, numbers, one_of
from ..space import Arch, Categorical, register_space
from .trained import TrainedSpace


@dataclass(frozen=True)
class BlockPlan:
    c_in: int
    c_out: int
    stride: int


class IsoFlopBlock(nn.Module):
    """A residual block of two `kind` layers (conv 3×3 or linear), each replaced by `member` at `sparsity`."""

    def __init__(self, kind: str, plan: BlockPlan, member: str, sparsity: float, mask: str):
        super().__init__()
        kernel = 3 if kind == "conv" else 1
        self.unit1 = make_unit(member, LayerSpec(kind, plan.c_in, plan.c_out, kernel, plan.stride), sparsity, mask,
                               widen_out=True)
        self.unit2 = make_unit(member, LayerSpec(kind, plan.c_out, plan.c_out, kernel, 1), sparsity, mask,
                               widen_in=True)
        assert self.unit1.out_features == self.unit2.in_features
        reshape = plan.stride != 1 or plan.c_in != plan.c_out
        self.shortcut = DenseUnit(LayerSpec(kind, plan.c_in, plan.c_out, 1, plan.stride), 0.0, "") if reshape \
            else nn.Identity()

    def forward(self, x):
        return F.relu(self.unit2(F.relu(self.unit1(x))) + self.shortcut(x))


class SparseIFTNet(nn.Module):
    """stem → blocks → pool/flatten → head; `kind` is the layer kind of the blocks."""

    def __init__(self, kind: str, stem: nn.Module, blocks: list[nn.Module], width: int, num_classes: int):
        super().__init__()
        self.kind = kind
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        if self.kind == "linear":
            x = x.flatten(1)
        x = self.blocks(F.relu(self.stem(x)))
        if self.kind == "conv":
            x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.head(x)


@dataclass(frozen=True)
class Backbone:
    kind: str
    plan: Callable[[dict], list[BlockPlan]]
    stem: Callable[[dict, tuple[int, ...]], LayerSpec]


def _resnet_plan(o: dict) -> list[BlockPlan]:
    plan, width = [], o["C"]
    for i, n in enumerate(o["stages"]):
        for j in range(n):
            plan.append(BlockPlan(width, o["C"] * 2 ** i, 2 if i > 0 and j == 0 else 1))
            width = o["C"] * 2 ** i
    return plan


BACKBONES = {
    "resnet": Backbone("conv", _resnet_plan, lambda o, shape: LayerSpec("conv", shape[0], o["C"], 3, 1)),
    "mlp": Backbone("linear", lambda o: [BlockPlan(o["hidden"], o["hidden"], 1)] * o["mlp_blocks"],
                    lambda o, shape: LayerSpec("linear", math.prod(shape), o["hidden"])),
}


@register_space("sparse_ift")
class SparseIFTSpace(TrainedSpace):
    options_schema = {
        "backbone": one_of("resnet", tuple(BACKBONES)),
        "C": count(8),
        "stages": counts([1, 1, 1]),
        "hidden": count(64),
        "mlp_blocks": count(2),
        "members": Field(list(MEMBERS), (list,), lambda v: bool(v) and len(set(v)) == len(v),
                         "must be a non-empty list of distinct members", choices=tuple(MEMBERS)),
        "sparsities": numbers([0.5, 0.75, 0.9], 0, 1, low_open=True, high_open=True),
        # mask_kind raises its own ConfigError for an unknown spec
        "mask": Field("random", (str,), lambda v: mask_kind(v).pattern == "unstructured",
                      "must be an unstructured mask (the iso-FLOP solve sets exact per-layer counts), e.g. random, "
                      "magnitude or scores"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        o = self.options
        members, sparsities = o["members"], o["sparsities"]
        self.backbone = BACKBONES[o["backbone"]]
        self.plan = self.backbone.plan(o)
        self._dims = {}
        for i in range(len(self.plan)):
            self._dims[f"b{i}.member"] = Categorical(list(members))
            self._dims[f"b{i}.sparsity"] = Categorical([float(s) for s in sparsities])

    def dims(self):
        return dict(self._dims)

    def label(self, arch: Arch) -> str:
        def block(i):
            member = arch[f"b{i}.member"]
            return member if member == "dense" else f"{member}@{arch[f'b{i}.sparsity']:g}"

        return f"{self.options['backbone']}:" + ",".join(block(i) for i in range(len(self.plan)))

    def build(self, arch: Arch, input_shape, num_classes) -> nn.Module:
        o, kind = self.options, self.backbone.kind
        if kind == "conv" and len(input_shape) != 3:
            raise ConfigError(f"space.backbone=resnet needs image inputs (C, H, W), got shape {tuple(input_shape)}; "
                              f"use space.backbone=mlp")
        blocks = [IsoFlopBlock(kind, p, arch[f"b{i}.member"], arch[f"b{i}.sparsity"], o["mask"])
                  for i, p in enumerate(self.plan)]
        stem = DenseUnit(self.backbone.stem(o, tuple(input_shape)), 0.0, "")
        return SparseIFTNet(kind, stem, blocks, self.plan[-1].c_out, num_classes)
