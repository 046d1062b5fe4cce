"""BatchNorm folding at deploy: a BN that alone reads a conv's output becomes part of the conv (same outputs,
the saved structure rebuilds); a BN whose conv output is read elsewhere, or one in training mode, stays."""
import torch
from torch import nn

from sparsenas.ops import SparseConv2d
from sparsenas.ops.bn_fold import fold_batchnorms
from sparsenas.ops.channel_removal import StaticMap
from sparsenas.ops.deploy import to_deployable
from test_deploy_channels import _randomise_bn


class Net(nn.Module):
    """conv → BN (foldable, the conv channel-masked so that removal leaves a StaticMap), a depthwise conv → BN
    (foldable), and a conv whose output is also added after its BN (not foldable)."""

    def __init__(self):
        super().__init__()
        self.a = SparseConv2d(3, 8, 3, padding=1, keep=0.5, mask_mode="channel")
        self.bn_a = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn_dw = nn.BatchNorm2d(8)
        self.c = nn.Conv2d(8, 8, 1)
        self.bn_c = nn.BatchNorm2d(8)

    def forward(self, x):
        y = torch.relu(self.bn_a(self.a(x)))
        y = self.bn_dw(self.dw(torch.relu(self.bn_b(self.b(y)))))
        z = self.c(y)
        return self.bn_c(z) + z


def test_foldable_bns_fold_and_outputs_match():
    torch.manual_seed(0)
    model = _randomise_bn(Net())
    x = torch.randn(2, 3, 6, 6)
    dep, plan = to_deployable(model, x, csr="never")
    assert (dep(x) - model(x)).abs().max().item() < 1e-4
    assert {n: e["fold"] for n, e in plan.items() if "fold" in e} == {"a": "bn_a", "b": "bn_b", "dw": "bn_dw"}
    assert plan["b"]["action"] == "slice" and isinstance(dep.bn_b, nn.Identity)
    assert isinstance(dep.b, StaticMap) and isinstance(dep.bn_c, nn.BatchNorm2d)  # z is read twice: bn_c stays
    fresh, _ = to_deployable(Net(), plan=plan)  # the saved structure rebuilds and loads
    fresh.load_state_dict(dep.state_dict())
    assert (fresh.eval()(x) - model(x)).abs().max().item() < 1e-4


def test_training_mode_and_untraceable_models_keep_their_bns():
    torch.manual_seed(0)
    model = Net().train()
    assert fold_batchnorms(model) == {} and isinstance(model.bn_a, nn.BatchNorm2d)

    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv(x if x.sum() > 0 else -x))

    model = DataDependent().eval()
    assert fold_batchnorms(model) == {} and isinstance(model.bn, nn.BatchNorm2d)
