"""Node-space sub-networks of an over-parameterised parent at a fixed sparsity (Random Search as a Baseline
for Sparse Neural Network Architecture Search, Farahani, arXiv 2403.08265).

The parent is a plain chain of weight layers (`parent: mlp` — Linear+ReLU per `hidden` width; `parent: conv`
— 3×3 conv+ReLU+2×2 max pool per `hidden` channel count, then a linear classifier on the flattened map),
initialised with `init_seed` (the same for every trial; a trial's seed only orders its data). A sub-network
keeps a subset of the hidden nodes (units / channels) and *the parent's initial weights* between them — the
paper's "initialized sparse sub-networks" — and trains as a physically smaller dense network, which is
exactly the parent with those nodes masked out. Its `sparsity` is the fraction of the parent's conv/linear weights removed.

Encoding: one dim per hidden node, `h{g}.n{j}` ∈ Float(0, 1), its priority. An arch becomes a node set: the
highest-priority node of every hidden layer, then the other nodes in order of decreasing priority for as
long as the sub-network's weight count stays within (1 − `sparsity`) × the parent's (a prefix, not a
first fit, so that cheap nodes of one layer do not fill the rest of the budget). So every point of the space
is a sub-network at the target sparsity (above it by less than one node's weights), whatever a strategy
proposes, and a uniform sample of the priorities is a uniformly random node order, i.e. the paper's random
sparse configuration; random search over the space is its Random Search. `sparsity: 0` is the dense parent.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..data import load_data
from ..errors import ConfigError
from ..registry import Registry
from ..schema import count, counts, number, one_of
from ..space import Arch, EvalContext, Float, register_space
from .trained import TrainedSpace

PARENTS: Registry = Registry("parent network")


@PARENTS.register("mlp")
def mlp_parent(hidden: list[int], input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    layers, width = [nn.Flatten()], math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, num_classes))


@PARENTS.register("conv")
def conv_parent(hidden: list[int], input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    layers, channels, (h, w) = [], input_shape[0], input_shape[1:]
    for c in hidden:
        layers += [nn.Conv2d(channels, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        channels, h, w = c, h // 2, w // 2
    if h < 1 or w < 1:
        raise ConfigError(f"space.hidden has {len(hidden)} conv layers: too many 2×2 poolings for input "
                          f"{tuple(input_shape)}")
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * h * w, num_classes))


def weight_layers(parent: nn.Sequential) -> list[nn.Module]:
    """The conv and linear layers of a chain, in order."""
    return [m for m in parent if isinstance(m, (nn.Linear, nn.Conv2d))]


def pair_weights(parent: nn.Sequential, input_channels: int) -> list[int]:
    """Per weight layer l: the weights joining one node of its input group to one node of its output group
    (kernel area for a conv; spatial positions per channel for a linear layer on a flattened map)."""
    out, nodes_in = [], input_channels
    for layer in weight_layers(parent):
        nodes_out = layer.weight.shape[0]
        per_pair, rest = divmod(layer.weight.numel(), nodes_in * nodes_out)
        if rest:
            raise ValueError(f"{layer} does not split into {nodes_in} input nodes")
        out.append(per_pair)
        nodes_in = nodes_out
    return out


def total_weights(counts: list[int], per_pair: list[int]) -> int:
    """Weights of the chain whose node groups (input, hidden..., output) have `counts` nodes."""
    return sum(counts[l] * counts[l + 1] * a for l, a in enumerate(per_pair))


def select_nodes(priorities: list[np.ndarray], ends: tuple[int, int], per_pair: list[int],
                 budget: int) -> list[list[int]]:
    """The longest prefix of the nodes in order of decreasing priority (ties: layer, then index) whose
    sub-network fits a weight `budget`; every hidden group keeps at least its top node. `ends` are the
    (fixed) input and output group sizes. Returns the sorted kept indices per hidden group."""
    order = sorted((-float(p[j]), g, j) for g, p in enumerate(priorities) for j in range(len(p)))
    kept: list[list[int]] = [[] for _ in priorities]
    for _, g, j in order:  # the top node of every group first
        if not kept[g]:
            kept[g].append(j)
    counts = [ends[0], *([1] * len(priorities)), ends[1]]
    used = total_weights(counts, per_pair)
    if used > budget:
        raise ConfigError(f"sparsity leaves {budget} weights, fewer than the {used} of one node per hidden layer")
    for _, g, j in order:
        if j == kept[g][0]:
            continue
        i = g + 1  # the group's index in counts
        cost = counts[i - 1] * per_pair[i - 1] + counts[i + 1] * per_pair[i]
        if used + cost > budget:
            break
        kept[g].append(j)
        counts[i] += 1
        used += cost
    return [sorted(k) for k in kept]


def slice_chain(parent: nn.Sequential, kept: list[list[int]], input_channels: int) -> nn.Sequential:
    """The parent restricted to the `kept` hidden nodes, with the parent's weights: a smaller dense chain
    (the output of the last weight layer and the input channels are all kept)."""
    modules, group = [], 0
    nodes_in, keep_in = input_channels, torch.arange(input_channels)
    for m in parent:
        if not isinstance(m, (nn.Linear, nn.Conv2d)):
            modules.append(m)
            continue
        w = m.weight.detach()
        rows = torch.tensor(kept[group]) if group < len(kept) else torch.arange(w.shape[0])
        if isinstance(m, nn.Conv2d):
            cols = keep_in
            new = nn.Conv2d(len(cols), len(rows), m.kernel_size, m.stride, m.padding, bias=m.bias is not None)
        else:  # a linear layer: each input node owns `per` consecutive columns (a flattened channel)
            per = w.shape[1] // nodes_in
            cols = (keep_in[:, None] * per + torch.arange(per)).flatten()
            new = nn.Linear(len(cols), len(rows), bias=m.bias is not None)
        with torch.no_grad():
            new.weight.copy_(w[rows][:, cols])
            if m.bias is not None:
                new.bias.copy_(m.bias.detach()[rows])
        modules.append(new)
        nodes_in, keep_in, group = w.shape[0], rows, group + 1
    return nn.Sequential(*modules)


@register_space("node_subnet")
class NodeSubnetSpace(TrainedSpace):
    options_schema = {
        "parent": one_of("mlp", PARENTS.names),
        "hidden": counts([64, 64]),
        "sparsity": number(0.8, 0, 1, high_open=True),
        "init_seed": count(0, 0),
    }

    def __init__(self, **options):
        super().__init__(**options)
        self.hidden = list(self.options["hidden"])
        self._dims = {self.node(g, j): Float(0.0, 1.0) for g, h in enumerate(self.hidden) for j in range(h)}

    def node(self, group: int, index: int) -> str:
        return f"h{group}.n{index:0{len(str(self.hidden[group] - 1))}d}"

    def dims(self):
        return dict(self._dims)

    def size(self) -> float:
        return math.inf

    def label(self, arch: Arch) -> str:
        """Parent, sparsity and the five highest-priority nodes of every hidden layer."""
        tops = []
        for g, h in enumerate(self.hidden):
            p = np.array([arch[self.node(g, j)] for j in range(h)])
            tops.append(f"h{g}:" + ",".join(str(int(j)) for j in np.argsort(-p, kind="stable")[:5]))
        return f"{self.options['parent']}{self.hidden} s={self.options['sparsity']:g} top " + " ".join(tops)

    # -- the parent and the node set -----------------------------------------------------------------
    def parent(self, input_shape, num_classes) -> nn.Sequential:
        """The parent initialised with `init_seed` (the global RNG is left as it was)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.options["init_seed"])
            return PARENTS.get(self.options["parent"])(self.hidden, input_shape, num_classes)

    def _chain(self, input_shape, num_classes) -> tuple[list[int], int]:
        """Weights per node pair of every layer, and the parent's total conv/linear weights."""
        with torch.device("meta"):
            shape_only = PARENTS.get(self.options["parent"])(self.hidden, input_shape, num_classes)
        per_pair = pair_weights(shape_only, input_shape[0])
        return per_pair, total_weights([input_shape[0], *self.hidden, num_classes], per_pair)

    def kept_nodes(self, arch: Arch, input_shape, num_classes) -> list[list[int]]:
        """Sorted kept node indices of every hidden layer."""
        arch = self.validate(arch)
        per_pair, full = self._chain(input_shape, num_classes)
        budget = int(math.floor((1 - self.options["sparsity"]) * full + 1e-9))
        priorities = [np.array([arch[self.node(g, j)] for j in range(h)]) for g, h in enumerate(self.hidden)]
        return select_nodes(priorities, (input_shape[0], num_classes), per_pair, budget)

    def build(self, arch: Arch, input_shape, num_classes) -> nn.Module:
        kept = self.kept_nodes(arch, input_shape, num_classes)
        return slice_chain(self.parent(input_shape, num_classes), kept, input_shape[0])

    def node_metrics(self, arch: Arch, input_shape, num_classes) -> dict[str, float]:
        """`sparsity` (fraction of the parent's conv/linear weights removed), `weights`, kept nodes per layer."""
        kept = self.kept_nodes(arch, input_shape, num_classes)
        per_pair, full = self._chain(input_shape, num_classes)
        weights = total_weights([input_shape[0], *map(len, kept), num_classes], per_pair)
        return {"sparsity": 1 - weights / full, "weights": float(weights),
                **{f"kept_h{g}": float(len(k)) for g, k in enumerate(kept)}}

    def metrics(self):
        return super().metrics() | {"weights", *(f"kept_h{g}" for g in range(len(self.hidden)))}

    def cheap_metrics(self, arch: Arch, context: EvalContext) -> dict[str, float]:
        data = load_data(context.data)
        return {**super().cheap_metrics(arch, context), **self.node_metrics(arch, data.input_shape, data.num_classes)}

    def evaluate(self, arch: Arch, seed: int, context: EvalContext, on_epoch=None) -> dict[str, float]:
        data = load_data(context.data)
        metrics = super().evaluate(arch, seed, context, on_epoch)
        return {**metrics, **self.node_metrics(arch, data.input_shape, data.num_classes)}
