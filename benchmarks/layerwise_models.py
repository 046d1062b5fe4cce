"""The two user models of benchmarks/layerwise_search.py, as a user would write them: plain torch modules built
by factories that the `model` space calls with `input_shape=` and `num_classes=` (imported normally by the
script, so `space.factory="layerwise_models:small_cnn"` resolves from Python without --allow-import)."""
from __future__ import annotations

import math

from torch import nn


def small_cnn(input_shape=(1, 14, 14), num_classes=10, width=16):
    """conv3×3 c → BN → ReLU → pool, conv c→2c → BN → ReLU → pool, conv 2c→2c → BN → ReLU, linear 64 → classes."""
    c, h, w = input_shape
    return nn.Sequential(
        nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.Flatten(), nn.Linear(2 * width * (h // 4) * (w // 4), 64), nn.ReLU(), nn.Linear(64, num_classes))


def mlp(input_shape=(1, 14, 14), num_classes=10, hidden=(256, 128)):
    """flatten → linear → ReLU (× len(hidden)) → linear → classes."""
    layers, d = [nn.Flatten()], math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    return nn.Sequential(*layers, nn.Linear(d, num_classes))


MODELS = {"cnn": small_cnn, "mlp": mlp}
