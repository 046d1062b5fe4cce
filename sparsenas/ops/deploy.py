"""Deploy: turn a masked model (dense weights ⊙ mask) into one that runs with real sparse execution.

`to_deployable(model, example)`:
1. every sparse layer becomes a plain nn.Linear / nn.Conv2d with W ⊙ mask baked in;
2. dependency-aware channel removal (`channel_graph`, `channel_removal`): every channel whose value does not
   depend on the input (a masked filter, by any mask kind) is physically removed from its producer and from
   every consumer — through BN, activations, pooling, depthwise convs, residual adds (a channel goes only if
   static on every branch) and concatenations — its constant contribution folded into the consumer's bias.
   Needs `example` (a torch.fx trace and one forward pass); where the model cannot be traced, or the trimmed
   model does not reproduce the masked one on `example`, channel masks fall back to `ChannelSlice` (a
   smaller producer scattered back to full width) and the plan says why;
3. every eval-mode BatchNorm2d that alone reads a conv's output is folded into it (`bn_fold`; the conv's
   entry has fold: the BN, a plain conv's entry action "dense") — a dense model deployed gets it too;
4. the planner (`planner`) picks each former sparse layer's kernel — dense, csr (linear, 1×1 conv), bsr, nm
   (2:4, CUDA cc ≥ 8.0) — by timing the candidates on the layer's real input (`csr`: auto = timed, always =
   CSR wherever it exists, never = untimed: 2:4 where it exists, else dense). Without `example` nothing is
   timed either;
5. layout kernels (`planner.LAYOUT_KERNELS`: pooling on a channels-last copy) for every module they exist for,
   chosen the same way (timed, `csr` auto only): not sparse kernels — they speed a dense model as much.
The plan: {module: entry}; a former sparse layer's entry has mask, shape, sparsity, action (the kernel),
times_ms and note when timed, and kept_in / kept_out (channel indices) and static ("bias" | "map") when its
channels changed; other modules whose channels changed (BN, plain convs) have action "slice". With `plan`,
`to_deployable` rebuilds the same module structure without timing (for loading saved weights).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import ConfigError
from .bn_fold import apply_folds, fold_batchnorms
from .channel_graph import plan_removal
from .channel_removal import StaticMap, apply_entries, remove_channels, replace_module
from .planner import KERNELS, LAYOUT_KERNELS, candidates, choose, fits_2_4, price, semi_structured_ok
from .sparse import SparseMixin
from .sparse_kernels import ChannelSlice, CSRConv1x1, CSRLinear

CSR_CHOICES = ("auto", "always", "never")
REBUILT_AT_LOAD = ("nm", "bsr")  # kernels whose weights are saved dense and converted when loaded
__all__ = ["CSR_CHOICES", "CSRConv1x1", "CSRLinear", "ChannelSlice", "fits_2_4", "max_abs_diff", "portable",
           "replace_module", "semi_structured_ok", "to_deployable"]


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
    out = out.to(device=w.device, dtype=w.dtype).eval()
    with torch.no_grad():
        out.weight.copy_(w)
        if layer.bias is not None:
            out.bias.copy_(bias)
    return out


def _channel_slice(layer: SparseMixin) -> ChannelSlice:
    kept = layer.mask().detach().flatten(1).amax(1).nonzero().flatten()
    w = layer.weight
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros(w.shape[0], device=w.device, dtype=w.dtype)
    return ChannelSlice(_plain(layer, kept), kept, bias)


def _swap_kernel(root: nn.Module, name: str, kernel: str) -> nn.Module:
    """Replace the plain layer at `name` (inside a StaticMap, if any) by `kernel`'s module; returns the root."""
    m = root.get_submodule(name)
    if isinstance(m, StaticMap):
        m.inner = KERNELS.get(kernel).build(m.inner)
        return root
    return replace_module(root, name, KERNELS.get(kernel).build(m))


def _layer(root: nn.Module, name: str) -> nn.Module:
    m = root.get_submodule(name)
    return m.inner if isinstance(m, StaticMap) else m


def _describe(layer: SparseMixin) -> dict:
    w = layer.effective_weight().detach()
    return {"mask": layer.mask_mode, "shape": list(w.shape),
            "sparsity": 1.0 - int(torch.count_nonzero(w)) / w.numel()}


def _trim(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, dict[str, dict], str]:
    """The baked `model` with its static channels removed, the entries, and "" — or the model unchanged, no
    entries and why not."""
    try:
        trimmed = copy.deepcopy(model)
        entries = remove_channels(trimmed, plan_removal(trimmed, example))
        diff = max_abs_diff(model, trimmed, example)
    except Exception as e:  # noqa: BLE001 — any model: fx tracing and shape changes fail in many ways
        return model, {}, f"channel removal failed ({type(e).__name__}: {str(e)[:120]})"
    if not diff < 1e-4:
        return model, {}, f"channel removal changed the outputs by {diff:.2g}"
    return trimmed, entries, ""


def _inputs(model: nn.Module, names: list[str], example: torch.Tensor) -> dict[str, torch.Tensor]:
    inputs: dict[str, torch.Tensor] = {}

    def capture(name):
        def hook(module, inp, out):
            inputs.setdefault(name, inp[0].detach())
        return hook

    hooks = [_layer(model, n).register_forward_hook(capture(n)) for n in names]
    model(example)
    for h in hooks:
        h.remove()
    return inputs


def _pick(layer: nn.Module, x: torch.Tensor | None, csr: str, device: str, pricer) -> tuple[str, dict]:
    """The kernel of one plain layer and the entry fields that say why."""
    exists = {k: KERNELS.get(k).exists(layer, device) for k in ("csr", "nm")}
    if csr == "always" and exists["csr"] is None:
        return "csr", {}
    if x is None or csr == "never":  # untimed: the structure alone decides
        return ("nm", {}) if exists["nm"] is None else ("dense", {})
    if list(candidates(layer, device)) == ["dense"]:
        return "dense", {"note": "no sparse kernel for this layer here"}
    return _timed(layer, x, device, pricer)


def _timed(layer: nn.Module, x: torch.Tensor, device: str, pricer) -> tuple[str, dict]:
    times = pricer(layer, x, device)
    kernel, margin = choose(times)
    note = ", ".join(f"{k} {t.ms:.3f} ms" for k, t in times.items()) + f" (needs {margin:.0%} over dense)"
    return kernel, {"times_ms": {k: round(t.ms, 5) for k, t in times.items()}, "note": note}


def _layout(model: nn.Module, example: torch.Tensor, device: str, pricer) -> tuple[nn.Module, dict[str, dict]]:
    """Every module a layout kernel exists for, as the faster of it and itself (timed on its input)."""
    names = [n for n, m in model.named_modules()
             if any(KERNELS.get(k).exists(m, device) is None for k in LAYOUT_KERNELS)]
    inputs = _inputs(model, names, example)
    entries = {}
    for name in (n for n in names if n in inputs):  # a module never called keeps its kernel
        kernel, entries[name] = _timed(model.get_submodule(name), inputs[name], device, pricer)
        entries[name]["action"] = kernel
        if kernel != "dense":
            model = replace_module(model, name, KERNELS.get(kernel).build(model.get_submodule(name)))
    return model, entries


@torch.no_grad()
def to_deployable(model: nn.Module, example: torch.Tensor | None = None, csr: str = "auto", device: str = "cpu",
                  plan: dict[str, dict] | None = None, pricer=price) -> tuple[nn.Module, dict[str, dict]]:
    """A copy of `model` (eval mode) that runs each sparse layer as planned, and the plan (module docstring).
    `pricer(layer, x, device) -> {kernel: Timing}` prices the candidates (default: timed, `planner.price`; the
    `lut` predictor passes its table's prices, so that it plans exactly as export does)."""
    if csr not in CSR_CHOICES:
        raise ConfigError(f"csr must be one of {', '.join(CSR_CHOICES)}, got {csr!r}")
    model = copy.deepcopy(model).eval()
    sparse = {n: m for n, m in model.named_modules() if isinstance(m, SparseMixin)}
    if plan is not None:
        return _rebuild(model, sparse, plan), plan
    entries = {n: _describe(m) for n, m in sparse.items()}
    for name, layer in sparse.items():
        model = replace_module(model, name, _plain(layer))
    sliced, why = {}, "no example input to trace"
    if example is not None:
        model, sliced, why = _trim(model, example)
    folded = fold_batchnorms(model)
    inputs = _inputs(model, list(sparse), example) if example is not None and csr != "always" else {}
    for name, layer in sparse.items():
        entry = entries[name]
        entry.update(sliced.pop(name, {}))
        if layer.mask_kind.pattern == "channel" and why and not layer.dense and getattr(layer, "groups", 1) == 1:
            entry.update(action="channel", note=why)
            model = replace_module(model, name, _channel_slice(layer))
            continue
        if layer.dense or entry["sparsity"] == 0:
            kernel, extra = "dense", {}
        else:
            kernel, extra = _pick(_layer(model, name), inputs.get(name), csr, device, pricer)
        entry.update(action=kernel, **extra)
        if kernel != "dense":
            model = _swap_kernel(model, name, kernel)
    entries.update({n: {"action": "slice", **e} for n, e in sliced.items()})
    for conv, bn in folded.items():
        entries.setdefault(conv, {"action": "dense"})["fold"] = bn
    if example is not None and csr == "auto":
        model, layout = _layout(model, example, device, pricer)
        entries.update(layout)
    return model, entries


def _rebuild(model: nn.Module, sparse: dict[str, SparseMixin], plan: dict[str, dict]) -> nn.Module:
    """The module structure `plan` describes, with `model`'s (arbitrary) weights: for loading a state dict."""
    for name, layer in sparse.items():
        action = plan.get(name, {}).get("action", "dense")
        model = replace_module(model, name, _channel_slice(layer) if action == "channel" else _plain(layer))
    apply_entries(model, {n: e for n, e in plan.items() if "kept_in" in e})
    apply_folds(model, plan)
    for name in sparse:
        action = plan.get(name, {}).get("action", "dense")
        if action not in ("dense", "channel"):
            model = _swap_kernel(model, name, action)
    for name, entry in plan.items():
        if name not in sparse and entry["action"] in LAYOUT_KERNELS:
            model = replace_module(model, name, KERNELS.get(entry["action"]).build(model.get_submodule(name)))
    return model


def portable(plan: dict[str, dict]) -> dict[str, dict]:
    """The plan as saved: kernels whose sparse weights do not serialise (REBUILT_AT_LOAD) are stored dense."""
    return {n: {**e, "action": "dense" if e["action"] in REBUILT_AT_LOAD else e["action"]} for n, e in plan.items()}


def max_abs_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a.eval()(x) - b.eval()(x)).abs().max())
