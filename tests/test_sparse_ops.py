import pytest
import torch
from torch import nn

from sparsenas.ops import SparseConv2d, SparseLinear, count_model, kept_count


@pytest.mark.parametrize("keep", [0.01, 0.05, 0.1, 0.37, 0.5, 0.99, 1.0])
@pytest.mark.parametrize("make", [lambda k: SparseLinear(60, 30, keep=k),
                                  lambda k: SparseConv2d(8, 16, 3, keep=k, bias=False),
                                  lambda k: SparseConv2d(8, 8, 5, groups=8, keep=k, bias=False)])
def test_mask_keeps_exactly_the_configured_count(make, keep):
    torch.manual_seed(0)
    layer = make(keep)
    n = layer.weight.numel()
    expected = max(1, round(keep * n))
    assert layer.k == expected == kept_count(n, keep)
    assert int(torch.count_nonzero(layer.effective_weight())) == expected
    if keep < 1:
        assert int(layer.mask().sum()) == expected


def test_mask_is_top_k_of_absolute_scores():
    layer = SparseLinear(4, 1, keep=0.5, bias=False)
    with torch.no_grad():
        layer.scores.copy_(torch.tensor([[0.1, -3.0, 2.0, 0.5]]))
        layer.weight.fill_(1.0)
    assert layer.mask().tolist() == [[0.0, 1.0, 1.0, 0.0]]


def test_gradients_reach_scores_straight_through():
    torch.manual_seed(0)
    layer = SparseLinear(10, 5, keep=0.3)
    x = torch.randn(7, 10)
    layer(x).pow(2).sum().backward()
    assert layer.scores.grad is not None and layer.scores.grad.abs().sum() > 0
    # straight-through: d/ds = dL/d(W⊙m) · W, also for pruned weights (mask treated as identity)
    pruned = layer.mask() == 0
    assert (layer.scores.grad[pruned] != 0).any()
    assert layer.weight.grad[pruned].abs().sum() == 0


def test_scaled_score_init_and_random_mode():
    torch.manual_seed(0)
    layer = SparseConv2d(4, 6, 3, keep=0.2)
    w = layer.weight.detach()
    expected = (6.0 / w[0].numel()) ** 0.5 * w / w.abs().max()
    assert torch.allclose(layer.scores.detach(), expected)
    rnd = SparseConv2d(4, 6, 3, keep=0.2, mask_mode="random")
    assert not rnd.scores.requires_grad
    assert int(rnd.mask().sum()) == round(0.2 * rnd.weight.numel())


def test_count_model_by_hand():
    torch.manual_seed(0)
    model = nn.Sequential(SparseConv2d(1, 4, 3, padding=1, bias=False, keep=0.25), nn.Flatten(),
                          SparseLinear(4 * 5 * 5, 3, keep=0.1), nn.Linear(3, 2))
    m = count_model(model, (1, 5, 5))
    conv_w, lin_w = 36, 300
    assert m["params"] == conv_w + lin_w + 3 + 3 * 2 + 2
    assert m["flops"] == 25 * conv_w + lin_w + 6
    assert m["flops_sparse"] == 25 * 9 + 30 + 6
    assert m["nnz"] == 9 + 30 + 3 + 8
    assert m["sparsity"] == pytest.approx(1 - (9 + 30) / (conv_w + lin_w))


def test_frozen_scores_reuse_the_mask_until_they_change():
    torch.manual_seed(0)
    layer = SparseLinear(20, 10, keep=0.3)
    layer.scores.requires_grad_(False)
    first = layer.mask()
    assert layer.mask() is first  # cached
    with torch.no_grad():
        layer.scores.mul_(-1).add_(torch.randn_like(layer.scores))
    second = layer.mask()
    assert second is not first and int(second.sum()) == layer.k
    assert torch.equal(second, (layer.scores.abs() >= layer.scores.abs().flatten().topk(layer.k).values[-1]).float())
    layer.keep = 0.5
    assert int(layer.mask().sum()) == layer.k == 100
