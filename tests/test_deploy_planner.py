"""The deploy planner: which kernels exist per layer and device, the noise-aware choice, and its use in export."""
import pytest
import torch
from torch import nn

from sparsenas.ops import SparseConv2d, SparseLinear, numba_kernels
from sparsenas.ops.deploy import CSRConv1x1, to_deployable
from sparsenas.ops.planner import MIN_MARGIN, LayerSpec, candidates, choose, layer_from_spec, price, price_spec
from sparsenas.ops.timing import Timing


def _sparse_linear(out_f, in_f, keep, block=False):
    torch.manual_seed(0)
    lin = nn.Linear(in_f, out_f)
    with torch.no_grad():
        if block:  # whole 16×16 blocks zero
            mask = (torch.rand(out_f // 16, in_f // 16) < keep).repeat_interleave(16, 0).repeat_interleave(16, 1)
        else:
            mask = torch.rand(out_f, in_f) < keep
        lin.weight.mul_(mask)
    return lin


def test_candidates_follow_structure_and_device():
    assert list(candidates(_sparse_linear(64, 64, 0.1))) == ["dense", "csr"]  # unstructured: no empty blocks
    assert list(candidates(_sparse_linear(64, 64, 0.25, block=True))) == ["dense", "csr", "bsr"]
    assert list(candidates(_sparse_linear(64, 64, 0.9))) == ["dense"]  # 10% sparse: nothing to gain
    pointwise, k3 = nn.Conv2d(32, 32, 1), nn.Conv2d(32, 32, 3, padding=1)
    for conv in (pointwise, k3):
        conv.weight.data.mul_(torch.rand_like(conv.weight) < 0.1)
    direct = [] if numba_kernels.missing() else ["direct"]  # the numba kernel, where the extra is installed
    assert list(candidates(pointwise)) == ["dense", "csr", *direct] and list(candidates(k3)) == ["dense"]
    assert list(candidates(nn.MaxPool2d(3, 1, 1))) == ["dense", "nhwc"] and list(candidates(nn.ReLU())) == ["dense"]
    assert list(candidates(nn.AvgPool2d(3, 1, 1), "cuda")) == ["dense"]
    two_four = nn.Linear(16, 8)
    two_four.weight.data.mul_(torch.tensor([1.0, 1.0, 0.0, 0.0]).repeat(8, 4))
    assert "nm" not in candidates(two_four, "cpu")  # 2:4 kernels need CUDA cc >= 8.0: skipped, not required


def _t(ms, noise=0.0):
    return Timing(ms, ms, 0.0, noise, 15)


def test_choice_keeps_dense_unless_faster_by_more_than_the_noise():
    assert choose({"dense": _t(1.0), "csr": _t(0.97)})[0] == "dense"  # within MIN_MARGIN
    assert choose({"dense": _t(1.0), "csr": _t(0.8)}) == ("csr", MIN_MARGIN)
    assert choose({"dense": _t(1.0, noise=0.15), "csr": _t(0.8)})[0] == "dense"  # 20% is inside 2 × 15% noise
    assert choose({"dense": _t(1.0), "csr": _t(0.6), "bsr": _t(0.4)})[0] == "bsr"


def test_price_times_every_candidate_on_the_layer_input():
    layer = _sparse_linear(64, 128, 0.25, block=True)
    times = price(layer, torch.randn(8, 128), repeats=4)
    assert set(times) == {"dense", "csr", "bsr"} and all(t.ms > 0 for t in times.values())


def test_export_records_timed_choices_and_pointwise_csr_matches():
    torch.manual_seed(0)
    model = nn.Sequential(SparseConv2d(3, 32, 3, padding=1, keep=0.1, mask_mode="magnitude"), nn.ReLU(),
                          SparseConv2d(32, 32, 1, keep=0.1, mask_mode="magnitude"), nn.ReLU(), nn.Flatten(),
                          SparseLinear(32 * 16, 10, keep=0.1, mask_mode="magnitude")).eval()
    x = torch.randn(4, 3, 4, 4)
    dep, plan = to_deployable(model, x, csr="auto")
    assert (dep(x) - model(x)).abs().max().item() < 1e-4
    assert "times_ms" not in plan["0"] and plan["0"]["action"] == "dense"  # 3×3: no sparse kernel to time
    for name in ("2", "5"):
        assert set(plan[name]["times_ms"]) >= {"dense", "csr"} and plan[name]["action"] in plan[name]["times_ms"]
    dep, plan = to_deployable(model, x, csr="always")
    assert isinstance(dep[2], CSRConv1x1) and (dep(x) - model(x)).abs().max().item() < 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA only")
def test_semi_structured_is_a_candidate_on_ampere_or_newer():
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("needs compute capability >= 8.0")
    lin = nn.Linear(128, 128).cuda().half()
    lin.weight.data.mul_(torch.tensor([1.0, 1.0, 0.0, 0.0], device="cuda").repeat(128, 32).half())
    assert "nm" in candidates(lin, "cuda")


def test_a_layer_spec_is_priced_through_the_same_candidates():
    spec = LayerSpec(c_in=64, c_out=32, kernel=1, hw=4, batch=2, density=0.1)
    layer, x = layer_from_spec(spec)
    assert isinstance(layer, nn.Conv2d) and x.shape == (2, 64, 4, 4)
    assert abs(float((layer.weight != 0).float().mean()) - 0.1) < 0.03
    direct = set() if numba_kernels.missing() else {"direct"}
    assert set(price_spec(spec, repeats=4)) == set(candidates(layer)) == {"dense", "csr", *direct}
    blocked, _ = layer_from_spec(LayerSpec(c_in=64, c_out=64, density=0.25, block=16))
    assert list(candidates(blocked)) == ["dense", "csr", "bsr"]


@pytest.mark.parametrize("batch,hw,stride", [(1, 8, 1), (3, 8, 2), (3, 17, 1), (2, 40, 2)])
def test_csr_pointwise_conv_matches_on_both_paths(batch, hw, stride):
    """Small images: one product over the batch; from PER_SAMPLE_HW pixels on: one product per sample."""
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 8, 1, stride=stride)
    conv.weight.data.mul_(torch.rand_like(conv.weight) < 0.2)
    x = torch.randn(batch, 16, hw, hw)
    with torch.no_grad():
        y = CSRConv1x1(conv)(x)
    assert (y - conv(x)).abs().max().item() < 1e-5 and y.is_contiguous()
