"""Conformance suites of the sparse building blocks: mask kinds and sparse-training methods."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import SparseConv2d, SparseLinear, mask_kind
from ..sparse_training import SPARSE_TRAINING, sparse_layers

PATTERNS = ("unstructured", "nm", "channel")


def mask_layers(spec: str, keep: float = 0.25) -> list[nn.Module]:
    """A linear and a conv layer (input sizes divisible by 4, for N:M) with mask `spec`."""
    torch.manual_seed(0)
    return [SparseLinear(16, 8, keep=keep, mask_mode=spec), SparseConv2d(8, 6, 3, keep=keep, mask_mode=spec)]


def check_mask_kind(spec: str, keep: float = 0.25) -> None:
    """Assert the contract of the mask kind of `spec` (a MASK_KINDS name, or "N:M"):

    - `pattern` is one of PATTERNS and `learned` a bool;
    - on a linear and a conv layer the mask is binary, of the weight's shape, keeps exactly `count(layer)`
      = `layer.k` weights (0 < k <= numel) and the effective weight has at most k non-zeros;
    - `random_mask` has the same shape and count, and the same generator seed gives the same mask;
    - the mask survives the layer's state_dict into a fresh layer."""
    kind = mask_kind(spec)
    assert kind.pattern in PATTERNS and isinstance(kind.learned, bool), f"{spec}: pattern/learned"
    for layer in mask_layers(spec, keep):
        what = f"mask {spec} on {type(layer).__name__}"
        mask = layer.mask()
        assert mask.shape == layer.weight.shape and set(mask.unique().tolist()) <= {0.0, 1.0}, what
        assert 0 < layer.k <= layer.weight.numel() and int(mask.sum()) == layer.k == kind.count(layer), what
        assert int(torch.count_nonzero(layer.effective_weight())) <= layer.k, what
        draws = [layer.mask_kind.random_mask(layer, torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
        assert all(d.shape == mask.shape and int(d.sum()) == layer.k for d in draws), what
        assert torch.equal(draws[0], draws[1]), f"{what}: random_mask must follow its generator"
        fresh = mask_layers(spec, keep)[0 if isinstance(layer, SparseLinear) else 1]
        fresh.load_state_dict(layer.state_dict())
        assert torch.equal(fresh.mask(), mask), f"{what}: the mask must survive state_dict"


def trainer_net(mode: str, keep: float = 0.25) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(SparseConv2d(1, 4, 3, padding=1, keep=keep, mask_mode=mode), nn.ReLU(), nn.Flatten(),
                         SparseLinear(4 * 6 * 6, 32, keep=keep, mask_mode=mode), nn.ReLU(), nn.Linear(32, 3))


def run_trainer(method: str, model: nn.Module, steps: int, **options) -> list[list[torch.Tensor]]:
    """Train `model` for `steps` SGD steps on fixed random data with the sparse-training `method`, calling
    `trainer.step(step)` after each; returns every layer's mask after every step."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    trainer = SPARSE_TRAINING.get(method)(model, steps, optimizer=opt, **options)
    g = torch.Generator().manual_seed(0)
    history = []
    for step in range(steps):
        factor = trainer.lr_factor(step)
        assert 0 <= factor <= 1, f"{method}: lr_factor({step}) = {factor}"
        opt.zero_grad()
        F.cross_entropy(model(torch.randn(16, 1, 6, 6, generator=g)), torch.randint(0, 3, (16,), generator=g)).backward()
        opt.step()
        trainer.step(step)
        history.append([layer.mask().detach().clone() for layer in sparse_layers(model)])
    return history


def check_sparse_training(method: str, steps: int = 24, **options) -> None:
    """Assert the contract of the sparse-training `method` (a SPARSE_TRAINING name, built as
    `cls(model, total_steps, optimizer=..., **options)`), on a small net of magnitude and of learned-score masks:

    - `lr_factor(step)` is in [0, 1] and `step(step)` runs after every optimizer step;
    - masks stay binary, and after the last step every layer keeps exactly its target `k` weights;
    - the weights stay finite; the same seed trains to the same masks."""
    for mode in ("magnitude", "scores"):
        runs = []
        for _ in range(2):
            model = trainer_net(mode)
            targets = [layer.k for layer in sparse_layers(model)]
            history = run_trainer(method, model, steps, **options)
            for masks in history:
                assert all(set(m.unique().tolist()) <= {0.0, 1.0} for m in masks), f"{method}/{mode}: binary"
            assert [int(m.sum()) for m in history[-1]] == targets, f"{method}/{mode}: final counts"
            assert all(torch.isfinite(p).all() for p in model.parameters()), f"{method}/{mode}: finite weights"
            runs.append(history[-1])
        assert all(torch.equal(a, b) for a, b in zip(*runs)), f"{method}/{mode}: not deterministic"

