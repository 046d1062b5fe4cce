"""node_subnet space: sub-networks of an initialised parent by dropping hidden nodes, at a fixed sparsity."""
import json

import numpy as np
import pytest
import torch

from conftest import cli
from sparsenas.assemble import resolve
from sparsenas.config import load_preset
from sparsenas.errors import ConfigError
from sparsenas.space import SPACES
from sparsenas.spaces.node_subnet import NodeSubnetSpace, slice_chain, weight_layers

SHAPES = {"mlp": (1, 8, 8), "conv": (1, 8, 8)}


def space(parent="mlp", hidden=(12, 10), sparsity=0.8, init_seed=3):
    return NodeSubnetSpace(parent=parent, hidden=list(hidden), sparsity=sparsity, init_seed=init_seed)


def masked_parent(sp, kept, shape):
    """The parent with every dropped node's incoming weights and bias zeroed (what a node mask does)."""
    parent = sp.parent(shape, 10)
    with torch.no_grad():
        for layer, keep in zip(weight_layers(parent), kept):
            drop = [j for j in range(layer.weight.shape[0]) if j not in keep]
            layer.weight[drop] = 0
            layer.bias[drop] = 0
    return parent


@pytest.mark.parametrize("parent", ["mlp", "conv"])
@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_sub_network_is_the_parent_with_the_dropped_nodes_masked(parent, sparsity):
    sp = space(parent, sparsity=sparsity)
    shape = SHAPES[parent]
    arch = sp.sample(np.random.default_rng(1))
    kept = sp.kept_nodes(arch, shape, 10)
    sub = sp.build(arch, shape, 10)
    assert [layer.weight.shape[0] for layer in weight_layers(sub)][:-1] == [len(k) for k in kept]
    assert any(len(k) < h for k, h in zip(kept, sp.hidden))
    x = torch.randn(7, *shape)
    torch.testing.assert_close(sub(x), masked_parent(sp, kept, shape)(x))


@pytest.mark.parametrize("parent", ["mlp", "conv"])
def test_sparsity_zero_is_the_dense_parent(parent):
    sp = space(parent, sparsity=0.0)
    shape = SHAPES[parent]
    arch = sp.sample(np.random.default_rng(0))
    assert sp.kept_nodes(arch, shape, 10) == [list(range(h)) for h in sp.hidden]
    x = torch.randn(4, *shape)
    torch.testing.assert_close(sp.build(arch, shape, 10)(x), sp.parent(shape, 10)(x))
    assert sp.node_metrics(arch, shape, 10)["sparsity"] == 0.0


@pytest.mark.parametrize("parent", ["mlp", "conv"])
@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.95])
def test_every_arch_sits_at_the_target_sparsity_and_is_the_longest_fitting_priority_prefix(parent, sparsity):
    sp = space(parent, hidden=(40, 30), sparsity=sparsity)
    shape = SHAPES[parent]
    dense = sum(m.weight.numel() for m in weight_layers(sp.parent(shape, 10)))
    rng = np.random.default_rng(5)
    for _ in range(10):
        arch = sp.sample(rng)
        kept = sp.kept_nodes(arch, shape, 10)
        sub = sp.build(arch, shape, 10)
        weights = sum(m.weight.numel() for m in weight_layers(sub))
        metrics = sp.node_metrics(arch, shape, 10)
        assert metrics["weights"] == weights and metrics["sparsity"] == pytest.approx(1 - weights / dense)
        assert weights <= (1 - sparsity) * dense + 1e-6
        # the prefix: apart from each layer's forced top node, no dropped node outranks a kept one
        prio = {(g, j): arch[sp.node(g, j)] for g, h in enumerate(sp.hidden) for j in range(h)}
        tops = {max(((g, j) for j in range(h)), key=prio.get) for g, h in enumerate(sp.hidden)}
        chosen = {(g, j) for g, k in enumerate(kept) for j in k}
        dropped = set(prio) - chosen
        assert tops <= chosen
        if dropped and chosen - tops:
            assert max(prio[n] for n in dropped) < min(prio[n] for n in chosen - tops)
        # maximal: the best dropped node would not have fitted
        if dropped:
            g, j = max(dropped, key=prio.get)
            bigger = [sorted(k + [j]) if i == g else k for i, k in enumerate(kept)]
            more = sum(m.weight.numel() for m in weight_layers(slice_chain(sp.parent(shape, 10), bigger, shape[0])))
            assert more > (1 - sparsity) * dense + 1e-6


def test_priorities_decide_which_nodes_survive():
    sp = space(hidden=(6,), sparsity=0.5)
    shape = (1, 8, 8)
    arch = sp.validate({sp.node(0, j): p for j, p in enumerate([0.1, 0.9, 0.2, 0.8, 0.3, 0.7])})
    assert sp.kept_nodes(arch, shape, 10) == [[1, 3, 5]]
    flipped = sp.validate({k: 1 - v for k, v in arch.items()})
    assert sp.kept_nodes(flipped, shape, 10) == [[0, 2, 4]]


def test_the_parent_init_comes_from_init_seed_only_and_leaves_the_global_rng_alone():
    shape = (1, 8, 8)
    arch = space().sample(np.random.default_rng(0))
    torch.manual_seed(1)
    a = space().build(arch, shape, 10)
    state = torch.get_rng_state()
    torch.manual_seed(2)
    b = space().build(arch, shape, 10)
    c = space(init_seed=4).build(arch, shape, 10)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    torch.manual_seed(1)
    space().build(arch, shape, 10)
    assert torch.equal(torch.get_rng_state(), state)


def test_bad_options_are_one_line_config_errors():
    for bad in ({"parent": "resnet"}, {"hidden": []}, {"hidden": [4, 0]}, {"hidden": 8}, {"sparsity": 1.0},
                {"sparsity": -0.1}, {"init_seed": -1}):
        with pytest.raises(ConfigError):
            SPACES.get("node_subnet")(**bad)
    for sp, match in ((space(hidden=(4, 4), sparsity=0.999), "one node per hidden layer"),
                      (space("conv", hidden=(2, 2, 2, 2)), "poolings")):
        with pytest.raises(ConfigError, match=match):
            sp.build(sp.sample(np.random.default_rng(0)), (1, 8, 8), 10)


def test_preset_resolves():
    from sparsenas.strategies import STRATEGIES

    config = resolve([load_preset("space", "node_subnet", SPACES),
                      load_preset("strategy", "random", STRATEGIES)])
    assert config["space"]["name"] == "node_subnet" and config["space"]["sparsity"] == 0.8 and config["train"]["epochs"] == 20


def test_cli_random_search_reports_the_sparsity_of_every_trial(runs):
    assert cli("search", "--space", "node_subnet", "--strategy", "random", "--budget", 3, "--name", "r",
               "--runs-dir", runs, "--set", "train.epochs=1", "--set", "data.limit=128", "--set", "space.sparsity=0.8",
               "--set", "space.hidden=[24,24]", "--quiet") == 0
    recs = [json.loads(line) for line in (runs / "r" / "trials.jsonl").read_text().splitlines()]
    assert [r["status"] for r in recs] == ["ok"] * 3 and len({r["arch_id"] for r in recs}) == 3
    for r in recs:
        m = r["metrics"]
        assert 0.8 <= m["sparsity"] < 0.85 and {"val_acc", "test_acc", "weights", "kept_h0", "kept_h1"} <= set(m)
        assert r["label"].startswith("mlp[24, 24] s=0.8 top h0:")
