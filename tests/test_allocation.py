"""Layer-wise allocation (uniform / ER / ERK) against hand-computed densities; per-layer accounting."""
import pytest
import torch
from torch import nn

from sparsenas.errors import ConfigError
from sparsenas.ops import SparseConv2d, SparseLinear, count_model
from sparsenas.ops.accounting import count_layers
from sparsenas.ops.allocation import allocate, kept_counts, layer_densities

# weights: Linear 10→20 (200), Linear 20→5 (100), Conv 3→4 3×3 (108); 408 in all
SHAPES = [(20, 10), (5, 20), (4, 3, 3, 3)]


def test_er_by_hand_with_dense_redistribution():
    # raw = 30/200, 25/100, 7/12. ε = 204/118 → conv 1.0085 > 1 → dense; then ε = 96/55
    d = layer_densities(SHAPES, 0.5, "er")
    assert d == pytest.approx([0.15 * 96 / 55, 0.25 * 96 / 55, 1.0])
    assert d[0] == pytest.approx(0.2618181818) and d[1] == pytest.approx(0.4363636364)


def test_erk_by_hand():
    # raw = 30/200, 25/100, 13/108; divisor = 30 + 25 + 13 = 68; ε = 204/68 = 3
    assert layer_densities(SHAPES, 0.5, "erk") == pytest.approx([0.45, 0.75, 13 / 36])


@pytest.mark.parametrize("method,keeps,counts", [
    ("erk", [0.45, 0.75, 13 / 36], [90, 75, 39]),
    ("er", [0.15 * 96 / 55, 0.25 * 96 / 55, 1.0], [52, 44, 108]),
    ("uniform", [0.5, 0.5, 0.5], [100, 50, 54]),
])
def test_allocate_on_a_small_net_by_hand(method, keeps, counts):
    torch.manual_seed(0)
    model = nn.Sequential(SparseLinear(10, 20, mask_mode="magnitude"), SparseLinear(20, 5, mask_mode="random"),
                          SparseConv2d(3, 4, 3, mask_mode="magnitude"))
    allocate(model, 0.5, method)
    assert [m.keep for m in model] == pytest.approx(keeps)
    assert [int(m.mask().sum()) for m in model] == counts
    assert abs(sum(counts) - 204) <= 3


def test_uniform_and_exact_overall_density():
    assert layer_densities(SHAPES, 0.3, "uniform") == pytest.approx([0.3] * 3)
    sizes = [200, 100, 108]
    for method in ("uniform", "er", "erk"):
        for density in (0.02, 0.1, 0.5, 0.9, 1.0):
            counts = kept_counts(SHAPES, layer_densities(SHAPES, density, method))
            assert abs(sum(counts) - density * sum(sizes)) <= len(sizes)
            assert all(1 <= c <= n for c, n in zip(counts, sizes))


def test_many_layers_go_dense_in_turn():
    shapes = [(2, 2), (3, 3), (100, 100)]  # raw 1, 2/3, 0.02
    d = layer_densities(shapes, 0.5, "er")
    assert d[:2] == [1.0, 1.0]
    assert d[2] == pytest.approx((0.5 * 10013 - 13) / 10000)


def test_allocate_sets_layer_keep_and_bad_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(SparseConv2d(3, 4, 3, mask_mode="magnitude"), nn.Flatten(),
                          SparseLinear(4, 8, mask_mode="2:4"), SparseLinear(10, 20, mask_mode="random"))
    allocate(model, 0.25, "erk")
    assert model[0].keep < 1 and model[2].keep == 0.5 and model[3].keep < 1
    with pytest.raises(ConfigError, match="sparsity in"):
        layer_densities(SHAPES, 0.0, "erk")
    with pytest.raises(ConfigError, match="unknown layer-wise allocation 'xyz'"):
        layer_densities(SHAPES, 0.5, "xyz")


def test_count_layers_by_hand():
    torch.manual_seed(0)
    model = nn.Sequential(SparseConv2d(1, 4, 3, padding=1, bias=False, keep=0.25, mask_mode="magnitude"),
                          nn.Flatten(), SparseLinear(100, 3, keep=0.1, mask_mode="channel"), nn.Linear(3, 2))
    rows = count_layers(model, (1, 5, 5))
    assert [r.name for r in rows] == ["0", "2", "3"]
    conv, lin, head = rows
    assert (conv.weights, conv.nnz, conv.flops, conv.flops_sparse, conv.params) == (36, 9, 900, 225, 36)
    assert (lin.weights, lin.nnz, lin.flops, lin.flops_sparse, lin.params) == (300, 100, 300, 100, 303)
    assert lin.mask == "channel" and head.mask == "dense" and head.nnz == 6 and head.sparsity == 0
    totals = count_model(model, (1, 5, 5))
    assert totals["flops"] == sum(r.flops for r in rows) and totals["flops_sparse"] == 225 + 100 + 6
