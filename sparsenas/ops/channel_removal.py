"""Physically remove the channels `channel_graph.plan_removal` found: smaller convs, linears, depthwise convs
and BatchNorms, the removed (static, input-independent) channels' contribution to each consumer folded into
its bias (or, when zero padding makes it vary over space, added as a fixed map at the export resolution).

`remove_channels(model, removal)` changes `model` in place and returns {module: entry} with the kept channels
("kept_in", "kept_out": index lists) and "static" ("bias" | "map" | absent); `apply_entries(model, entries)`
rebuilds the same shapes from such entries (weights arbitrary, for loading a saved state dict).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry
from .channel_graph import Removal


class StaticMap(nn.Module):
    """inner(x) + a fixed map (C, H, W): the contribution of removed static channels where zero padding makes
    it vary over space. Valid at the export resolution only."""

    def __init__(self, inner: nn.Module, static: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.register_buffer("static", static.detach().clone())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "static" in state_dict:
            self.static = state_dict[prefix + "static"].detach().clone()
        return super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        if y.shape[1:] != self.static.shape:
            raise ValueError(f"this exported layer was folded at output size {tuple(self.static.shape)}, got "
                             f"{tuple(y.shape[1:])}: export at the input size you deploy")
        return y + self.static


# SLICERS[type](module, kept_in, kept_out) -> a new module with only those channels
SLICERS: Registry = Registry("channel slicer")


def _copy(new: nn.Module, tensors: dict[str, torch.Tensor | None], old: nn.Module) -> nn.Module:
    ref = next(t for t in tensors.values() if t is not None)
    new = new.to(device=ref.device, dtype=ref.dtype).train(old.training)
    with torch.no_grad():
        for name, t in tensors.items():
            if t is not None:
                getattr(new, name).copy_(t)
    return new


class GatherDepthwise(nn.Module):
    """A depthwise conv over a subset of its input's channels: x[:, index], then the conv."""

    def __init__(self, index: torch.Tensor, conv: nn.Conv2d):
        super().__init__()
        self.register_buffer("index", index.clone())
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.index_select(1, self.index))


@SLICERS.register("Conv2d")
def _conv(m: nn.Conv2d, kin, kout):
    depthwise = m.groups > 1
    if depthwise and not torch.equal(kin, kout):  # "gather": kout ⊆ kin, both sorted
        where = torch.searchsorted(kin, kout)
        return GatherDepthwise(where.to(m.weight.device), _conv(m, kout, kout))
    w = m.weight[kout] if depthwise else m.weight[kout][:, kin]
    new = nn.Conv2d(len(kin), len(kout), m.kernel_size, m.stride, m.padding, m.dilation,
                    len(kout) if depthwise else 1, bias=m.bias is not None)
    return _copy(new, {"weight": w, "bias": None if m.bias is None else m.bias[kout]}, m)


@SLICERS.register("Linear")
def _linear(m: nn.Linear, kin, kout):
    new = nn.Linear(len(kin), len(kout), bias=m.bias is not None)
    return _copy(new, {"weight": m.weight[kout][:, kin], "bias": None if m.bias is None else m.bias[kout]}, m)


def _batchnorm(m, kin, kout):
    new = type(m)(len(kout), m.eps, m.momentum, m.affine, m.track_running_stats)
    tensors = {"running_mean": m.running_mean, "running_var": m.running_var}
    if m.affine:
        tensors.update(weight=m.weight, bias=m.bias)
    return _copy(new, {k: None if v is None else v[kout] for k, v in tensors.items()}, m)


SLICERS.register("BatchNorm1d")(_batchnorm)
SLICERS.register("BatchNorm2d")(_batchnorm)


def _contribution(m: nn.Module, x: torch.Tensor, kin: torch.Tensor, kout: torch.Tensor) -> torch.Tensor:
    """What the removed input channels (those not in `kin`; static) add to the kept outputs of `m`."""
    x = x.clone()
    x[:, kin] = 0
    if isinstance(m, nn.Linear):
        return F.linear(x, m.weight[kout])[0]
    return F.conv2d(x, m.weight[kout], None, m.stride, m.padding, m.dilation)[0]


def _fold(m: nn.Module, new: nn.Module, x: torch.Tensor, kin, kout) -> tuple[nn.Module, str | None]:
    """`new` with the static contribution of the removed inputs folded in, and how ("bias", "map" or None)."""
    if not isinstance(m, (nn.Conv2d, nn.Linear)) or getattr(m, "groups", 1) > 1 or len(kin) == m.weight.shape[1]:
        return new, None
    c = _contribution(m, x, kin, kout)
    if not bool(c.abs().max() > 0):
        return new, None
    if c.dim() == 3:
        flat = c.flatten(1)
        if bool(((flat - flat[:, :1]).abs().max()) > 1e-6 * (1 + float(flat.abs().max()))):
            return StaticMap(new, c), "map"
        c = flat[:, 0]
    _with_bias(new).bias.data += c
    return new, "bias"


def _with_bias(m: nn.Module) -> nn.Module:
    if m.bias is None:
        m.bias = nn.Parameter(torch.zeros(m.weight.shape[0], dtype=m.weight.dtype, device=m.weight.device))
    return m


def replace_module(root: nn.Module, name: str, module: nn.Module) -> nn.Module:
    """Put `module` at `name` in `root`; returns the root (`module` itself when `name` is "")."""
    if not name:
        return module
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)
    return root


@torch.no_grad()
def remove_channels(model: nn.Module, removal: Removal) -> dict[str, dict]:
    """Slice every module of `removal` in `model` (in place); the entries describe what was done."""
    entries = {}
    for name, (kin, kout) in removal.kept.items():
        m = model.get_submodule(name)
        new, static = _fold(m, SLICERS.get(type(m).__name__)(m, kin, kout), removal.inputs[name], kin, kout)
        replace_module(model, name, new)
        entries[name] = {"kept_in": kin.tolist(), "kept_out": kout.tolist(), **({"static": static} if static else {})}
    return entries


@torch.no_grad()
def apply_entries(model: nn.Module, entries: dict[str, dict]) -> None:
    """Give `model` (in place) the shapes that `remove_channels` recorded in `entries`."""
    for name, e in entries.items():
        m = model.get_submodule(name)
        new = SLICERS.get(type(m).__name__)(m, torch.tensor(e["kept_in"]), torch.tensor(e["kept_out"]))
        if e.get("static") == "bias":
            _with_bias(new)
        elif e.get("static") == "map":
            new = StaticMap(new, torch.zeros(0))
        replace_module(model, name, new)
