"""The TAS network: a CIFAR-style ResNet of basic blocks whose every conv width and stage depth are given —
a physically smaller dense network — with its exact FLOPs; shared by the `tas` space and its supernet."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

STAGES = 3
RATIOS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def width_choices(channels: int, ratios=RATIOS) -> tuple[int, ...]:
    """TAS width candidates of a conv with `channels` outputs: int(C · r), deduplicated, sorted, >= 1."""
    return tuple(sorted({int(channels * r) for r in ratios} - {0}))


def depth_choices(blocks: int) -> tuple[int, ...]:
    """TAS depth candidates of a stage of `blocks` blocks: 1, 3, 5, …, plus `blocks` (all of 1..N if N <= 3)."""
    if blocks <= 3:
        return tuple(range(1, blocks + 1))
    choices = list(range(1, blocks + 1, 2))
    if choices[-1] != blocks:
        choices.append(blocks)
    return tuple(choices)


def down(size: int, stride: int) -> int:
    """Spatial size after a 3×3 conv (padding 1) or a ceil-mode 2×2 average pool at `stride`."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class Layout:
    """Shape of the full network: stage widths, blocks per stage, and the dim label of every conv."""

    C: int
    depth: int

    @property
    def blocks(self) -> int:
        return (self.depth - 2) // 6

    def stage_width(self, stage: int) -> int:
        return self.C * 2 ** stage

    def conv_labels(self) -> list[str]:
        return ["stem.w"] + [f"s{s}.b{j}.{c}" for s in range(STAGES) for j in range(self.blocks) for c in "ab"]

    def conv_width(self, label: str) -> int:
        return self.C if label == "stem.w" else self.stage_width(int(label[1]))


def _conv_bn(c_in, c_out, kernel, stride) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out))


class Shortcut(nn.Sequential):
    """Stride 2: ceil-mode 2×2 average pool + 1×1 conv + BN; stride 1: 1×1 conv + BN (width change)."""

    def __init__(self, c_in, c_out, stride):
        layers = [nn.AvgPool2d(2, 2, ceil_mode=True)] if stride == 2 else []
        super().__init__(*layers, *_conv_bn(c_in, c_out, 1, 1))


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_a, c_b, stride):
        super().__init__()
        self.conv_a = _conv_bn(c_in, c_a, 3, stride)
        self.conv_b = _conv_bn(c_a, c_b, 3, 1)
        self.shortcut = Shortcut(c_in, c_b, stride) if stride != 1 or c_in != c_b else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.shortcut(x) + self.conv_b(self.relu(self.conv_a(x))))


class TasResNet(nn.Module):
    """The discrete TAS network: `widths` {conv label: width}, `depths` [blocks kept per stage]."""

    def __init__(self, layout: Layout, widths: dict[str, int], depths: list[int], input_shape, num_classes):
        super().__init__()
        c = widths["stem.w"]
        self.stem = nn.Sequential(*_conv_bn(input_shape[0], c, 3, 1), nn.ReLU())
        blocks = []
        for s, depth in enumerate(depths):
            for j in range(depth):
                a, b = widths[f"s{s}.b{j}.a"], widths[f"s{s}.b{j}.b"]
                blocks.append(BasicBlock(c, a, b, 2 if s > 0 and j == 0 else 1))
                c = b
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.blocks(self.stem(x))).flatten(1))


def discrete_flops(layout: Layout, widths: dict[str, int], depths: list[int], input_shape, num_classes) -> int:
    """Exact multiply-accumulates of `TasResNet` for one sample (equal to `count_model`'s `flops`)."""
    h, w = input_shape[1:]
    c = widths["stem.w"]
    total = h * w * input_shape[0] * c * 9
    for s, depth in enumerate(depths):
        for j in range(depth):
            stride = 2 if s > 0 and j == 0 else 1
            h, w = down(h, stride), down(w, stride)
            a, b = widths[f"s{s}.b{j}.a"], widths[f"s{s}.b{j}.b"]
            total += h * w * (c * a * 9 + a * b * 9 + (c * b if stride != 1 or c != b else 0))
            c = b
    return total + c * num_classes
