"""Deploy: turn a masked model (dense weights ⊙ mask) into one that runs with real sparse execution.

Per sparse layer (the `plan`, one entry per layer, saved with the weights by `sparsenas export`):
  dense     keep 1, or an unstructured conv (unfold + CSR is slower than a dense conv on CPU), or an
            unstructured linear where CSR is not faster: a plain nn.Linear / nn.Conv2d with W ⊙ mask baked in
  csr       unstructured linear run as torch.sparse CSR (`CSRLinear`) when that is faster on the layer's
            real input (timed, median of a few runs) — or always / never (`csr=`)
  channel   whole-channel masks: a physically smaller dense layer over the kept output channels, its
            output scattered into the full width (`ChannelSlice`; the consumer is not shrunk)
  nm        N:M masks: `to_sparse_semi_structured` on a CUDA device of compute capability >= 8.0, else a
            dense layer (the plan says why)
The latency predictors (sparsenas.hardware) time exactly what `to_deployable` makes.
"""
from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.sparse import to_sparse_semi_structured

from ..errors import ConfigError
from ..registry import Registry
from .sparse import SparseMixin
from .timing import median_ms

CSR_CHOICES = ("auto", "always", "never")


def _csr(crow, col, values, shape):
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


class CSRLinear(_Resizable):
    """y = x Wᵀ + b with W stored as CSR (buffers crow_indices, col_indices, values)."""

    _resizable = ("crow_indices", "col_indices", "values")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            csr = weight.detach().to_sparse_csr()
        self.register_buffer("crow_indices", csr.crow_indices().clone())
        self.register_buffer("col_indices", csr.col_indices().clone())
        self.register_buffer("values", csr.values().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = _csr(self.crow_indices, self.col_indices, self.values, (self.out_features, self.in_features))
        flat = x.reshape(-1, self.in_features)
        y = (w @ flat.t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


class ChannelSlice(nn.Module):
    """A layer computed only for its kept output channels; the others output their bias (or 0)."""

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


def _plain(layer: SparseMixin, rows: torch.Tensor | None = None) -> nn.Module:
    """A plain nn.Linear / nn.Conv2d with the effective weight baked in (only output channels `rows`)."""
    w = layer.effective_weight().detach()
    bias = None if layer.bias is None else layer.bias.detach()
    if rows is not None:
        w, bias = w[rows], None if bias is None else bias[rows]
    if isinstance(layer, nn.Linear):
        out = nn.Linear(w.shape[1], w.shape[0], bias=layer.bias is not None)
    else:
        out = nn.Conv2d(w.shape[1] * layer.groups, w.shape[0], layer.kernel_size, layer.stride, layer.padding,
                        layer.dilation, layer.groups, bias=layer.bias is not None, padding_mode=layer.padding_mode)
    out = out.to(device=w.device, dtype=w.dtype)
    with torch.no_grad():
        out.weight.copy_(w)
        if layer.bias is not None:
            out.bias.copy_(bias)
    return out


def semi_structured_ok(device: str) -> str | None:
    """None if 2:4 semi-structured kernels can run on `device`, else the reason why not."""
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return "semi-structured sparse kernels need a CUDA device; kept dense"
    if torch.cuda.get_device_capability(torch.device(device)) < (8, 0):
        return "semi-structured sparse kernels need CUDA compute capability >= 8.0; kept dense"
    return None


def _fits_2_4(layer: SparseMixin, w: torch.Tensor) -> str | None:
    """None if `w` is a linear weight with at most 2 nonzeros in every 4 consecutive inputs, else why not."""
    if not isinstance(layer, nn.Linear):
        return "semi-structured kernels are for linear layers; kept dense"
    if w.shape[1] % 4 or int((w.reshape(-1, 4) != 0).sum(-1).max()) > 2:
        return f"{layer.mask_mode} is not a 2:4 pattern; kept dense"
    return None


# how each mask pattern is deployed: DEPLOY_RULES[pattern](layer, w, x, csr, device) -> (action, note)
DEPLOY_RULES: Registry = Registry("mask pattern")
# how each action builds the replacement: ACTIONS[action](layer, w) -> module
ACTIONS: Registry = Registry("export action")


@DEPLOY_RULES.register("unstructured")
def _unstructured_rule(layer, w, x, csr, device):
    if not isinstance(layer, nn.Linear):
        return "dense", "unstructured conv: CSR conv is slower than dense on CPU"
    if csr == "always":
        return "csr", ""
    if csr == "never" or x is None:
        return "dense", ""
    sparse = CSRLinear(w, layer.bias)
    dense_ms, csr_ms = median_ms([lambda: F.linear(x, w, layer.bias), lambda: sparse(x)])
    return "csr" if csr_ms < dense_ms else "dense", f"dense {dense_ms:.3f} ms, csr {csr_ms:.3f} ms"


@DEPLOY_RULES.register("channel")
def _channel_rule(layer, w, x, csr, device):
    if getattr(layer, "groups", 1) != 1:
        return "dense", "grouped conv: channel slicing would break its groups"
    return "channel", ""


@DEPLOY_RULES.register("nm")
def _nm_rule(layer, w, x, csr, device):
    why = semi_structured_ok(device) or _fits_2_4(layer, w)
    return ("dense", why) if why else ("nm", "to_sparse_semi_structured")


ACTIONS.register("dense")(lambda layer, w: _plain(layer))
ACTIONS.register("csr")(lambda layer, w: CSRLinear(w, layer.bias))


@ACTIONS.register("channel")
def _channel_slice(layer, w):
    kept = layer.mask().detach().flatten(1).amax(1).nonzero().flatten()
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros(w.shape[0], device=w.device, dtype=w.dtype)
    return ChannelSlice(_plain(layer, kept), kept, bias)


@ACTIONS.register("nm")
def _semi_structured(layer, w):
    plain = _plain(layer)
    plain.weight = nn.Parameter(to_sparse_semi_structured(plain.weight.detach()), requires_grad=False)
    return plain


def _convert(layer: SparseMixin, action: str | None, x: torch.Tensor | None, csr: str,
             device: str) -> tuple[nn.Module, dict]:
    """The deployable replacement of one layer and its plan entry. `action` None = decide now."""
    w = layer.effective_weight().detach()
    entry = {"mask": layer.mask_mode, "shape": list(w.shape), "sparsity": 1.0 - int(torch.count_nonzero(w)) / w.numel()}
    if action is None:
        if layer.dense or entry["sparsity"] == 0:
            action, note = "dense", ""
        else:
            action, note = DEPLOY_RULES.get(layer.mask_kind.pattern)(layer, w, x, csr, device)
        if note:
            entry["note"] = note
    entry["action"] = action
    try:
        return ACTIONS.get(action)(layer, w), entry
    except (RuntimeError, ValueError, TypeError) as e:  # e.g. a dtype the semi-structured kernels lack
        if action != "nm":
            raise
        entry["action"], entry["note"] = "dense", f"to_sparse_semi_structured failed ({e}); kept dense"
        return _plain(layer), entry


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


@torch.no_grad()
def to_deployable(model: nn.Module, example: torch.Tensor | None = None, csr: str = "auto", device: str = "cpu",
                  plan: dict[str, dict] | None = None) -> tuple[nn.Module, dict[str, dict]]:
    """A copy of `model` (eval mode) with every sparse layer replaced by its deployable form, and the
    plan {layer name: {action, mask, shape, sparsity, note}}. With `plan`, its actions are reused."""
    if csr not in CSR_CHOICES:
        raise ConfigError(f"csr must be one of {', '.join(CSR_CHOICES)}, got {csr!r}")
    model = copy.deepcopy(model).eval()
    layers = {n: m for n, m in model.named_modules() if isinstance(m, SparseMixin)}
    inputs: dict[str, torch.Tensor] = {}
    if example is not None and plan is None and csr == "auto":
        def capture(name):
            def hook(module, inp, out):
                inputs.setdefault(name, inp[0].detach())
            return hook

        hooks = [m.register_forward_hook(capture(n)) for n, m in layers.items() if isinstance(m, nn.Linear)]
        model(example)
        for h in hooks:
            h.remove()
    new_plan = {}
    for name, layer in layers.items():
        action = plan[name]["action"] if plan is not None else None
        module, new_plan[name] = _convert(layer, action, inputs.get(name), csr, device)
        if name:
            _set_module(model, name, module)
        else:  # the model is itself one sparse layer
            model = module
    return model, new_plan


def max_abs_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a.eval()(x) - b.eval()(x)).abs().max())
