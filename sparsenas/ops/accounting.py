"""Exact accounting per layer and per model: params, nnz, dense and effective sparse FLOPs, sparsity.

FLOPs here are multiply-accumulates of conv and linear layers for one input sample (the convention of
the NAS papers we follow); pooling, BN and activations are not counted. A layer's effective sparse FLOPs
count only its nonzero effective weights (W ⊙ mask); a layer called twice is counted twice.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .sparse import SparseMixin


@dataclass
class LayerCount:
    """One conv or linear layer: its weight shape, parameters (weight + bias), weights, nonzero effective
    weights, and multiply-accumulates for one sample (dense, and with only the nonzero weights)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    mask: str
    params: int
    weights: int
    nnz: int
    flops: int = 0
    flops_sparse: int = 0

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nnz / self.weights

    def as_dict(self) -> dict:
        return {**asdict(self), "sparsity": self.sparsity}


def _weight(module: nn.Module) -> torch.Tensor:
    return module.effective_weight() if isinstance(module, SparseMixin) else module.weight


@torch.no_grad()
def count_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerCount]:
    """Per conv/linear layer counts, from one forward pass of a zero sample of `input_shape` in eval mode."""
    rows: dict[int, LayerCount] = {}
    hooks = []

    def hook(module, inputs, output):
        row = rows[id(module)]
        positions = output[0, 0].numel() if isinstance(module, nn.Conv2d) else output[0].numel() // output.shape[-1]
        row.flops += positions * row.weights
        row.flops_sparse += positions * row.nnz

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = _weight(m)
            rows[id(m)] = LayerCount(
                name=name, kind=type(m).__name__, shape=tuple(m.weight.shape),
                mask=m.mask_mode if isinstance(m, SparseMixin) else "dense",
                params=m.weight.numel() + (m.bias.numel() if m.bias is not None else 0),
                weights=m.weight.numel(), nnz=int(torch.count_nonzero(w)))
            hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return list(rows.values())


@torch.no_grad()
def count_model(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, float]:
    """Model totals on one forward pass of a zero sample of `input_shape` (C, H, W) in eval mode."""
    layers = count_layers(model, input_shape)
    sparse_layers = [m for m in model.modules() if isinstance(m, SparseMixin)]
    sparse_weights = {id(m.weight) for m in sparse_layers}
    params = sum(p.numel() for n, p in model.named_parameters() if not n.endswith("scores"))
    dense_rest = sum(p.numel() for n, p in model.named_parameters()
                     if not n.endswith("scores") and id(p) not in sparse_weights)
    sparse_total = sum(m.weight.numel() for m in sparse_layers)
    sparse_nnz = sum(int(torch.count_nonzero(m.effective_weight())) for m in sparse_layers)
    return {
        "params": float(params),
        "nnz": float(dense_rest + sparse_nnz),
        "flops": float(sum(r.flops for r in layers)),
        "flops_sparse": float(sum(r.flops_sparse for r in layers)),
        "sparsity": 1.0 - sparse_nnz / sparse_total if sparse_total else 0.0,
    }

