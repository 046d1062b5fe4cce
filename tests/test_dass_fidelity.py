"""DASS as its authors wrote it: the supernet's norms (non-affine BN in the cells, BN after pooling ops)."""
import numpy as np
import torch
from torch import nn

from sparsenas.spaces.dass import DassSpace
from sparsenas.spaces.dass_supernet import DassSupernet, MixedOp


def test_supernet_cells_use_non_affine_bn_and_bn_after_pooling():
    net = DassSupernet((1, 8, 8), 10, C=4, layers=3, stem_multiplier=3, ops=["max_pool_3x3", "avg_pool_3x3",
                                                                               "skip_connect", "sep_conv_3x3"])
    cell_bns = [m for m in net.net.cells.modules() if isinstance(m, nn.BatchNorm2d)]
    assert cell_bns and not any(bn.affine for bn in cell_bns)
    assert net.net.stem[1].affine  # the stem's BN keeps its affine parameters, as the authors'
    for edge in (m for m in net.modules() if isinstance(m, MixedOp)):
        pools = edge.ops[:2]  # max_pool_3x3, avg_pool_3x3
        assert all(isinstance(op, nn.Sequential) and isinstance(op[0], (nn.MaxPool2d, nn.AvgPool2d))
                   and isinstance(op[1], nn.BatchNorm2d) and not op[1].affine for op in pools)
    assert not any(n.endswith(("bn.weight", "bn.bias")) for n, _ in net.net.cells.named_parameters())
    net(torch.randn(4, 1, 8, 8)).sum().backward()


def test_derived_network_keeps_affine_bn():
    space = DassSpace(C=4)
    net = space.build(space.sample(np.random.default_rng(0)), (1, 8, 8), 10)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(bn.affine for bn in bns)
