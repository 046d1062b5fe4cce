"""The deploy planner: per plain layer (mask baked in, dead channels already removed), the kernels that exist
for it on the target device, timed on the layer's real input, and the choice — dense unless a candidate is
faster by a margin above the measured timing noise.

Public API, so that a latency predictor prices exactly what export deploys (one code path):
  candidates(module, device) -> {kernel: build}      the kernels that exist for `module` on `device`
  built(module, x, device) -> {kernel: module}       the candidates that run on the layer's input `x`
  price(module, x, device) -> {kernel: Timing}       each candidate timed on `x` (`ops.timing.robust_ms`)
  choose(times) -> (kernel, margin)                  the pick: dense unless clearly faster
  price_spec(LayerSpec(...), device) -> {kernel: Timing}   the same for a layer given by its sizes and density
Kernels (KERNELS registry; each says when it exists):
  dense  the plain layer (always)
  csr    linear or 1×1 conv with W as CSR (torch.sparse.mm on the (C, N·H·W) activation); sparsity ≥ 50%
  direct 1×1 conv with W as CSR, a direct kernel on the NCHW activation (`numba_kernels`; needs numba, the
         `kernels` extra), float32 CPU; sparsity ≥ 50%
  bsr    linear with W as 16×16-block BSR, where at least half the blocks are empty and torch runs it here
  nm     2:4 semi-structured linear (`to_sparse_semi_structured`), CUDA compute capability ≥ 8.0 only
  nhwc   MaxPool2d / AvgPool2d on a channels-last copy of the input (`pool_kernels`), CPU only — a layout
         kernel, not a sparse one: export offers it for every pooling module, sparse or not
A 3×3 (or larger) conv has no sparse candidate: unfold + CSR measured 0.15–0.9× of oneDNN's dense conv at
90–98% sparsity on this CPU (issue #19), and no faster kernel is shipped.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.sparse import to_sparse_semi_structured

from ..registry import Registry
from .numba_kernels import DirectCSRConv1x1, direct_exists
from .pool_kernels import ChannelsLastPool, nhwc_exists
from .sparse_kernels import CSRConv1x1, CSRLinear, filled, is_pointwise
from .timing import Timing, robust_ms

MIN_SPARSITY = 0.5  # below this no sparse format can beat the dense kernel; not worth timing
MIN_MARGIN = 0.05  # a candidate must be at least this much faster than dense, and more when the timing is noisy
BLOCK = 16


@dataclass(frozen=True)
class Kernel:
    """exists(module, device) -> None when the kernel can run `module` on `device`, else why not;
    build(module) -> the module that runs it."""

    exists: Callable[[nn.Module, str], str | None]
    build: Callable[[nn.Module], nn.Module]


KERNELS: Registry = Registry("deploy kernel")
SPARSE_KERNELS = ("csr", "direct", "bsr", "nm")  # for the former sparse layers
LAYOUT_KERNELS = ("nhwc",)  # for any module they exist for (export's second pass)


def sparsity(module: nn.Module) -> float:
    w = module.weight.detach()
    return 1.0 - int(torch.count_nonzero(w)) / w.numel()


def semi_structured_ok(device: str) -> str | None:
    """None if 2:4 semi-structured kernels can run on `device`, else the reason why not."""
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return "semi-structured sparse kernels need a CUDA device"
    if torch.cuda.get_device_capability(torch.device(device)) < (8, 0):
        return "semi-structured sparse kernels need CUDA compute capability >= 8.0"
    return None


def fits_2_4(module: nn.Module) -> str | None:
    """None if `module` is a linear layer with at most 2 nonzeros in every 4 consecutive inputs, else why not."""
    if not isinstance(module, nn.Linear):
        return "semi-structured kernels are for linear layers"
    w = module.weight.detach()
    if w.shape[1] % 4 or int((w.reshape(-1, 4) != 0).sum(-1).max()) > 2:
        return "not a 2:4 pattern"
    return None


def _csr_exists(m, device):
    if not (isinstance(m, nn.Linear) or is_pointwise(m)):
        return "CSR is for linear and 1×1 conv layers"
    return None if sparsity(m) >= MIN_SPARSITY else f"sparsity below {MIN_SPARSITY:.0%}"


class BSRLinear(nn.Module):
    """y = x Wᵀ + b with W as a block-sparse (BSR) tensor. Not serialisable as a state dict entry: export
    records the choice and rebuilds it from the dense weight at load time."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "BSR support is in beta"
            self.weight = nn.Parameter(linear.weight.detach().to_sparse_bsr((BLOCK, BLOCK)), requires_grad=False)
        self.bias = linear.bias

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def dense(self) -> nn.Linear:
        """The same layer as a plain nn.Linear (for formats without sparse tensors)."""
        out = nn.Linear(self.weight.shape[1], self.weight.shape[0], bias=self.bias is not None)
        return filled(out, self.weight.to_dense(), self.bias)


def _bsr_exists(m, device):
    if not isinstance(m, nn.Linear) or any(d % BLOCK for d in m.weight.shape):
        return f"BSR is for linear layers with sizes divisible by {BLOCK}"
    blocks = m.weight.detach().reshape(m.out_features // BLOCK, BLOCK, -1, BLOCK).abs().sum((1, 3))
    if float((blocks == 0).float().mean()) < MIN_SPARSITY:
        return f"fewer than {MIN_SPARSITY:.0%} of the {BLOCK}×{BLOCK} blocks are empty"
    return _probe(device)


def _probe(device: str) -> str | None:
    """None if torch has a BSR × dense kernel on `device`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = torch.eye(BLOCK, device=device).to_sparse_bsr((BLOCK, BLOCK))
            F.linear(torch.ones(2, BLOCK, device=device), w)
    except (RuntimeError, NotImplementedError) as e:
        return f"no BSR kernel on {device} ({type(e).__name__})"
    return None


def _semi_structured(m: nn.Linear) -> nn.Module:
    out = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None).to(m.weight.device, m.weight.dtype)
    out.weight = nn.Parameter(to_sparse_semi_structured(m.weight.detach()), requires_grad=False)
    out.bias = m.bias
    return out.eval()


KERNELS.register("dense")(Kernel(lambda m, device: None, lambda m: m))
KERNELS.register("csr")(Kernel(_csr_exists, lambda m: CSRLinear(m.weight, m.bias) if isinstance(m, nn.Linear)
                               else CSRConv1x1(m)))
KERNELS.register("bsr")(Kernel(_bsr_exists, BSRLinear))
KERNELS.register("nm")(Kernel(lambda m, device: semi_structured_ok(device) or fits_2_4(m), _semi_structured))
KERNELS.register("direct")(Kernel(lambda m, device: direct_exists(m, device) or _csr_exists(m, device),
                                  DirectCSRConv1x1))
KERNELS.register("nhwc")(Kernel(nhwc_exists, ChannelsLastPool))


def candidates(module: nn.Module, device: str = "cpu", exclude: tuple[str, ...] = ()) -> dict[str, Callable]:
    """{kernel: build} of the kernels that exist for the plain layer `module` on `device` (dense first)."""
    return {name: KERNELS.get(name).build for name in ("dense", *SPARSE_KERNELS, *LAYOUT_KERNELS)
            if name not in exclude and KERNELS.get(name).exists(module, device) is None}


def built(module: nn.Module, x: torch.Tensor, device: str = "cpu", exclude: tuple[str, ...] = ()
          ) -> dict[str, nn.Module]:
    """{kernel: its module} of the candidates of `module` that really run on its input `x` (some kernels refuse
    a dtype or shape only when they run)."""
    out = {}
    for name, build in candidates(module, device, exclude).items():
        try:
            out[name] = build(module)
            out[name](x)
        except (RuntimeError, ValueError, TypeError, NotImplementedError):  # a dtype a sparse kernel lacks, …
            out.pop(name, None)
    return out


@torch.no_grad()
def price(module: nn.Module, x: torch.Tensor, device: str = "cpu", exclude: tuple[str, ...] = (),
          repeats: int = 15) -> dict[str, Timing]:
    """Every candidate kernel of `module` timed on its input `x`, interleaved (`robust_ms`). A latency table
    prices the same `built` candidates from its kernels instead (`hardware.lut.table_price`)."""
    kernels = built(module, x, device, exclude)
    times = robust_ms([lambda m=m: m(x) for m in kernels.values()], device="cuda" if "cuda" in str(device) else "cpu",
                      repeats=repeats)
    return dict(zip(kernels, times))


@dataclass(frozen=True)
class LayerSpec:
    """One layer as a latency table keys it: linear (kernel 0) or conv, its sizes, the input's batch and
    spatial size, and its density; `block` > 0 makes the zeros whole block×block blocks (else unstructured)."""

    c_in: int
    c_out: int
    kernel: int = 0
    stride: int = 1
    hw: int = 1
    batch: int = 1
    density: float = 1.0
    block: int = 0
    groups: int = 1


def layer_from_spec(spec: LayerSpec, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A plain layer with a random mask of `spec.density` and a random input, to price `spec` by `price`."""
    g = torch.Generator().manual_seed(seed)
    if spec.kernel == 0:
        layer, x = nn.Linear(spec.c_in, spec.c_out), torch.randn(spec.batch, spec.c_in, generator=g)
    else:
        layer = nn.Conv2d(spec.c_in, spec.c_out, spec.kernel, spec.stride, spec.kernel // 2, groups=spec.groups)
        x = torch.randn(spec.batch, spec.c_in, spec.hw, spec.hw, generator=g)
    w = layer.weight.data
    if spec.block:
        blocks = torch.rand(-(-w.shape[0] // spec.block), -(-w.shape[1] // spec.block), generator=g) < spec.density
        keep = blocks.repeat_interleave(spec.block, 0).repeat_interleave(spec.block, 1)[:w.shape[0], :w.shape[1]]
        keep = keep.reshape(*keep.shape, *[1] * (w.dim() - 2))
    else:
        keep = torch.rand(w.shape, generator=g) < spec.density
    w.mul_(keep)
    return layer.eval(), x


def price_spec(spec: LayerSpec, device: str = "cpu", repeats: int = 15) -> dict[str, Timing]:
    """Every candidate kernel of the layer `spec` describes, timed as export times it (`price`)."""
    layer, x = layer_from_spec(spec)
    return price(layer.to(device), x.to(device), device, repeats=repeats)


def choose(times: dict[str, Timing]) -> tuple[str, float]:
    """(the fastest kernel, the margin it had to beat dense by): dense unless a candidate's time × (1 + margin)
    is below dense's, margin = max(MIN_MARGIN, 2 × the larger measured noise of the two)."""
    dense = times["dense"]
    best, margin = "dense", MIN_MARGIN
    for name, t in times.items():
        need = max(MIN_MARGIN, 2 * max(dense.noise, t.noise))
        if name != "dense" and t.ms * (1 + need) < dense.ms and t.ms < times[best].ms:
            best, margin = name, need
    return best, margin
