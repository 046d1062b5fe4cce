"""`space.structures` in dass: a `structure` dim per cell type next to its keep ratio when several are listed;
the default keeps the dims, archs and trials of before."""
from collections import Counter

import numpy as np
import pytest
import torch

from sparsenas.errors import ConfigError
from sparsenas.ops.sparse import SparseMixin
from sparsenas.spaces.dass import DassSpace
from sparsenas.testing import check_space, check_space_evaluates, tiny_context

# arch ids of DassSpace().sample(default_rng(seed)), seeds 0..2, recorded before `structures` existed
BEFORE = ["94289ca86a2b9383", "623da1c5d4b2db8f", "8dd6a13e8b44d85c"]


def test_default_keeps_dims_archs_and_trials():
    for space in (DassSpace(), DassSpace(structures=["unstructured"])):
        assert len(space.dims()) == 26 and not any(k.endswith(".structure") for k in space.dims())
        assert [space.sample(np.random.default_rng(s)).arch_id for s in range(3)] == BEFORE
        assert "unstructured" not in space.label(space.sample(np.random.default_rng(0)))


def _modes(space, arch):
    net = space.build(space.validate(arch), (1, 8, 8), 10)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    return Counter((m.mask_mode, getattr(m, "groups", 1) > 1) for m in net.modules() if isinstance(m, SparseMixin))


def test_structure_is_a_dim_per_cell_type_and_sets_the_masks():
    space = DassSpace(C=4, layers=3, stem_multiplier=1, structures=["unstructured", "channel", "2:4"])
    assert list(space.dims()["normal.structure"].choices) == ["unstructured", "channel", "2:4"]
    assert set(space.dims()) - set(DassSpace().dims()) == {"normal.structure", "reduce.structure"}
    arch = {**space.sample(np.random.default_rng(0)), "normal.n0.op0": "sep_conv_3x3", "reduce.n0.op0": "sep_conv_3x3",
            "normal.structure": "2:4", "reduce.structure": "channel"}
    modes = _modes(space, arch)
    # N:M on the layers it fits; the depthwise convs (one input per group) fall back to the unstructured mask
    assert modes[("2:4", False)] and modes[("scores", True)] and not modes[("2:4", True)]
    assert modes[("channel", False)] and modes[("channel", True)]
    assert modes[("scores", False)] == 2  # stem and classifier stay unstructured
    assert "2:4" in space.label(space.validate(arch)) and "channel" in space.label(space.validate(arch))
    uniform = _modes(space, {**arch, "normal.structure": "unstructured", "reduce.structure": "unstructured"})
    assert set(uniform) == {("scores", False), ("scores", True)}


def test_structures_conform_and_evaluate():
    space = DassSpace(C=4, layers=1, stem_multiplier=1, structures=["unstructured", "channel", "2:4"])
    check_space(space)
    assert np.isfinite(check_space_evaluates(space, tiny_context())["val_acc"])


@pytest.mark.parametrize("bad", [[], ["unstructured", "unstructured"], ["block"], "channel"])
def test_bad_structures_are_config_errors(bad):
    with pytest.raises(ConfigError):
        DassSpace(structures=bad)


def test_supernet_refuses_searchable_structures():
    assert DassSpace().supernet_search_class()
    with pytest.raises(ConfigError, match="discrete strategy"):
        DassSpace(structures=["unstructured", "channel"]).supernet_search_class()
