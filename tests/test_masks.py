"""Mask kinds: exact counts, exact N:M pattern, whole channels, bad input."""
import pytest
import torch

from sparsenas.errors import ConfigError
from sparsenas.ops import SparseConv2d, SparseLinear, mask_kind


@pytest.mark.parametrize("mode", ["magnitude", "random", "scores"])
@pytest.mark.parametrize("keep", [0.03, 0.1, 0.5, 0.9])
def test_unstructured_kinds_keep_exact_count(mode, keep):
    torch.manual_seed(0)
    for layer in (SparseLinear(40, 24, keep=keep, mask_mode=mode), SparseConv2d(6, 10, 3, keep=keep, mask_mode=mode)):
        n = layer.weight.numel()
        assert int(layer.mask().sum()) == max(1, round(keep * n)) == layer.k
        assert int(torch.count_nonzero(layer.effective_weight())) == layer.k


def test_magnitude_keeps_the_largest_weights_and_follows_keep():
    layer = SparseLinear(5, 1, bias=False, keep=0.4, mask_mode="magnitude")
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.1, -5.0, 0.3, 2.0, -0.2]]))
    layer.refresh_mask()
    assert layer.mask().tolist() == [[0, 1, 0, 1, 0]]
    layer.keep = 0.6
    assert layer.mask().tolist() == [[0, 1, 1, 1, 0]]
    layer.keep = 1.0
    assert layer.effective_weight() is layer.weight


@pytest.mark.parametrize("spec,n,m", [("2:4", 2, 4), ("1:4", 1, 4), ("1:2", 1, 2)])
def test_nm_pattern_exact_along_input_dim(spec, n, m):
    torch.manual_seed(0)
    lin = SparseLinear(16, 6, mask_mode=spec, keep=0.3)  # keep is ignored: density = N/M
    groups = lin.mask().view(6, 16 // m, m)
    assert (groups.sum(-1) == n).all()
    assert lin.keep == n / m and lin.k == 16 * 6 * n // m
    # the kept ones are the largest |W| of each group
    w = lin.weight.detach().abs().view(6, -1, m)
    kept_min = torch.where(groups.bool(), w, torch.full_like(w, float("inf"))).min(-1).values
    dropped_max = torch.where(groups.bool(), torch.full_like(w, -1.0), w).max(-1).values
    assert (kept_min >= dropped_max).all()
    conv = SparseConv2d(8, 3, 3, mask_mode=spec)
    per_pos = conv.mask().permute(0, 2, 3, 1).reshape(3, 3, 3, 8 // m, m)
    assert (per_pos.sum(-1) == n).all()


def test_channel_mask_keeps_whole_filters_of_largest_norm():
    torch.manual_seed(0)
    conv = SparseConv2d(4, 10, 3, keep=0.3, mask_mode="channel")
    mask = conv.mask()
    per_channel = mask.flatten(1).sum(1)
    assert sorted(per_channel.tolist()) == [0.0] * 7 + [36.0] * 3
    norms = conv.weight.detach().abs().flatten(1).sum(1)
    kept = per_channel > 0
    assert norms[kept].min() > norms[~kept].max()
    assert conv.k == 3 * 36
    lin = SparseLinear(8, 5, keep=0.4, mask_mode="channel")
    assert (lin.mask().sum(1) > 0).sum() == 2 and set(lin.mask().sum(1).tolist()) <= {0.0, 8.0}


def test_random_masks_keep_structure_and_count():
    g = torch.Generator().manual_seed(1)
    for layer in (SparseLinear(16, 8, mask_mode="2:4"), SparseConv2d(4, 10, 3, keep=0.3, mask_mode="channel"),
                  SparseLinear(16, 8, keep=0.2, mask_mode="magnitude")):
        rnd = layer.mask_kind.random_mask(layer, g)
        assert int(rnd.sum()) == layer.k and not torch.equal(rnd, layer.mask())
    lin = SparseLinear(16, 8, mask_mode="2:4")
    assert (lin.mask_kind.random_mask(lin, g).view(8, 4, 4).sum(-1) == 2).all()


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_keep_out_of_range_is_one_line_error(bad):
    with pytest.raises(ConfigError, match=r"sparsity in \[0, 1\)"):
        SparseLinear(4, 4, keep=bad, mask_mode="magnitude")


def test_bad_nm_specs():
    with pytest.raises(ConfigError, match="N <= M"):
        mask_kind("4:2")
    with pytest.raises(ConfigError, match="not divisible by M=4"):
        SparseLinear(10, 4, mask_mode="2:4")
    with pytest.raises(ConfigError, match="unknown mask 'topk'.*N:M"):
        mask_kind("topk")
    assert isinstance(ConfigError("x"), ValueError)


def test_mask_buffer_round_trips_through_state_dict():
    torch.manual_seed(0)
    a = SparseLinear(8, 8, keep=0.25, mask_mode="random")
    b = SparseLinear(8, 8, keep=0.25, mask_mode="random")
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.mask(), b.mask())
    c = SparseLinear(8, 8, keep=0.5, mask_mode="magnitude")
    c.load_state_dict(SparseLinear(8, 8, keep=0.5, mask_mode="magnitude").state_dict())
    x = torch.randn(3, 8)
    assert c(x).shape == (3, 8)


@pytest.mark.parametrize("setting,message", [
    ("space.mask='4:2'", "N <= M"),  # quoted: YAML 1.1 reads a bare 4:2 as the base-60 integer 242
    ("space.mask='2:4'", "N:M does not fit dass"),
    ("space.mask=topk", "unknown mask 'topk'"),
    ("train.sparse_training=dst", "train.sparse_training must be one of hydra, imp, rigl, set, static"),
    ("train.drop_fraction=1.5", "train.drop_fraction must be in (0, 1)"),
    ("train.mask_baseline=shuffled", "train.mask_baseline must be one of none, random"),
])
def test_bad_sparsity_config_exits_2_with_one_line(setting, message, tmp_path, capsys):
    from conftest import cli

    assert cli("search", "--space", "dass", "--strategy", "random", "--set", setting, "--runs-dir", tmp_path) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())
