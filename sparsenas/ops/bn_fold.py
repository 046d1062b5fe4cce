"""Fold each eval-mode BatchNorm2d into the conv that feeds it (a deploy step): W' = s·W, b' = s·(b − μ) + β
per output channel, s = γ / √(σ² + ε) — the same outputs, one memory-bound pass less per BN.

Exact where the conv's output reaches only that BN: found on a torch.fx trace (the deploy's own modules,
`StaticMap` and `GatherDepthwise`, as leaves; their inner conv is scaled, and a StaticMap's fixed map with it).
Export applies it to every model it deploys — the dense twin of a speed comparison too. A model torch.fx cannot
trace keeps its BNs. `fold_batchnorms(model)` folds in place and returns {conv: the BN folded into it};
`apply_folds(model, plan)` rebuilds that structure from plan entries with "fold": BN (conv with a bias, BN →
Identity) for loading a state dict.
"""
from __future__ import annotations

from collections import Counter

import torch
from torch import fx, nn

from .channel_graph import LeafTracer
from .channel_removal import GatherDepthwise, StaticMap, replace_module


def _conv(m: nn.Module) -> nn.Conv2d | None:
    inner = m.inner if isinstance(m, StaticMap) else m.conv if isinstance(m, GatherDepthwise) else m
    return inner if type(inner) is nn.Conv2d else None


def foldable(model: nn.Module) -> dict[str, str]:
    """{BN: the conv it folds into} for every eval-mode BatchNorm2d with running statistics whose input is the
    output of a conv (called once) that nothing else reads (raises whatever torch.fx raises)."""
    graph = LeafTracer((StaticMap, GatherDepthwise)).trace(model)
    modules = dict(model.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    pairs = {}
    for node in graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        if type(bn) is not nn.BatchNorm2d or bn.training or bn.running_mean is None or calls[node.target] > 1:
            continue
        src = node.args[0] if node.args else None
        if (isinstance(src, fx.Node) and src.op == "call_module" and calls[src.target] == 1 and len(src.users) == 1
                and _conv(modules[src.target]) is not None):
            pairs[node.target] = src.target
    return pairs


def _with_bias(conv: nn.Conv2d) -> nn.Conv2d:
    if conv.bias is None:
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype, device=conv.weight.device))
    return conv


@torch.no_grad()
def fold_batchnorms(model: nn.Module) -> dict[str, str]:
    """Fold every foldable BN of `model` into its conv (in place; module docstring)."""
    try:
        pairs = foldable(model)
    except Exception:  # noqa: BLE001 — any model: fx tracing fails in many ways; it then keeps its BNs
        return {}
    for bn_name, conv_name in pairs.items():
        bn, host = model.get_submodule(bn_name), model.get_submodule(conv_name)
        conv = _with_bias(_conv(host))
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.affine:
            scale = scale * bn.weight
        shift = (bn.bias if bn.affine else 0) - bn.running_mean * scale
        conv.weight.mul_(scale.view(-1, 1, 1, 1))
        conv.bias.copy_(conv.bias * scale + shift)
        if isinstance(host, StaticMap):
            host.static.mul_(scale.view(-1, 1, 1))
        replace_module(model, bn_name, nn.Identity())
    return {conv: bn for bn, conv in pairs.items()}


def apply_folds(model: nn.Module, plan: dict[str, dict]) -> None:
    """The structure `fold_batchnorms` left (weights arbitrary): each folded BN an Identity, its conv biased."""
    for conv_name, e in plan.items():
        if "fold" in e:
            _with_bias(_conv(model.get_submodule(conv_name)))
            replace_module(model, e["fold"], nn.Identity())
