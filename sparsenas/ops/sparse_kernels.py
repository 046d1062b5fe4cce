"""The modules that run a sparse layer with a sparse kernel: CSR linear, CSR 1×1 conv (torch.sparse.mm on the
(C, N·H·W) activation), and the channel-slice fallback for networks the channel analysis cannot trace.
Every buffer whose size depends on the trained weights takes its size from the loaded state dict."""
from __future__ import annotations

import warnings

import torch
from torch import nn


def csr_tensor(crow, col, values, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


class _Resizable(nn.Module):
    """Buffers whose sizes depend on the trained weights take the size of the loaded state dict."""

    _resizable: tuple[str, ...] = ()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self._resizable:
            if prefix + name in state_dict:
                setattr(self, name, state_dict[prefix + name].detach().clone())
        return super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class _CSRWeight(_Resizable):
    """A 2-D weight (out, in) stored as CSR (buffers crow_indices, col_indices, values) and a dense bias."""

    _resizable = ("crow_indices", "col_indices", "values")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            csr = weight.detach().to_sparse_csr()
        self.register_buffer("crow_indices", csr.crow_indices().clone())
        self.register_buffer("col_indices", csr.col_indices().clone())
        self.register_buffer("values", csr.values().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def csr(self) -> torch.Tensor:
        return csr_tensor(self.crow_indices, self.col_indices, self.values, (self.out_features, self.in_features))

    def dense_weight(self) -> torch.Tensor:
        return self.csr().to_dense()


class CSRLinear(_CSRWeight):
    """y = x Wᵀ + b with W stored as CSR."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.out_features, self.in_features = weight.shape
        super().__init__(weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y = (self.csr() @ flat.t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def dense(self) -> nn.Linear:
        """The same layer as a plain nn.Linear (for formats without sparse tensors)."""
        out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        return filled(out, self.dense_weight(), self.bias)


PER_SAMPLE_HW = 256  # from this many pixels on, one CSR product per sample beats transposing the batch (issue #19)


class CSRConv1x1(_CSRWeight):
    """A 1×1 convolution (no padding, any stride) as W_csr (O, C) @ X (C, N·H·W): one product over the whole
    batch (two transposed copies) for small images, one per sample (none) from PER_SAMPLE_HW pixels on."""

    def __init__(self, conv: nn.Conv2d):
        self.out_features, self.in_features = conv.out_channels, conv.in_channels
        self.stride = tuple(conv.stride)
        super().__init__(conv.weight.detach().flatten(1), conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != (1, 1):
            x = x[:, :, ::self.stride[0], ::self.stride[1]]
        n, c, h, w = x.shape
        weight = self.csr()
        if n > 1 and h * w >= PER_SAMPLE_HW and not torch.jit.is_tracing():
            y = self._per_sample(weight, x.reshape(n, c, h * w))
        else:
            flat = x.reshape(c, h * w) if n == 1 else x.transpose(0, 1).reshape(c, n * h * w)
            # contiguous: a following BatchNorm runs ~9× slower on the transposed view (measured, 128×14×14, b64)
            y = (weight @ flat).reshape(self.out_features, n, h * w).transpose(0, 1).contiguous()
        if self.bias is not None:
            y = y + self.bias[:, None]
        return y.reshape(n, self.out_features, h, w)

    def _per_sample(self, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """W @ x[i] into the rows of one output: no transposed copies of large activations."""
        out = x.new_empty(x.shape[0], self.out_features, x.shape[2])
        for i in range(x.shape[0]):
            torch.mm(weight, x[i], out=out[i])
        return out

    def dense(self) -> nn.Conv2d:
        """The same layer as a plain 1×1 nn.Conv2d (for formats without sparse tensors)."""
        out = nn.Conv2d(self.in_features, self.out_features, 1, self.stride, bias=self.bias is not None)
        return filled(out, self.dense_weight()[:, :, None, None], self.bias)


def filled(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """`layer` (eval mode, on the weight's device and dtype) with `weight` and `bias` copied in."""
    layer = layer.to(device=weight.device, dtype=weight.dtype).eval()
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def is_pointwise(m: nn.Module) -> bool:
    """A 1×1 conv without padding, dilation or groups: a matrix product over channels."""
    return (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1 and m.padding in ((0, 0), 0)
            and m.padding_mode == "zeros")


class ChannelSlice(nn.Module):
    """A layer computed only for its kept output channels; the others output their bias (or 0). The fallback
    for networks `channel_graph` cannot trace: the consumer still receives (and computes over) full width."""

    def __init__(self, inner: nn.Module, kept: torch.Tensor, full_bias: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.dim = -1 if isinstance(inner, nn.Linear) else 1  # the channel dimension of the output
        self.register_buffer("kept", kept.clone())
        self.register_buffer("full_bias", full_bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        dim = self.dim % y.dim()
        shape = list(y.shape)
        shape[dim] = self.full_bias.numel()
        view = [1] * len(shape)
        view[dim] = -1
        out = self.full_bias.view(view).expand(shape).contiguous()
        return out.index_copy_(dim, self.kept, y)
