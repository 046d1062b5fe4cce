"""`space.structures` in sparse_ift: a `structure` dim per block (or for the network) next to its sparsity when
several are listed; the default keeps the dims, archs and trials of before; N:M is refused."""
import numpy as np
import pytest
import torch

from sparsenas.errors import ConfigError
from sparsenas.ops.accounting import count_layers
from sparsenas.ops.sparse import SparseMixin
from sparsenas.spaces.sparse_ift import SparseIFTSpace
from sparsenas.testing import check_space, check_space_evaluates, tiny_context

# arch ids of SparseIFTSpace().sample(default_rng(seed)), seeds 0..2, recorded before `structures` existed
BEFORE = ["0efc1c354406f362", "b9de8ab76d8e4387", "bcf4dcf2554e36c6"]
BOTH = ["unstructured", "channel"]


def test_default_keeps_dims_archs_and_trials():
    for space in (SparseIFTSpace(), SparseIFTSpace(structures=["unstructured"])):
        assert len(space.dims()) == 6 and not any("structure" in k for k in space.dims())
        assert [space.sample(np.random.default_rng(s)).arch_id for s in range(3)] == BEFORE


def _masks(space, arch):
    net = space.build(space.validate(arch), (1, 8, 8), 10)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    return net, [{m.mask_mode for m in block.modules() if isinstance(m, SparseMixin)} for block in net.blocks]


def test_structure_dim_per_block_sets_its_masks():
    space = SparseIFTSpace(structures=BOTH)
    assert set(space.dims()) - set(SparseIFTSpace().dims()) == {"b0.structure", "b1.structure", "b2.structure"}
    arch = {**space.sample(np.random.default_rng(0)), "b0.member": "parallel", "b1.member": "factorized",
            "b2.member": "doped", "b0.structure": "channel", "b1.structure": "unstructured", "b2.structure": "channel"}
    net, masks = _masks(space, arch)
    assert masks == [{"channel"}, {"random"}, {"channel"}]
    # channel-structured layers keep whole output channels
    layer = next(m for m in net.blocks[0].modules() if isinstance(m, SparseMixin))
    kept = layer.mask().flatten(1).amax(1)
    assert 0 < kept.sum() < kept.numel() and torch.equal(layer.mask().flatten(1).amin(1), kept)
    assert "@ch" in space.label(space.validate(arch))
    # unstructured everywhere: exactly the network of the default space (iso-FLOP to the dense one)
    flat = {**arch, "b0.structure": "unstructured", "b2.structure": "unstructured"}
    plain = {k: v for k, v in flat.items() if not k.endswith("structure")}
    rows = [count_layers(s.build(s.validate(a), (1, 8, 8), 10), (1, 8, 8))
            for s, a in ((space, flat), (SparseIFTSpace(), plain))]
    assert [r.nnz for r in rows[0]] == [r.nnz for r in rows[1]]


def test_network_scope_has_one_structure_dim_and_wide_takes_it():
    space = SparseIFTSpace(scope="network", structures=BOTH)
    assert set(space.dims()) == {"member", "sparsity", "structure"}
    _, masks = _masks(space, {"member": "wide", "sparsity": 0.75, "structure": "channel"})
    assert all(m == {"channel"} for m in masks)


def test_structures_conform_and_evaluate():
    space = SparseIFTSpace(C=4, structures=BOTH)
    check_space(space)
    assert np.isfinite(check_space_evaluates(space, tiny_context())["val_acc"])


@pytest.mark.parametrize("bad", [["unstructured", "2:4"], [], ["channel", "channel"], ["block"]])
def test_bad_structures_are_config_errors(bad):
    with pytest.raises(ConfigError):
        SparseIFTSpace(structures=bad)
