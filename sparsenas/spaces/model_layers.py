"""The user-model side of the `model` space: resolve `space.factory`, load `space.weights`, find the prunable layers
of any torch module, group them (`group_by`), and swap them for `sparsenas.ops` sparse layers in place."""
from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ConfigError
from ..ops.masks import mask_kind, scores_from_weights
from ..ops.sparse import SparseConv2d, SparseLinear

CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())[:400]


def resolve_factory(spec: str) -> Callable[..., nn.Module]:
    """The function named "package.module:function" of a module already imported (`--allow-import`)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"space.factory must be 'package.module:function', got {spec!r}")
    module = sys.modules.get(module_name)
    if module is None:
        raise ConfigError(f"space.factory {spec!r}: module {module_name!r} is not imported; pass "
                          f"--allow-import {module_name} (a config never imports code by itself)")
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"space.factory {spec!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"space.factory {spec!r} is not callable")
    return obj


def call_factory(spec: str, kwargs: dict, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Call the factory with `kwargs`, plus `num_classes`/`input_shape` when its signature names them."""
    factory = resolve_factory(spec)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    extra = {k: v for k, v in (("num_classes", num_classes), ("input_shape", tuple(input_shape)))
             if k in params and k not in kwargs}
    try:
        model = factory(**kwargs, **extra)
    except Exception as e:  # noqa: BLE001 — the user's code; its failure is a bad input
        raise ConfigError(f"space.factory {spec!r} raised {one_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"space.factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_weights(path: str) -> dict[str, torch.Tensor]:
    """A state dict from `path` (torch.load with weights_only=True, or a .safetensors file)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"space.weights {path!r} is not a file")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(p))
        else:
            state = torch.load(p, weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"space.weights {path!r} cannot be read: {one_line(e)}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"space.weights {path!r} is not a state dict (a mapping of names to tensors)")
    return state


def apply_weights(model: nn.Module, state: dict[str, torch.Tensor], path: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        parts = [f"{len(v)} {what} (e.g. {v[0]!r})" for what, v in
                 (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes)) if v]
        raise ConfigError(f"space.weights {path!r} does not match the model: keys " + "; ".join(parts))
    model.load_state_dict(state)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Conv2d and Linear, by module name, in registration order (a shared module once)."""
    return {n: m for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)}


def default_skip(layers: dict[str, nn.Module]) -> list[str]:
    """The first layer and the classifier (the last Linear) — the layers AMC and RigL's ERK keep dense."""
    names = list(layers)
    linears = [n for n, m in layers.items() if isinstance(m, nn.Linear)]
    return sorted({names[0], linears[-1] if linears else names[-1]}) if names else []


def layer_type(layer: nn.Module) -> str:
    if isinstance(layer, nn.Linear):
        return "linear"
    kh, kw = layer.kernel_size
    kind = "conv" if layer.groups == 1 else "dwconv" if layer.groups == layer.in_channels else "gconv"
    return f"{kind}{kh}x{kw}"


def block_of(model: nn.Module, name: str) -> str:
    """The outermost module on the layer's path that is not a container (Sequential, ModuleList, ModuleDict):
    a top-level child, or a residual block inside a stage (`layer1.0`), or the layer itself."""
    parts, module = name.split("."), model
    for i, part in enumerate(parts):
        module = module._modules[part]
        if not isinstance(module, CONTAINERS):
            return ".".join(parts[:i + 1])
    return name


def group_key(model: nn.Module, name: str, layer: nn.Module, group_by: str) -> str:
    if group_by == "layer":
        return name
    if group_by == "type":
        return layer_type(layer)
    return block_of(model, name)


@dataclass(frozen=True)
class LayerPlan:
    """How one prunable layer is sparsified: a mask spec (kind) and its keep ratio (ignored by N:M)."""

    mask: str
    keep: float


def structure_fits(structure: str, layer: nn.Module, is_classifier: bool) -> bool:
    """Whether `structure` can apply to `layer`: N:M needs the input dimension divisible by M, and channel
    pruning of the classifier would remove classes."""
    if structure == "channel":
        return not is_classifier
    if structure == "unstructured":
        return True
    kind = mask_kind(structure)
    return layer.weight.shape[1] % kind.m == 0


def _sparse_like(layer: nn.Module, mask: str, keep: float) -> nn.Module:
    if isinstance(layer, nn.Linear):
        new = SparseLinear(layer.in_features, layer.out_features, bias=layer.bias is not None, keep=keep,
                           mask_mode=mask)
    else:
        new = SparseConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                           layer.dilation, layer.groups, bias=layer.bias is not None, padding_mode=layer.padding_mode,
                           keep=keep, mask_mode=mask)
    new.to(device=layer.weight.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(layer.weight)
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
        if getattr(new, "scores", None) is not None and mask == "scores":
            new.scores.copy_(scores_from_weights(new.weight))
    new.train(layer.training)
    return new


def sparsify(model: nn.Module, plans: dict[str, LayerPlan], random_masks: bool = False,
             at_init: bool = False) -> nn.Module:
    """Swap the named layers of `model` (in place) for sparse layers of their plan, the masks computed from the
    (loaded) weights; `random_masks`: channel and N:M layers get a random mask of their structure instead.
    `at_init` (the weights are the factory's initialisation, not trained ones): each sparse layer's weights are
    scaled by 1/sqrt(density), so that a unit's fan-in variance is the dense initialisation's — the sparse
    initialisation of Evci et al. ("Gradient Flow in Sparse Neural Networks", 2022) and Liu et al. (ICLR 2022);
    without it a 90%-sparse ReLU net without BatchNorm barely trains from scratch."""
    layers = dict(model.named_modules())
    swapped: dict[int, nn.Module] = {}
    generator = torch.Generator().manual_seed(int(torch.randint(2 ** 31 - 1, ())))
    for name, plan in plans.items():
        new = _sparse_like(layers[name], plan.mask, plan.keep)
        new.refresh_mask()  # a buffer-held mask from the copied weights
        if random_masks and new.mask_kind.pattern in ("nm", "channel") and not new.dense:
            new.set_mask(new.mask_kind.random_mask(new, generator))
        density = new.mask().float().mean().item()
        if at_init and 0 < density < 1:
            with torch.no_grad():
                new.weight.mul_(density ** -0.5)
        swapped[id(layers[name])] = new
    for module in list(model.modules()):
        for child_name, child in module._modules.items():
            if child is not None and id(child) in swapped:
                module._modules[child_name] = swapped[id(child)]
    return model
