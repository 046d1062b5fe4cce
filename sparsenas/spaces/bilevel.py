"""Data for a bi-level (DARTS-style) supernet search: the training set split in two random halves — one trains
the weights, the other the architecture — and shuffled mini-batches of a split, both drawn from one seeded
generator so that a search is reproducible and resumable."""
from __future__ import annotations

import torch


def split_halves(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
    """((x, y) for the weights, (x, y) for the architecture): a random half of the examples each."""
    order = torch.randperm(len(y), generator=generator)
    cut = len(y) // 2
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator):
    """The examples in shuffled mini-batches of `batch_size` (the last one may be smaller)."""
    order = torch.randperm(len(y), generator=generator)
    return [(x[order[i:i + batch_size]], y[order[i:i + batch_size]]) for i in range(0, len(y), batch_size)]
