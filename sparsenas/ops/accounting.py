"""Exact per-model accounting: params, nnz, dense and effective sparse FLOPs, sparsity.

FLOPs here are multiply-accumulates of conv and linear layers for one input sample (the convention of
the NAS papers we follow); pooling, BN and activations are not counted.
"""
from __future__ import annotations

import torch
from torch import nn

from .sparse import SparseMixin


def _weight(module: nn.Module) -> torch.Tensor:
    return module.effective_weight() if isinstance(module, SparseMixin) else module.weight


@torch.no_grad()
def count_model(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, float]:
    """Count on one forward pass of a zero sample of `input_shape` (C, H, W) in eval mode."""
    flops = {"dense": 0, "sparse": 0}
    hooks = []

    def hook(module, inputs, output):
        w = _weight(module)
        positions = output[0, 0].numel() if isinstance(module, nn.Conv2d) else output[0].numel() // output.shape[-1]
        flops["dense"] += positions * w.numel()
        flops["sparse"] += positions * int(torch.count_nonzero(w))

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
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
        "flops": float(flops["dense"]),
        "flops_sparse": float(flops["sparse"]),
        "sparsity": 1.0 - sparse_nnz / sparse_total if sparse_total else 0.0,
    }
