"""Small reference models for the `model` space: its default `space.factory` (`small_net`), so `--space model`
runs as shipped; a user's own factory replaces it (`--allow-import mymodels --set space.factory=mymodels:fn`)."""
from __future__ import annotations

import math

from torch import nn


def small_cnn(input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> nn.Module:
    """conv 3×3 → conv 3×3 /2 → conv 3×3 → global average pool → linear → linear (ReLU between)."""
    c = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(2 * width, 2 * width), nn.ReLU(),
        nn.Linear(2 * width, num_classes))


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: int = 64, depth: int = 3) -> nn.Module:
    """flatten → `depth` linear layers of `hidden` units (ReLU) → linear classifier."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, num_classes))


def small_net(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """`small_cnn` for image inputs (C, H, W), `mlp` for flat features (D,)."""
    return small_cnn(input_shape, num_classes) if len(input_shape) == 3 else mlp(input_shape, num_classes)
