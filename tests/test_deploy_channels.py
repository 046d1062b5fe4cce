"""Dependency-aware channel removal: exported outputs match the masked model for every mask structure on a
DARTS cell network, a ResNet basic block and a MobileNetV2 inverted residual; producers and consumers shrink."""
import model_zoo  # noqa: F401 — the model space resolves its factories in this module
import numpy as np
import pytest
import torch
from torch import nn

from sparsenas.ops import SparseConv2d, SparseLinear
from sparsenas.ops.channel_removal import GatherDepthwise, StaticMap
from sparsenas.ops.deploy import to_deployable
from sparsenas.spaces.dass import DassSpace
from sparsenas.spaces.model import ModelSpace

STRUCTURES = [("channel", 0.5), ("magnitude", 0.1), ("scores", 0.3), ("random", 0.2)]


def conv(c_in, c_out, k, mode, keep, **kw):
    return SparseConv2d(c_in, c_out, k, padding=k // 2, keep=keep, mask_mode=mode, **kw)


class BasicBlock(nn.Module):
    """ResNet basic block (identity shortcut) between a stem and a linear head."""

    def __init__(self, mode, keep, c=16):
        super().__init__()
        self.stem, self.bn0 = conv(3, c, 3, mode, keep), nn.BatchNorm2d(c)
        self.c1, self.b1 = conv(c, c, 3, mode, keep, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = conv(c, c, 3, mode, keep, bias=False), nn.BatchNorm2d(c)
        self.fc = SparseLinear(c, 10, keep=keep, mask_mode=mode)

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(x)))
        x = torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + x)
        return self.fc(x.mean((2, 3)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expand, 3×3 depthwise, 1×1 project, residual add."""

    def __init__(self, mode, keep, c=16, expand=4):
        super().__init__()
        h = c * expand
        self.stem = nn.Sequential(conv(3, c, 3, mode, keep), nn.BatchNorm2d(c), nn.ReLU6())
        self.block = nn.Sequential(conv(c, h, 1, mode, keep, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                                   conv(h, h, 3, mode, keep, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                                   conv(h, c, 1, mode, keep, bias=False), nn.BatchNorm2d(c))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), SparseLinear(c, 10, keep=keep, mask_mode=mode))

    def forward(self, x):
        x = self.stem(x)
        return self.head(x + self.block(x))


def dass_net(mode, keep):
    space = DassSpace(C=4, layers=3, mask=mode, keep_ratios=[keep])
    return space.build(space.sample(np.random.default_rng(0)), (1, 12, 12), 10)


def _randomise_bn(model):
    """Non-trivial BN statistics and affine parameters, so that removed channels carry non-zero constants."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-1, 1)
    return model.eval()


NETS = {"dass": (dass_net, (4, 1, 12, 12)), "resnet": (BasicBlock, (4, 3, 10, 10)),
        "mobilenetv2": (InvertedResidual, (4, 3, 10, 10))}


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("mode,keep", STRUCTURES)
def test_exported_matches_masked_for_every_structure(net, mode, keep):
    torch.manual_seed(0)
    make, shape = NETS[net]
    model = _randomise_bn(make(mode, keep))
    x = torch.randn(*shape)
    dep, plan = to_deployable(model, x, csr="always")  # untimed: the planner has its own tests
    assert (dep(x) - model(x)).abs().max().item() < 1e-4
    assert all(e["action"] != "channel" for e in plan.values())  # removal worked, no scatter fallback
    fresh, _ = to_deployable(make(mode, keep), plan=plan)  # the saved structure rebuilds and loads
    fresh.load_state_dict(dep.state_dict())
    assert (fresh.eval()(x) - model(x)).abs().max().item() < 1e-4
    if mode == "channel":
        macs = [e for e in plan.values() if "kept_out" in e]
        assert macs, "channel masks removed nothing"


def test_resnet_block_keeps_the_union_of_channels_across_the_residual_add():
    torch.manual_seed(0)
    model = _randomise_bn(BasicBlock("channel", 0.5))
    dep, plan = to_deployable(model, torch.randn(2, 3, 10, 10))
    stem_kept, c2_kept = set(plan["stem"]["kept_out"]), set(plan["c2"]["kept_out"])
    assert stem_kept == c2_kept == set(plan["b2"]["kept_out"]) == set(plan["fc"]["kept_in"])
    live = lambda m: set(m.mask().flatten(1).amax(1).nonzero().flatten().tolist())  # noqa: E731
    assert stem_kept == live(model.stem) | live(model.c2) and len(stem_kept) < 16  # union, not more
    c1, c2 = (m.inner if isinstance(m, StaticMap) else m for m in (dep.c1, dep.c2))
    assert c1.out_channels == 8 and c2.in_channels == 8  # inside the block: the producer's mask alone
    assert c1.in_channels == len(stem_kept) and dep.fc.in_features == len(stem_kept)


def test_mobilenet_block_shrinks_expand_depthwise_and_project():
    torch.manual_seed(0)
    model = _randomise_bn(InvertedResidual("channel", 0.5))
    dep, plan = to_deployable(model, torch.randn(2, 3, 10, 10))
    expand, dw, project = dep.block[0], dep.block[3], dep.block[6]
    project = project.inner if isinstance(project, StaticMap) else project
    assert expand.out_channels == 32 and len(plan["block.1"]["kept_out"]) == 32  # the BN sliced (then folded)
    # the depthwise conv's own empty filters go too: it gathers the live ones from the 32 expanded channels
    kept_filters = set(plan["block.0"]["kept_out"]) & set(
        model.block[3].mask().flatten(1).amax(1).nonzero().flatten().tolist())
    assert isinstance(dw, GatherDepthwise) and dw.conv.groups == dw.conv.out_channels == len(kept_filters) < 32
    assert project.in_channels == len(plan["block.4"]["kept_out"]) == len(kept_filters)


def test_removed_channels_with_constant_values_are_folded_into_the_consumer():
    """A masked filter's channel after BN is the constant BN shift (≠ 0): dropping it needs the fold."""
    torch.manual_seed(0)
    model = nn.Sequential(SparseConv2d(3, 8, 1, keep=0.5, mask_mode="channel"), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 4, 3, padding=1), nn.Conv2d(4, 4, 1), nn.Flatten(), nn.Linear(4 * 25, 3))
    _randomise_bn(model)
    x = torch.randn(3, 3, 5, 5)
    dep, plan = to_deployable(model, x)
    assert isinstance(dep[3], StaticMap) and plan["3"]["static"] == "map"  # zero padding: varies at the borders
    assert dep[3].inner.in_channels == 4 and (dep(x) - model(x)).abs().max().item() < 1e-4
    with pytest.raises(ValueError, match="export at the input size"):
        dep(torch.randn(1, 3, 6, 6))


def test_untraceable_model_falls_back_and_says_why():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = SparseConv2d(3, 8, 3, padding=1, keep=0.5, mask_mode="channel")
            self.b = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            y = self.a(x)
            return self.b(y if y.sum() > 0 else -y)

    torch.manual_seed(0)
    model = DataDependent().eval()
    x = torch.randn(2, 3, 6, 6)
    dep, plan = to_deployable(model, x)
    assert plan["a"]["action"] == "channel" and "channel removal failed" in plan["a"]["note"]
    assert (dep(x) - model(x)).abs().max().item() < 1e-5


@pytest.mark.parametrize("factory,kwargs", [("resnet18", {"width": 4}),
                                            ("mobilenet_v2", {"width_mult": 0.25, "last": 32})])
def test_model_space_networks_lose_their_masked_channels_exactly(factory, kwargs):
    """The `model` space's user networks (ResNet-18, MobileNetV2 of tests/model_zoo.py) with channel masks."""
    space = ModelSpace(factory=f"model_zoo:{factory}", factory_kwargs=kwargs, group_by="block",
                       structures=["channel"], target_sparsity=0.5)
    torch.manual_seed(0)
    model = _randomise_bn(space.build(space.sample(np.random.default_rng(0)), (1, 28, 28), 4))
    x = torch.randn(2, 1, 28, 28)
    dep, plan = to_deployable(model, x, csr="never")
    assert (dep(x) - model(x)).abs().max().item() < 1e-4
    assert sum("kept_in" in e for e in plan.values()) > 10 and not any(e.get("note") for e in plan.values())
