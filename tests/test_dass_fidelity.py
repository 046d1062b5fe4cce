"""DASS as its authors wrote it: the supernet's norms (non-affine BN in the cells, BN after pooling ops), and a
per-layer allocation (ERK) that spares the tiny depthwise kernels a uniform keep ratio wipes out."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from sparsenas.ops import SparseMixin
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


def _keeps(net):
    layers = [m for m in net.modules() if isinstance(m, SparseMixin)]
    return layers, sum(int(m.mask().sum()) for m in layers) / sum(m.weight.numel() for m in layers)


@pytest.mark.parametrize("stem_head_keep", [None, 0.5])
def test_erk_allocation_keeps_the_overall_density_and_spares_depthwise_kernels(stem_head_keep):
    arch = DassSpace().sample(np.random.default_rng(3)).replace(**{"normal.keep": 0.1, "reduce.keep": 0.1})
    arch = arch.replace(**{"normal.n0.op0": "sep_conv_3x3"})
    uniform = DassSpace(allocation="uniform", stem_head_keep=stem_head_keep).build(arch, (1, 8, 8), 10)
    erk = DassSpace(allocation="erk", stem_head_keep=stem_head_keep).build(arch, (1, 8, 8), 10)
    (u_layers, u_density), (e_layers, e_density) = _keeps(uniform), _keeps(erk)
    assert abs(u_density - e_density) < 0.005  # the same overall sparsity
    depthwise = [m for m in e_layers if getattr(m, "groups", 1) > 1]
    pointwise = [m for m in e_layers if m.weight.shape[2:] == (1, 1) and m.groups == 1]
    # >= 3 weights per depthwise kernel on average (uniform at 0.1: 0.9 of a 3x3, 2.5 of a 5x5 kernel)
    assert depthwise and all(int(m.mask().sum()) >= 3 * m.weight.shape[0] for m in depthwise)
    assert all(int(m.mask().sum()) < 0.1 * m.weight.numel() for m in pointwise if m.weight.numel() > 500)
    assert uniform.stem[0].keep == (0.1 if stem_head_keep is None else 0.5)  # uniform: the authors' one ratio
    assert all(abs(m.keep - 0.1) < 1e-9 for m in u_layers if m not in (uniform.stem[0], uniform.classifier))
    if stem_head_keep is not None:  # pinned
        assert erk.stem[0].keep == erk.classifier.keep == 0.5


def test_supernet_prunes_to_the_spaces_allocation():
    from sparsenas.config import CORE
    from sparsenas.space import EvalContext

    data = {k: f.default for k, f in CORE["data"].items()} | {"limit": 64}
    context = EvalContext(train={k: f.default for k, f in CORE["train"].items()}, data=data)
    search = DassSpace(C=4, allocation="erk").supernet_search(context, 0, {"keep": 0.1, "batch_size": 32})
    search._enter("prune")
    layers, density = _keeps(search.model.net)
    assert abs(density - 0.1) < 0.005 and len({round(m.keep, 6) for m in layers}) > 3
    depthwise = {m.weight.shape[-1]: m.keep for m in layers if getattr(m, "groups", 1) > 1}
    assert depthwise[5] > 0.1 and depthwise[3] > 0.2  # spared: uniform keeps every layer at 0.1


def _search(**options):
    from sparsenas.config import CORE
    from sparsenas.space import EvalContext

    data = {k: f.default for k, f in CORE["data"].items()} | {"limit": 64}
    context = EvalContext(train={k: f.default for k, f in CORE["train"].items()}, data=data)
    return DassSpace(C=4).supernet_search(context, 0, {"batch_size": 32, **options})


def test_lr_restarts_per_phase_as_the_authors():
    ours = _search(pretrain_epochs=2, prune_epochs=1, finetune_epochs=2)
    assert [round(ours.lr_at(e), 4) for e in range(5)] == [0.025, round(0.001 + 0.012 * (1 + 2 ** -0.5), 4), 0.1,
                                                           0.013, round(0.001 + 0.012 * (1 - 2 ** -0.5), 4)]
    theirs = _search(pretrain_epochs=4, prune_epochs=2, finetune_epochs=4, lr_restarts=True)
    lrs = [theirs.lr_at(e) for e in range(10)]
    assert lrs[0] == lrs[6] == 0.025 and lrs[4] == 0.1  # every phase starts again from its lr
    assert lrs[5] == pytest.approx(0.001 + 0.099 * 0.5 * (1 + math.cos(math.pi / 4)))  # prune over T = 4 epochs
    assert lrs[3] == lrs[9] == pytest.approx(0.001 + 0.024 * 0.5 * (1 + math.cos(3 * math.pi / 4)))


def test_dass_authors_preset_sets_their_optimisers():
    from sparsenas.assemble import resolve
    from sparsenas.config import load_preset
    from sparsenas.space import SPACES
    from sparsenas.strategies import STRATEGIES

    cfg = resolve([load_preset("space", "dass", SPACES), load_preset("strategy", "dass_authors", STRATEGIES)])
    options = cfg["strategy"]["options"]
    search = _search(**{**options, "pretrain_epochs": 2, "prune_epochs": 1, "finetune_epochs": 2})
    assert search.w_opt.defaults["momentum"] == search.s_opt.defaults["momentum"] == 0.0
    assert search.w_opt.defaults["weight_decay"] == search.s_opt.defaults["weight_decay"] == 1e-3
    assert (options["pretrain_epochs"], options["prune_epochs"], options["finetune_epochs"]) == (6, 3, 6)
    search.run_epoch(2)  # prune: the score optimiser runs at the phase's scheduled lr
    assert search.s_opt.param_groups[0]["lr"] == search.lr_at(2) == 0.1


def test_the_derived_arch_trains_longer_than_a_multi_trial_search():
    """The differentiable preset trains its one derived arch 24 epochs (a random search's trials: the space's 8)."""
    from sparsenas.assemble import resolve
    from sparsenas.config import load_preset, parse_override
    from sparsenas.space import SPACES
    from sparsenas.strategies import STRATEGIES

    space = load_preset("space", "dass", SPACES)
    assert resolve([space, load_preset("strategy", "random", STRATEGIES)])["train"]["epochs"] == 8
    assert resolve([space, load_preset("strategy", "differentiable", STRATEGIES)])["train"]["epochs"] == 24
    assert resolve([space, load_preset("strategy", "differentiable", STRATEGIES),
                    parse_override("train.epochs=3")])["train"]["epochs"] == 3
