"""The deploy planner's extra kernels: the direct (numba) CSR 1×1 conv and channels-last pooling — same outputs
as the layers they replace, chosen by the planner only where priced faster, rebuilt from a saved plan."""
import pytest
import torch
from torch import nn

from sparsenas.hardware.kernels import trace
from sparsenas.ops import SparseConv2d, numba_kernels
from sparsenas.ops.deploy import portable, to_deployable
from sparsenas.ops.numba_kernels import DirectCSRConv1x1
from sparsenas.ops.planner import built
from sparsenas.ops.pool_kernels import ChannelsLastPool
from sparsenas.ops.timing import Timing

needs_numba = pytest.mark.skipif(numba_kernels.missing() is not None, reason="numba (the kernels extra) missing")


def _pointwise(c_in, c_out, stride=1, bias=True, keep=0.1):
    torch.manual_seed(0)
    conv = nn.Conv2d(c_in, c_out, 1, stride, bias=bias).eval()
    with torch.no_grad():
        conv.weight.mul_(torch.rand_like(conv.weight) < keep)
    return conv


@needs_numba
@pytest.mark.parametrize("shape,c_out,stride,bias", [((2, 8, 5, 7), 6, 1, True), ((3, 16, 9, 9), 12, 2, False),
                                                     ((1, 5, 1, 1), 4, 1, True)])
def test_direct_csr_conv_matches_the_dense_conv(shape, c_out, stride, bias):
    conv = _pointwise(shape[1], c_out, stride, bias)
    conv.weight.data[0] = 0  # an empty row: its output is the bias alone
    x = torch.randn(*shape)
    with torch.no_grad():
        assert (DirectCSRConv1x1(conv)(x) - conv(x)).abs().max() < 1e-5
        assert (DirectCSRConv1x1(conv)(x.contiguous(memory_format=torch.channels_last)) - conv(x)).abs().max() < 1e-5


def test_direct_csr_conv_without_numba_runs_torch_csr(monkeypatch):
    conv, x = _pointwise(8, 6), torch.randn(2, 8, 4, 4)
    monkeypatch.setattr(numba_kernels, "numba", None)
    assert numba_kernels.direct_exists(conv, "cpu") == numba_kernels.missing() is not None
    with torch.no_grad():
        assert (DirectCSRConv1x1(conv)(x) - conv(x)).abs().max() < 1e-5  # a saved export loads anywhere


@needs_numba
def test_direct_csr_conv_is_one_traced_kernel_and_refuses_other_dtypes():
    conv, x = _pointwise(8, 6), torch.randn(2, 8, 4, 4)
    calls = trace(DirectCSRConv1x1(conv), x).calls
    assert [c.op for c in calls] == ["csr_pointwise.default"]  # the lut prices it as one kernel
    nnz = int((conv.weight != 0).sum())
    assert calls[0].features[2:4] == (nnz * 2 * 4 * 4, nnz)  # macs and nnz, as a CSR matmul's, for its guesses
    assert "direct" not in built(conv.double(), x.double())  # float32 only: refused when it runs


@pytest.mark.parametrize("pool", [nn.MaxPool2d(3, 1, 1), nn.MaxPool2d(3, 2, 1), nn.AvgPool2d(3, 1, 1),
                                  nn.AvgPool2d(3, 1, 1, count_include_pad=False), nn.AvgPool2d(2)])
def test_channels_last_pool_matches_and_keeps_the_layout(pool):
    x = torch.randn(3, 5, 9, 9)
    y = ChannelsLastPool(pool)(x)
    assert (y - pool(x)).abs().max() < 1e-6 and y.is_contiguous()


def _net():
    torch.manual_seed(0)
    return nn.Sequential(SparseConv2d(4, 16, 1, keep=0.1, mask_mode="magnitude"), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.MaxPool2d(3, 1, 1), SparseConv2d(16, 16, 1, keep=0.1, mask_mode="magnitude"),
                         nn.AvgPool2d(3, 1, 1, count_include_pad=False)).eval()


def _pricer(fastest):
    """A fake pricer: `fastest` kernels cost 1 ms, every other candidate 10 ms (noise-free)."""
    def pricer(layer, x, device):
        return {k: Timing(1.0 if k in fastest else 10.0, 1.0, 0.0, 0.0, 1) for k in built(layer, x, device)}
    return pricer


@pytest.mark.parametrize("fastest", [("nhwc", "direct"), ("dense",)])
def test_export_plans_the_new_kernels_only_where_priced_faster(fastest):
    if "direct" in fastest and numba_kernels.missing():
        pytest.skip("numba (the kernels extra) missing")
    model, x = _net(), torch.randn(2, 4, 6, 6)
    dep, plan = to_deployable(model, x, pricer=_pricer(fastest))
    assert (dep(x) - model(x)).abs().max() < 1e-4
    assert {plan[n]["action"] for n in ("0", "4")} == {fastest[-1]}  # the pointwise convs
    assert {plan[n]["action"] for n in ("3", "5")} == {fastest[0]}  # the pools: a layout kernel, timed too
    assert isinstance(dep[3], ChannelsLastPool) == ("nhwc" in fastest)
    rebuilt, _ = to_deployable(_net(), plan=portable(plan))  # load_exported's path: same modules, same weights
    rebuilt.load_state_dict(dep.state_dict())
    assert [type(m) for m in rebuilt] == [type(m) for m in dep] and (rebuilt(x) - dep(x)).abs().max() < 1e-6


def test_untimed_export_keeps_plain_pools():
    dep, plan = to_deployable(_net(), torch.randn(2, 4, 6, 6), csr="never")
    assert isinstance(dep[3], nn.MaxPool2d) and "3" not in plan
