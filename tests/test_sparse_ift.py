"""Sparse-IFT: iso-FLOP family members (conv and linear), exact accounting, the space and an end-to-end search."""
import json
from fractions import Fraction
from math import ceil, floor

import pytest
import torch

from conftest import FAST, cli
from sparsenas.errors import ConfigError
from sparsenas.ops import SparseMixin, count_model
from sparsenas.ops.sparse_ift import (LayerSpec, base_scaling, doped_rank, factorized_rank, make_unit, split_kept,
                                      wide_widths)
from sparsenas.space import Arch
from sparsenas.spaces.sparse_ift import SparseIFTSpace

SPARSITIES = [0.5, 0.75, 0.9]
SPECS = {  # (layer, input shape without channels)
    "conv3x3": (LayerSpec("conv", 12, 20, 3, 1), (7, 7)),
    "conv3x3_stride2": (LayerSpec("conv", 16, 24, 3, 2), (9, 9)),
    "linear": (LayerSpec("linear", 40, 24), ()),
}
MEMBER_CASES = [("wide", (False, True)), ("wide", (True, False)), ("wide", (True, True)),
                ("parallel", (False, False)), ("factorized", (False, False)), ("doped", (False, False))]


def counts(unit, spatial):
    return count_model(unit, (unit.in_features, *spatial))


@pytest.mark.parametrize("spec_name", SPECS)
@pytest.mark.parametrize("member,widen", MEMBER_CASES)
@pytest.mark.parametrize("s", SPARSITIES)
def test_every_member_has_the_flops_of_the_dense_layer(spec_name, member, widen, s):
    spec, spatial = SPECS[spec_name]
    torch.manual_seed(0)
    dense = counts(make_unit("dense", spec, s), spatial)
    unit = make_unit(member, spec, s, widen_in=widen[0], widen_out=widen[1])
    m = counts(unit, spatial)
    assert abs(m["flops_sparse"] / dense["flops"] - 1) < 0.01
    assert m["flops"] > 1.4 * dense["flops"]  # a real transformation: more dense compute, made sparse
    if member == "wide":  # the solve: keep exactly the dense layer's weight count in the widened layer
        c_in, c_out = wide_widths(spec, s, *widen)
        assert m["sparsity"] == pytest.approx(1 - spec.c_in * spec.c_out / (c_in * c_out))
    if member in ("parallel", "factorized") or (member == "wide" and widen != (True, True)):
        assert abs(m["sparsity"] - s) < 0.03  # (doped's dense U·V take part of the FLOPs: its W is denser)


@pytest.mark.parametrize("s", SPARSITIES)
def test_shapes_follow_the_authors_formulas(s):
    spec = LayerSpec("conv", 16, 32, 3)
    base = round(1 / (1 - s))
    assert base_scaling(s) == base and [base_scaling(x) for x in SPARSITIES] == [2, 4, 10]
    assert wide_widths(spec, s, False, True) == (16, 32 * base)
    assert wide_widths(spec, s, True, True) == (int(16 * base ** 0.5), int(32 * base ** 0.5))
    assert len(make_unit("parallel", spec, s).branches) == base
    q = Fraction(str(s))  # exact arithmetic: the formulas' values, free of float rounding
    d = factorized_rank(spec, s)
    assert d == ceil(Fraction(9 * 16 * 32) / ((1 - q) * (9 * 16 + 32)))
    r = doped_rank(spec, s)
    assert r == floor(q * 9 * 16 * 32 / (9 * 16 + 32))
    f = make_unit("factorized", spec, s)
    assert f.u.weight.shape == (d, 16, 3, 3) and f.v.weight.shape == (32, d, 1, 1)
    doped = make_unit("doped", spec, s)
    assert doped.u.weight.shape == (r, 16, 3, 3) and doped.v.weight.shape == (32, r, 1, 1)
    assert not isinstance(doped.u, SparseMixin) and isinstance(doped.w, SparseMixin)
    lin = LayerSpec("linear", 30, 20)
    assert factorized_rank(lin, s) == ceil(Fraction(30 * 20) / ((1 - q) * 50))
    assert doped_rank(lin, s) == floor(q * 30 * 20 / 50)


def test_hand_checked_counts():
    # doped 3x3 conv 4 -> 4 at s=0.5: r = floor(0.5*144/40) = 1; U 36, V 4 dense; W keeps 144 - 40 = 104
    doped = make_unit("doped", LayerSpec("conv", 4, 4, 3), 0.5)
    m = count_model(doped, (4, 5, 5))
    assert m == {"params": 144 + 36 + 4 + 8, "nnz": 104 + 40 + 8, "flops": 25 * (144 + 40),
                 "flops_sparse": 25 * 144, "sparsity": pytest.approx(1 - 104 / 144)}
    # factorized linear 8 -> 8 at s=0.5: d = 64 / (0.5*16) = 8; U, V 64 weights each, 32 kept each; BN(d) between
    fac = make_unit("factorized", LayerSpec("linear", 8, 8), 0.5)
    assert fac.rank == 8 and int(fac.u.mask().sum()) == int(fac.v.mask().sum()) == 32
    assert count_model(fac, (8,)) == {"params": 128 + 16 + 16, "nnz": 64 + 16 + 16, "flops": 128,
                                      "flops_sparse": 64, "sparsity": 0.5}
    # parallel linear 5 -> 3 at s=0.75: 4 branches of 15 weights keep 4+4+4+3 = 15, four BNs of 3
    par = make_unit("parallel", LayerSpec("linear", 5, 3), 0.75)
    assert sorted(int(b.mask().sum()) for b in par.branches) == [3, 4, 4, 4]
    assert count_model(par, (5,)) == {"params": 60 + 24, "nnz": 15 + 24, "flops": 60, "flops_sparse": 15,
                                      "sparsity": 0.75}


def test_hand_checked_networks():
    # mlp, input 20, hidden 8, one block factorized@0.5 (d = 64 / (0.5*16) = 8, U and V 64 weights, 32 kept each)
    space = SparseIFTSpace(backbone="mlp", hidden=8, mlp_blocks=1)
    arch = Arch({"b0.member": "factorized", "b0.sparsity": 0.5})
    m = count_model(space.build(arch, (20,), 3), (20,))
    stem, unit, head = 160 + 16, 128 + 16 + 16, 24 + 3  # weights (+ BN affine of U's BN and the output BN / bias)
    assert m == {"params": stem + 2 * unit + head, "nnz": stem + 2 * (64 + 16 + 16) + head,
                 "flops": 160 + 2 * 128 + 24, "flops_sparse": 160 + 2 * 64 + 24, "sparsity": 0.5}
    # resnet C=2, one stage of one block, input 1x4x4, wide@0.5: inner width 4, each conv 72 weights, 36 kept
    space = SparseIFTSpace(C=2, stages=[1])
    arch = Arch({"b0.member": "wide_block", "b0.sparsity": 0.5})
    m = count_model(space.build(arch, (1, 4, 4), 3), (1, 4, 4))
    assert m == {"params": 18 + 4 + (72 + 8) + (72 + 4) + 9, "nnz": 18 + 4 + (36 + 8) + (36 + 4) + 9,
                 "flops": 16 * 18 + 16 * 2 * 72 + 6, "flops_sparse": 16 * 18 + 16 * 2 * 36 + 6, "sparsity": 0.5}
    dense = count_model(space.build(arch.replace(**{"b0.member": "dense"}), (1, 4, 4), 3), (1, 4, 4))
    assert dense["flops"] == m["flops_sparse"] and dense["params"] == 18 + 4 + 2 * (36 + 4) + 9


@pytest.mark.parametrize("spec", [LayerSpec("conv", 6, 10, 3, 2), LayerSpec("linear", 12, 7)])
def test_factorized_has_bn_and_relu_between_u_and_v(spec):
    """The authors' `uv_layer: nonlinear_relu`: V sees ReLU(BN(U x)), and the unit is that composition exactly."""
    torch.manual_seed(0)
    fac = make_unit("factorized", spec, 0.75).train()
    seen = []
    fac.v.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    x = torch.randn(16, spec.c_in, *((5, 5) if spec.kind == "conv" else ()))
    out = fac(x)
    assert fac.u_norm.num_features == fac.rank
    hidden = torch.relu(torch.nn.functional.batch_norm(fac.u(x), None, None, training=True))
    torch.testing.assert_close(seen[0], hidden)  # BN with batch statistics, then ReLU: half the entries are 0
    assert 0.3 < float((seen[0] == 0).float().mean()) < 0.7
    torch.testing.assert_close(out, fac.norm(fac.v(hidden)))


def test_split_kept_is_exact_and_uniform():
    assert split_kept(10, [10, 10, 10, 10]) == [3, 3, 2, 2]
    assert sum(split_kept(1234, [1000, 333, 7])) == 1234
    with pytest.raises(ValueError):
        split_kept(11, [5, 5])


def tiny_space(**options):
    return SparseIFTSpace(C=4, stages=[1, 1], hidden=16, **options)


def uniform_arch(space, member, s=0.75):
    if space.options["scope"] == "network":
        return Arch({"member": member, "sparsity": s})
    n = len(space.plan)
    return Arch({**{f"b{i}.member": member for i in range(n)}, **{f"b{i}.sparsity": s for i in range(n)}})


@pytest.mark.parametrize("backbone,shape", [("resnet", (1, 8, 8)), ("mlp", (1, 8, 8)), ("mlp", (20,))])
@pytest.mark.parametrize("member", ["dense", "wide_block", "parallel", "factorized", "doped", "wide"])
def test_network_builds_trains_and_is_iso_flop(backbone, shape, member):
    # the paper's wide widens the dense stem too: a net needs enough blocks to pay for it (else a ConfigError)
    network = {"scope": "network", "mlp_blocks": 6} if member == "wide" else {}
    space = tiny_space(backbone=backbone, **network)
    torch.manual_seed(0)
    dense = count_model(space.build(uniform_arch(space, "dense"), shape, 5), shape)
    net = space.build(uniform_arch(space, member), shape, 5)
    m = count_model(net, shape)
    assert abs(m["flops_sparse"] / dense["flops"] - 1) < 0.01 and m["flops_sparse"] <= dense["flops"]
    x = torch.randn(6, *shape)
    net.train()
    out = net(x)
    assert out.shape == (6, 5)
    out.square().sum().backward()
    sparse = [mod for mod in net.modules() if isinstance(mod, SparseMixin)]
    assert bool(sparse) == (member != "dense")
    for layer in sparse:  # static mask: pruned weights get no gradient, kept ones do
        pruned = layer.mask() == 0
        assert layer.weight.grad[pruned].abs().sum() == 0 and layer.weight.grad[~pruned].abs().sum() > 0
    assert all(p.grad is not None for n, p in net.named_parameters() if not n.endswith("scores"))


def test_stem_head_and_shortcuts_stay_dense():
    space = tiny_space()
    net = space.build(uniform_arch(space, "factorized", 0.9), (1, 8, 8), 10)
    assert not any(isinstance(m, SparseMixin) for m in [*net.stem.modules(), net.head])
    assert not any(isinstance(m, SparseMixin) for m in net.blocks[1].shortcut.modules())
    assert net.stem.layer.weight.shape == (4, 1, 3, 3) and net.head.in_features == 8


def test_wide_block_widens_its_inner_width():
    space = tiny_space()
    net = space.build(uniform_arch(space, "wide_block", 0.9), (1, 8, 8), 10)
    block = net.blocks[1]
    assert block.unit1.layer.weight.shape == (80, 4, 3, 3) and block.unit2.layer.weight.shape == (8, 80, 3, 3)


def test_paper_wide_widens_the_whole_network_hand_checked():
    # mlp, input 4, hidden 8, one block, 3 classes, s=0.75: base 4, every width x2 -> hidden 16.
    # dense FLOPs: stem 32 + block 2*64 + head 24 = 184; widened dense parts: stem 64 + head 48 = 112,
    # so the block's two 16x16 layers (512 weights) keep 72: one density 72/512, 36 kept in each.
    space = SparseIFTSpace(backbone="mlp", hidden=8, mlp_blocks=1, scope="network")
    net = space.build(Arch({"member": "wide", "sparsity": 0.75}), (4,), 3)
    assert net.stem.layer.weight.shape == (16, 4) and net.head.weight.shape == (3, 16)
    sparse = [m for m in net.modules() if isinstance(m, SparseMixin)]
    assert [tuple(m.weight.shape) for m in sparse] == [(16, 16)] * 2 and [int(m.mask().sum()) for m in sparse] == [36] * 2
    m = count_model(net, (4,))
    assert (m["flops"], m["flops_sparse"]) == (64 + 512 + 48, 184)
    assert not any(isinstance(x, SparseMixin) for x in [*net.stem.modules(), net.head])


@pytest.mark.parametrize("s", SPARSITIES)
def test_paper_wide_resnet_widths_and_one_density(s):
    space = SparseIFTSpace(scope="network")  # C=8, stages [1, 1, 1]
    net = space.build(Arch({"member": "wide", "sparsity": s}), (1, 8, 8), 10)
    width = int(8 * base_scaling(s) ** 0.5)
    assert net.stem.layer.weight.shape[0] == width and net.head.in_features == 4 * width
    assert [b.unit1.layer.weight.shape[:2] for b in net.blocks] == [(width, width), (2 * width, width),
                                                                     (4 * width, 2 * width)]
    assert all(isinstance(b.shortcut.layer, torch.nn.Conv2d) and not isinstance(b.shortcut.layer, SparseMixin)
               for b in net.blocks[1:])
    densities = [float(m.mask().float().mean()) for m in net.modules() if isinstance(m, SparseMixin)]
    # one density, below the one keeping each layer's dense weight count: the widened dense parts are paid for
    assert max(densities) - min(densities) < 0.01 and max(densities) < (8 / width) ** 2
    dense = count_model(space.build(Arch({"member": "dense", "sparsity": s}), (1, 8, 8), 10), (1, 8, 8))["flops"]
    flops = count_model(net, (1, 8, 8))["flops_sparse"]
    assert dense - 4 < flops <= dense  # below by less than the smallest layer's positions (2x2)


def test_paper_wide_refuses_a_net_whose_widened_dense_parts_exceed_the_budget():
    space = tiny_space(backbone="mlp", scope="network")  # stem 64 -> 16 is half the dense net's FLOPs
    with pytest.raises(ConfigError, match="dense stem, head and shortcuts"):
        space.build(Arch({"member": "wide", "sparsity": 0.75}), (1, 8, 8), 5)


def test_space_dims_label_and_options():
    space = SparseIFTSpace()
    assert len(space.plan) == 3 and set(space.dims()) == {f"b{i}.{d}" for i in range(3) for d in ("member", "sparsity")}
    assert space.size() == 15 ** 3
    arch = Arch({"b0.member": "dense", "b0.sparsity": 0.5, "b1.member": "wide_block", "b1.sparsity": 0.9,
                 "b2.member": "doped", "b2.sparsity": 0.75})
    assert space.label(space.validate(arch)) == "resnet:dense,wide_block@0.9,doped@0.75"
    network = SparseIFTSpace(scope="network")
    assert set(network.dims()) == {"member", "sparsity"} and network.size() == 6 * 3
    assert network.label(Arch({"member": "wide", "sparsity": 0.9})) == "resnet:wide@0.9"
    assert len(SparseIFTSpace(backbone="mlp", mlp_blocks=4).dims()) == 8
    assert [(p.c_in, p.c_out, p.stride) for p in SparseIFTSpace(C=4, stages=[2, 1]).plan] == \
        [(4, 4, 1), (4, 4, 1), (4, 8, 2)]
    for bad in ({"backbone": "vgg"}, {"members": ["dense", "huge"]}, {"members": []}, {"sparsities": [1.0]},
                {"sparsities": [0.5, True]}, {"stages": []}, {"stages": [1, 0]}, {"C": 0}, {"mask": "magic"},
                {"members": ["dense", "wide"]}, {"scope": "layer"}):
        with pytest.raises(ConfigError):
            SparseIFTSpace(**bad)
    with pytest.raises(ConfigError, match="backbone=mlp"):
        SparseIFTSpace().build(uniform_arch(SparseIFTSpace(), "dense"), (20,), 3)


def test_search_cli_writes_the_run_contract(runs):
    assert cli("search", "--space", "sparse_ift", "--strategy", "random", "--budget", 2, "--name", "sift",
               "--runs-dir", runs, *FAST, "--set", "space.sparsities=[0.75]") == 0
    run = runs / "sift"
    recs = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert [r["status"] for r in recs] == ["ok"] * 2
    dense = count_model(SparseIFTSpace(C=4).build(uniform_arch(SparseIFTSpace(C=4), "dense"), (1, 8, 8), 10),
                        (1, 8, 8))["flops"]
    for r in recs:
        m = r["metrics"]
        assert {"val_acc", "test_acc", "params", "nnz", "flops", "flops_sparse", "sparsity"} <= set(m)
        assert abs(m["flops_sparse"] / dense - 1) < 0.01
        assert r["label"].startswith("resnet:")
    assert (run / "best.json").is_file() and (run / "config.yaml").is_file()
    assert (run / "state" / "checkpoint.json").is_file()


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_dynamic_sparse_training_moves_masks_and_keeps_iso_flops(method):
    from sparsenas.config import CORE, validate_section
    from sparsenas.data import load_data
    from sparsenas.training import train_and_evaluate

    data = load_data(validate_section("data", {"limit": 128}, CORE["data"]))
    train = validate_section("train", {"epochs": 1, "batch_size": 16, "sparse_training": method,
                                       "update_interval": 1}, CORE["train"])
    space = tiny_space()
    arch = Arch({"b0.member": "parallel", "b0.sparsity": 0.5, "b1.member": "factorized", "b1.sparsity": 0.9})
    torch.manual_seed(0)
    net = space.build(arch, data.input_shape, data.num_classes)
    before = {n: m.mask().clone() for n, m in net.named_modules() if isinstance(m, SparseMixin)}
    flops = count_model(net, data.input_shape)["flops_sparse"]
    train_and_evaluate(net, data, train, 0, "cpu")
    after = {n: m.mask() for n, m in net.named_modules() if isinstance(m, SparseMixin)}
    assert all(int(after[n].sum()) == int(before[n].sum()) for n in before)  # nnz per layer is constant
    assert sum(int((after[n] != before[n]).sum()) for n in before) > 0
    # flops_sparse counts nonzero *values*: a regrown weight starts at 0 and may stay 0 (no gradient), never more
    assert 0.95 * flops <= count_model(net, data.input_shape)["flops_sparse"] <= flops
