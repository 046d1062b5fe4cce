"""Group-aligned channel masks: coupled layers keep the same channels, so that export can remove them.

Export (`channel_graph`) removes a channel of a *group* — tensors joined by residual adds, DARTS node sums and
channel-wise ops — only when it is static on every branch: with each layer's "channel" mask chosen on its own
(its largest L1 filters), an add keeps the union of its producers' channels (two 50% masks: ~75% kept), and so
do its consumers. `align_channel_masks` chooses the masks the way Torch-Pruning (DepGraph) prunes a group: one
importance per channel of the group, the sum over its members of each member's L1 filter norm divided by that
member's mean (Torch-Pruning's group magnitude importance with p = 1 as Li et al.'s filter pruning, producers
only — not the consumers' input weights — and each member normalised first, so that layers of different
scales weigh alike); each member keeps its own count of channels (`kept_count(C, keep)`), the top ones of that
ranking, so the members' kept sets are nested and the group keeps the largest member's count.

Members are the channel-masked producers (conv / linear) and the depthwise convs inside a group
(`channel_graph.coupled_layers`); a depthwise conv whose output reaches only channel-wise ops before a consumer
"gathers" (a source of its own) and keeps its own filters. Masks set later by `keep =` / `refresh_mask()` are
chosen per layer again: align after them.
"""
from __future__ import annotations

import torch
from torch import nn

from .channel_graph import coupled_layers
from .sparse import SparseMixin


def channel_masked(module: nn.Module) -> bool:
    """A sparse layer with a (not all-kept) "channel" mask."""
    return isinstance(module, SparseMixin) and module.mask_kind.pattern == "channel" and not module.dense


def group_importance(members: list[SparseMixin], generator: torch.Generator | None = None) -> torch.Tensor:
    """One score per channel of the group: Σ over members of L1 filter norm / its mean (see the module); with
    `generator`, uniform noise instead (random channel masks, aligned)."""
    w = members[0].weight
    if generator is not None:
        return torch.rand(w.shape[0], generator=generator).to(w.device)
    norms = [m.weight.detach().abs().flatten(1).sum(1) for m in members]
    return sum(n / n.mean().clamp_min(torch.finfo(n.dtype).tiny) for n in norms)


@torch.no_grad()
def align_channel_masks(model: nn.Module, example: torch.Tensor,
                        generator: torch.Generator | None = None) -> list[list[str]]:
    """Give the channel-masked members of every coupled group of `model` the same channels (in place; see the
    module docstring); `example`: an input batch for the trace (its values do not matter). Returns the aligned
    groups (module names). Raises whatever torch.fx raises on an untraceable model."""
    masked = {n: m for n, m in model.named_modules() if channel_masked(m)}
    if len(masked) < 2:
        return []
    groups = [[n for n in names if n in masked] for names in coupled_layers(model, example)]
    groups = [names for names in groups if len(names) > 1]
    for names in groups:
        members = [masked[n] for n in names]
        score = group_importance(members, generator)
        for m in members:
            m.mask_buf = m.mask_kind.from_scores(m, score).to(m.weight.dtype)
    return groups
