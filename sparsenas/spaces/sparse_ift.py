"""Sparse-IFT search space: a residual backbone whose blocks each pick a Sparse-IFT family member and a sparsity.

Backbones (`backbone`):
  resnet  CIFAR-style ResNet for image inputs: dense stem conv 3×3 → C, stages of basic blocks (widths C·2^i,
          `stages` blocks each, stride 2 at the start of every stage after the first) → global pool → dense head.
  mlp     the same shape for flat inputs (images are flattened): dense stem linear → `hidden`, `mlp_blocks`
          residual blocks of two linears (+BN) → dense head.
Block: unit1 → ReLU → unit2 (+ shortcut) → ReLU, where each unit is one dense layer + BN replaced by the block's
member (sparsenas.ops.sparse_ift): dense, wide_block, parallel, factorized or doped, at the block's sparsity s.
Every member has the FLOPs of the dense layer it replaces, so every arch of the space has the dense network's
FLOPs (`flops_sparse`); the space searches how those FLOPs are spent. Stem, head and the 1×1 shortcuts (where
shape changes) stay dense (the authors' code also sparsifies the shortcuts).

Scopes (`scope`):
  block    (default) dims `b{i}.member` and `b{i}.sparsity` per block i (the sparsity is unused by `dense`).
           Members: dense, wide_block, parallel, factorized, doped.
  network  dims `member` and `sparsity`, one for the whole network — the paper's setting. Members: the block
           ones applied to every block, and `wide`, the paper's Sparse Wide.
Sparse Wide comes in two forms. `wide` (the paper's; network scope only) widens the whole network — stem
output, every stage width, head input — by √base, base = round(1/(1−s)), widths int(c·√base) as the authors'
`base_width`; stem, head and shortcuts stay dense, so the blocks' sparse layers keep one density, solved so
that the network's sparse FLOPs equal the dense network's (the authors binary-search one global sparsity to
1e-3; here closed form, then whole weights added where they fit: never above the dense FLOPs, and below by
less than the smallest layer's output positions). `wide_block` (ours) widens only a block's inner width
(unit1's output, unit2's input) — one side of each layer, so by base rather than √base — and each layer keeps
the dense layer's weight count, so blocks of different members combine. The other members are per layer in
the paper and are applied to both layers of a block, as the authors' blocks do.

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

import torch
from torch import nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..ops.channel_align import align_channel_masks
from ..ops.masks import mask_kind
from ..ops.accounting import count_layers
from ..ops.sparse import SparseMixin
from ..ops.sparse_ift import DenseUnit, LayerSpec, SparseUnit, Unit, base_scaling, make_unit
from ..schema import Field, count, counts, numbers, one_of
from ..space import Arch, Categorical, register_space
from .structures import structure_mask, structures_field
from .trained import TrainedSpace


@dataclass(frozen=True)
class BlockPlan:
    c_in: int
    c_out: int
    stride: int


UnitMaker = Callable[[LayerSpec, bool, bool], Unit]  # (dense layer, widen_in, widen_out) → its replacement


def member_units(member: str, sparsity: float, mask: str) -> UnitMaker:
    """The units of a block of `member` (a block-scope name: `wide_block` widens the block's inner width)."""
    op = "wide" if member == "wide_block" else member
    return lambda spec, widen_in, widen_out: make_unit(op, spec, sparsity, mask, widen_in, widen_out)


class IsoFlopBlock(nn.Module):
    """A residual block of two `kind` layers (conv 3×3 or linear), each replaced by the unit `units` makes."""

    def __init__(self, kind: str, plan: BlockPlan, units: UnitMaker):
        super().__init__()
        kernel = 3 if kind == "conv" else 1
        self.unit1 = units(LayerSpec(kind, plan.c_in, plan.c_out, kernel, plan.stride), False, True)
        self.unit2 = units(LayerSpec(kind, plan.c_out, plan.c_out, kernel, 1), True, False)
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


BLOCK_MEMBERS = ("dense", "wide_block", "parallel", "factorized", "doped")
SCOPE_MEMBERS = {"block": BLOCK_MEMBERS, "network": ("dense", "wide", *BLOCK_MEMBERS[1:])}


def _members_ok(v) -> bool:
    return v is None or (isinstance(v, list) and bool(v) and len(set(v)) == len(v))


@register_space("sparse_ift")
class SparseIFTSpace(TrainedSpace):
    options_schema = {
        "backbone": one_of("resnet", tuple(BACKBONES)),
        "scope": one_of("block", tuple(SCOPE_MEMBERS)),
        "C": count(8),
        "stages": counts([1, 1, 1]),
        "hidden": count(64),
        "mlp_blocks": count(2),
        "members": Field(None, (list, type(None)), _members_ok,
                         "must be null (every member of the scope) or a non-empty list of distinct members",
                         choices=SCOPE_MEMBERS["network"]),
        "sparsities": numbers([0.5, 0.75, 0.9], 0, 1, low_open=True, high_open=True),
        # mask_kind raises its own ConfigError for an unknown spec
        "mask": Field("random", (str,), lambda v: mask_kind(v).pattern == "unstructured",
                      "must be an unstructured mask (the iso-FLOP solve sets exact per-layer counts), e.g. random, "
                      "magnitude or scores"),
        "structures": structures_field(),
    }

    def __init__(self, **options):
        super().__init__(**options)
        o = self.options
        allowed = SCOPE_MEMBERS[o["scope"]]
        members = list(allowed) if o["members"] is None else o["members"]
        if "wide" in members and o["scope"] == "block":
            raise ConfigError("space.members: `wide` (the paper's Sparse Wide) widens the whole network: use "
                              "space.scope=network, or `wide_block` (a block widens its inner width)")
        unknown = [m for m in members if m not in allowed]
        if unknown:
            raise ConfigError(f"space.members: unknown member(s) {', '.join(map(str, unknown))} "
                              f"(known: {', '.join(allowed)})")
        nm = [x for x in o["structures"] if mask_kind(structure_mask(x, o["mask"])).pattern == "nm"]
        if nm:
            raise ConfigError(f"space.structures: {', '.join(nm)}: N:M fixes every layer's density at N/M, which "
                              f"the Sparse-IFT members' iso-FLOP counts cannot keep (use unstructured, channel)")
        sparsities = Categorical([float(x) for x in o["sparsities"]])
        structures = {"structure": Categorical(list(o["structures"]))} if len(o["structures"]) > 1 else {}
        self.backbone = BACKBONES[o["backbone"]]
        self.plan = self.backbone.plan(o)
        if o["scope"] == "network":
            self._dims = {"member": Categorical(members), "sparsity": sparsities, **structures}
        else:
            self._dims = {}
            for i in range(len(self.plan)):
                self._dims[f"b{i}.member"] = Categorical(members)
                self._dims[f"b{i}.sparsity"] = sparsities
                self._dims.update({f"b{i}.{k}": v for k, v in structures.items()})

    def dims(self):
        return dict(self._dims)

    def block_choices(self, arch: Arch) -> list[tuple[str, float]]:
        """(member, sparsity) of every block."""
        if self.options["scope"] == "network":
            return [(arch["member"], arch["sparsity"])] * len(self.plan)
        return [(arch[f"b{i}.member"], arch[f"b{i}.sparsity"]) for i in range(len(self.plan))]

    def block_masks(self, arch: Arch) -> list[str]:
        """The mask spec of every block: its structure's (`structures`), by default the `mask` option."""
        keys = ["structure"] * len(self.plan) if self.options["scope"] == "network" else \
            [f"b{i}.structure" for i in range(len(self.plan))]
        return [structure_mask(arch.get(k, "unstructured"), self.options["mask"]) for k in keys]

    def label(self, arch: Arch) -> str:
        def block(member, s, mask):
            channel = "ch" if mask == "channel" and member != "dense" else ""
            return member if member == "dense" else f"{member}@{channel}{s:g}"

        choices = list(zip(*zip(*self.block_choices(arch)), self.block_masks(arch)))
        if self.options["scope"] == "network":
            choices = choices[:1]
        return f"{self.options['backbone']}:" + ",".join(block(*c) for c in choices)

    def build(self, arch: Arch, input_shape, num_classes) -> nn.Module:
        if self.backbone.kind == "conv" and len(input_shape) != 3:
            raise ConfigError(f"space.backbone=resnet needs image inputs (C, H, W), got shape {tuple(input_shape)}; "
                              f"use space.backbone=mlp")
        choices, masks = self.block_choices(arch), self.block_masks(arch)
        if choices[0][0] == "wide":
            net = self._network_wide(choices[0][1], masks[0], tuple(input_shape), num_classes)
        else:
            net = self._network(self.options, [member_units(m, s, mask) for (m, s), mask in zip(choices, masks)],
                                tuple(input_shape), num_classes)
        align_channel_masks(net, torch.zeros(1, *input_shape))  # a residual add's branches keep the same channels
        return net

    def _network(self, o: dict, units: list[UnitMaker], input_shape, num_classes) -> "SparseIFTNet":
        plan = self.backbone.plan(o)
        blocks = [IsoFlopBlock(self.backbone.kind, p, u) for p, u in zip(plan, units)]
        stem = DenseUnit(self.backbone.stem(o, input_shape), 0.0, "")
        return SparseIFTNet(self.backbone.kind, stem, blocks, plan[-1].c_out, num_classes)

    def _network_wide(self, sparsity: float, mask: str, input_shape, num_classes) -> "SparseIFTNet":
        """The paper's Sparse Wide: every width × √base; the blocks' layers keep one density, solved so that the
        network's sparse FLOPs equal the dense network's (stem, head and shortcuts are dense, and widened)."""
        o, g = self.options, math.sqrt(base_scaling(sparsity))
        dense = self._network(o, [member_units("dense", 0.0, "")] * len(self.plan), input_shape, num_classes)
        budget = sum(row.flops for row in count_layers(dense, input_shape))
        wide = {**o, "C": int(o["C"] * g + 1e-9), "hidden": int(o["hidden"] * g + 1e-9)}
        keep_all: UnitMaker = lambda spec, widen_in, widen_out: SparseUnit(spec, spec.weights, mask)  # noqa: E731
        net = self._network(wide, [keep_all] * len(self.plan), input_shape, num_classes)
        modules = dict(net.named_modules())
        rows = [(modules[row.name], row) for row in count_layers(net, input_shape)]
        fixed = sum(row.flops for m, row in rows if not isinstance(m, SparseMixin))
        sparse = sum(row.flops for m, row in rows if isinstance(m, SparseMixin))
        density = (budget - fixed) / sparse
        if not 0 < density < 1:
            raise ConfigError(f"space.scope=network: wide@{sparsity:g} leaves no FLOPs for the sparse layers: the "
                              f"widened dense stem, head and shortcuts take {fixed} of the dense network's {budget}")
        layers = [(m, row.weights, row.flops // row.weights) for m, row in rows if isinstance(m, SparseMixin)]
        kept = [max(1, int(density * n)) for _, n, _ in layers]
        left = budget - fixed - sum(k * p for k, (_, _, p) in zip(kept, layers))
        for i in sorted(range(len(layers)), key=lambda i: -layers[i][2]):  # fill the rest, largest positions first
            extra = min(layers[i][1] - kept[i], max(0, left) // layers[i][2])
            kept[i] += extra
            left -= extra * layers[i][2]
        for (m, n, _), k in zip(layers, kept):
            m.keep = k / n
        return net
