"""Group-aligned channel masks: coupled layers (joined by residual adds, DARTS node sums) keep the same channels,
each its own count, so export removes them; with per-layer masks an add keeps the union."""
import model_zoo  # noqa: F401 — the model space resolves its factories in this module
import numpy as np
import pytest
import torch
from torch import nn

from sparsenas.ops import SparseConv2d, SparseLinear
from sparsenas.ops.channel_align import align_channel_masks
from sparsenas.ops.channel_removal import StaticMap
from sparsenas.ops.deploy import to_deployable
from sparsenas.spaces.dass import DassSpace
from sparsenas.spaces.model import ModelSpace
from test_deploy_channels import _randomise_bn


def conv(c_in, c_out, k=3, keep=0.5, **kw):
    return SparseConv2d(c_in, c_out, k, padding=k // 2, bias=False, keep=keep, mask_mode="channel", **kw)


class ResBlock(nn.Module):
    """stem → BN → ReLU, then a basic block (c1, c2) whose output is added to the stem's; c2 keeps 75%."""

    def __init__(self, c=16):
        super().__init__()
        self.stem, self.bn0 = conv(3, c), nn.BatchNorm2d(c)
        self.c1, self.b1 = conv(c, c), nn.BatchNorm2d(c)
        self.c2, self.b2 = conv(c, c, keep=0.75), nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(x)))
        x = torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + x)
        return self.fc(x.mean((2, 3)))


class CellSum(nn.Module):
    """A DARTS-like cell: two preprocessed inputs, node n0 = sep-conv-like(p0) + p1, node n1 = conv(n0) +
    max pool(p0); the cell's output concatenates the nodes and feeds a 1×1 conv."""

    def __init__(self, c=16):
        super().__init__()
        self.pre0 = nn.Sequential(nn.ReLU(), conv(3, c, 1), nn.BatchNorm2d(c))
        self.pre1 = nn.Sequential(nn.ReLU(), conv(3, c, 1), nn.BatchNorm2d(c))
        self.sep = nn.Sequential(nn.ReLU(), conv(c, c, 3, groups=c), conv(c, c, 1), nn.BatchNorm2d(c))
        self.op = nn.Sequential(nn.ReLU(), conv(c, c), nn.BatchNorm2d(c))
        self.post = nn.Sequential(nn.ReLU(), nn.Conv2d(2 * c, c, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  SparseLinear(c, 10))

    def forward(self, x):
        p0, p1 = self.pre0(x), self.pre1(x)
        n0 = self.sep(p0) + p1
        n1 = self.op(n0) + nn.functional.max_pool2d(p0, 3, 1, 1)
        return self.post(torch.cat([n0, n1], 1))


def kept(layer) -> set[int]:
    return set(layer.mask().flatten(1).amax(1).nonzero().flatten().tolist())


def inner(m):
    return m.inner if isinstance(m, StaticMap) else m


def test_resnet_block_members_share_channels_and_export_is_half_as_wide():
    torch.manual_seed(0)
    model = ResBlock()
    counts = {n: len(kept(m)) for n, m in model.named_modules() if isinstance(m, SparseConv2d)}
    x = torch.randn(2, 3, 10, 10)
    assert align_channel_masks(model, x) == [["stem", "c2"]]
    assert {n: len(kept(m)) for n, m in model.named_modules() if isinstance(m, SparseConv2d)} == counts
    assert kept(model.stem) < kept(model.c2)  # nested: the group's ranking, each its own count (8 of 12)
    _randomise_bn(model)
    dep, plan = to_deployable(model, x, csr="never")
    assert (dep(x) - model(x)).abs().max().item() < 1e-4
    # the add keeps c2's 12 channels (not the ~14 of the union of two independent masks)
    assert (dep.stem.out_channels, inner(dep.c1).in_channels, dep.fc.in_features) == (12, 12, 12)
    assert (inner(dep.c1).out_channels, inner(dep.c2).in_channels, inner(dep.c2).out_channels) == (8, 8, 12)


def test_darts_cell_sums_share_channels_and_every_conv_is_half_as_wide():
    torch.manual_seed(0)
    model = CellSum()
    x = torch.randn(2, 3, 8, 8)
    groups = align_channel_masks(model, x)
    assert sorted(map(sorted, groups)) == [["op.1", "pre0.1"], ["pre1.1", "sep.2"]]
    for names in groups:
        assert len({frozenset(kept(model.get_submodule(n))) for n in names}) == 1
    _randomise_bn(model)
    dep, plan = to_deployable(model, x, csr="never")
    assert (dep(x) - model(x)).abs().max().item() < 1e-4
    for name in ("pre0.1", "pre1.1", "sep.2", "op.1"):
        assert inner(dep.get_submodule(name)).out_channels == 8
    assert inner(dep.op[1]).in_channels == 8 and inner(dep.post[1]).in_channels == 16  # the cat of two halves


def test_dass_space_builds_aligned_channel_cells():
    space = DassSpace(C=4, layers=3, mask="channel", keep_ratios=[0.5], stem_head_keep=0.5)
    torch.manual_seed(0)
    model = _randomise_bn(space.build(space.sample(np.random.default_rng(0)), (1, 8, 8), 10))
    x = torch.randn(2, 1, 8, 8)
    dep, plan = to_deployable(model, x, csr="never")
    assert (dep(x) - model(x)).abs().max().item() < 1e-4
    pointwise = {n: e for n, e in plan.items() if e.get("shape", [0, 0, 0])[2:] == [1, 1] and "kept_in" in e}
    assert len(pointwise) > 10
    for name, e in pointwise.items():  # every node sum and cell output kept half: so does every 1×1 conv's input
        if name.split(".")[-2] in ("pre0", "pre1"):
            assert len(e["kept_in"]) == e["shape"][1] // 2, name
        assert len(e["kept_out"]) == e["shape"][0] // 2, name


@pytest.mark.parametrize("prune", ["magnitude", "random"])
def test_model_space_resnet_channels_are_aligned(prune):
    space = ModelSpace(factory="model_zoo:resnet18", factory_kwargs={"width": 4}, group_by="block",
                       structures=["channel"], target_sparsity=0.5, skip=["fc"], prune=prune)
    torch.manual_seed(0)
    model = space.build(space.sample(np.random.default_rng(0)), (1, 16, 16), 4)
    stage = [model.get_submodule(n) for n in ("conv1", "layer1.0.conv2", "layer1.1.conv2")]
    sets = [kept(m) for m in stage if isinstance(m, SparseConv2d) and not m.dense]
    assert len(sets) >= 2 and all(a <= b or b <= a for a in sets for b in sets)  # nested: one ranking
