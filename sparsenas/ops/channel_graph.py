"""Which channels of a plain (masks baked in) network can be physically removed: a torch.fx trace, an exact
input-dependence analysis per channel, and the channel groups that must keep the same channels.

A depthwise conv whose empty filters sit on live input channels becomes a source too ("gather": it computes
only its live channels, from a gathered subset of its input) where its output reaches only channel-wise ops.

A channel is *live* when its value depends on the network input. A conv/linear output channel is static (not
live) when its weights on every live input channel are zero (a masked filter: its value is its bias, then BN's
shift, an activation of that, …); static channels stay static through channel-wise ops (BN, activations,
pooling, depthwise convs, spatial padding/slicing) and through an add only when static on every branch.
Tensors joined by channel-wise ops or elementwise adds/muls form one *group*: they keep the same channels, the
union of the live channels of all members (a residual add keeps a channel that any branch needs). A group's
channels come from its *source*: a conv/linear (free to produce any subset), a concatenation or a flatten
(derived from their inputs' groups), or the input / an op we do not know (every channel). Every channel not
kept is static, so its contribution to a consumer conv/linear is input-independent: `plan_removal` returns the
kept input/output channels per module and the deploy step folds that contribution into a bias (`channel_removal`).
`coupled_layers` lists each group's layers (for `channel_align`, which gives them the same masks); sparse layers
are traced as leaves and analysed with their masks applied.

Why not torch-pruning (DepGraph, judged from its documentation, not run here): it groups coupled layers the
same way but removes the channels it is given without folding their constant values (the BN shift after a
masked filter) into the consumers, so outputs would not match the masked model (it is made for pruning then
fine-tuning), and it would need the masks baked into plain layers first.

Simplifications: channels are dim 1 of 2-D or 4-D tensors (a linear on 3-D input, LayerNorm, grouped convs that
are not depthwise, modules called twice and every op not listed below keep all their channels); a group fed by
two sources keeps all channels when one of them is a concatenation/flatten.
"""
from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from .sparse import SparseMixin

CHANNELWISE_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish,
                       nn.Hardsigmoid, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.ELU, nn.Dropout, nn.Identity,
                       nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.ZeroPad2d)
CHANNELWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.hardtanh, F.gelu, F.silu, F.hardswish, torch.sigmoid,
                         torch.tanh, F.dropout, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.leaky_relu}
CHANNELWISE_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "clone"}
GATHER_BELOW = 0.8  # a depthwise conv gathers its input only when that drops >= 20% of its channels (the copy costs)
SOURCES = ("conv", "linear", "gather")  # rules whose output channels need not follow their input's
ELEMENTWISE = {operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul,
               "add", "sub", "mul", "div"}


@dataclass
class Removal:
    """kept[module] = (kept input channels, kept output channels) as index tensors, for every module whose
    channels change; inputs[module] = the recorded input of that module on the example (for folding)."""

    kept: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)


class LeafTracer(fx.Tracer):
    """torch.fx's tracer that keeps instances of `leaves` whole, like the torch.nn layers: here the sparse layers
    (SparseConv2d / SparseLinear), so that a masked model is analysed as its baked form would be."""

    def __init__(self, leaves: tuple[type, ...] = (SparseMixin,)):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, qualname)


def _weight(module: nn.Module) -> torch.Tensor:
    """The weight a layer computes with (W ⊙ mask for a sparse layer), on the CPU (where channel masks live)."""
    return (module.effective_weight() if isinstance(module, SparseMixin) else module.weight).detach().cpu()


class _Recorder(fx.Interpreter):
    def __init__(self, gm):
        super().__init__(gm)
        self.values: dict[str, object] = {}

    def run_node(self, n):
        self.values[n.name] = out = super().run_node(n)
        return out


def _tensors(node: fx.Node) -> list[fx.Node]:
    return [a for a in node.all_input_nodes]


def _is_spatial_slice(node: fx.Node) -> bool:
    idx = node.args[1]
    return isinstance(idx, tuple) and len(idx) >= 2 and idx[0] == slice(None) and idx[1] == slice(None)


def classify(node: fx.Node, modules: dict[str, nn.Module], calls: dict[str, int], values: dict) -> str:
    """The rule of `node`: input, output, conv, linear, depthwise, channelwise, elementwise, cat, flatten, or
    opaque (keeps every channel of its inputs and output)."""
    out = values.get(node.name)
    ins = [v for v in (values.get(a.name) for a in _tensors(node)) if isinstance(v, torch.Tensor)]
    if node.op in ("placeholder", "output"):
        return "input" if node.op == "placeholder" else "output"
    if not isinstance(out, torch.Tensor) and (node.target in ("size", "dim") or not any(
            isinstance(v, torch.Tensor) for v in ins)):
        return "meta"  # shapes and numbers: no channels
    if not isinstance(out, torch.Tensor) or any(v.dim() not in (2, 4) for v in [out, *ins]):
        return "opaque"
    if node.op == "call_module":
        return _module_rule(modules[node.target], calls[node.target], ins)
    target = node.target
    if target in CHANNELWISE_FUNCTIONS or target in CHANNELWISE_METHODS:
        return "channelwise"
    if target is F.pad:
        pad = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
        return "channelwise" if len(pad) <= 4 else "opaque"
    if target is operator.getitem:
        return "channelwise" if _is_spatial_slice(node) else "opaque"
    if target in ELEMENTWISE:
        return "elementwise" if out.shape[1] == ins[0].shape[1] else "opaque"
    if target is torch.cat and all(isinstance(values.get(getattr(a, "name", None)), torch.Tensor)
                                   for a in node.args[0]):
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        return "cat" if dim in (1, -3 if out.dim() == 4 else -1) else "opaque"
    if target in (torch.flatten, "flatten", "view", "reshape"):
        src = ins[0]
        return "flatten" if src.dim() == 4 and out.dim() == 2 and out.shape[0] == src.shape[0] else "opaque"
    if target == "mean" and tuple(sorted(node.args[1] if len(node.args) > 1 else ())) in ((2, 3), (-2, -1)):
        return "channelwise"
    return "opaque"


def _module_rule(module: nn.Module, calls: int, ins: list) -> str:
    if calls > 1:
        return "opaque"
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros":
        if module.groups == 1:
            return "conv"
        if module.groups == module.in_channels == module.out_channels:
            return "depthwise"
        return "opaque"
    if isinstance(module, nn.Linear):
        return "linear" if ins and ins[0].dim() == 2 else "opaque"
    if isinstance(module, nn.Flatten):
        return "flatten" if module.start_dim == 1 and module.end_dim == -1 else "opaque"
    return "channelwise" if isinstance(module, CHANNELWISE_MODULES) else "opaque"


def _live(rule: str, node: fx.Node, module, live: dict, values: dict) -> torch.Tensor:
    """Which output channels of `node` depend on the network input."""
    out = values[node.name]
    ins = [a for a in _tensors(node) if a.name in live]
    if rule in ("conv", "linear"):
        weight = _weight(module)
        w = weight.flatten(2).abs().sum(2) if rule == "conv" else weight.abs()
        return (w[:, live[ins[0].name]] != 0).any(1)
    if rule == "depthwise":
        return live[ins[0].name] & (_weight(module).flatten(1) != 0).any(1)
    if rule == "channelwise":
        return live[ins[0].name].clone()
    if rule == "elementwise":
        aligned = [live[a.name] for a in ins if _aligned(values[a.name], out)]
        other = any(bool(live[a.name].any()) for a in ins if not _aligned(values[a.name], out))
        merged = torch.stack(aligned).any(0)
        return torch.ones_like(merged) if other else merged
    if rule == "cat":
        return torch.cat([live[a.name] for a in node.args[0]])
    if rule == "flatten":
        src = values[ins[0].name]
        return live[ins[0].name].repeat_interleave(src.shape[2] * src.shape[3])
    return torch.ones(out.shape[1], dtype=torch.bool)


def _aligned(value, out: torch.Tensor) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() == out.dim() and value.shape[1] == out.shape[1]


class _Groups:
    """Union-find over node names."""

    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, a: str) -> str:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


@dataclass
class _Graph:
    nodes: list[fx.Node]
    rules: dict[str, str]
    live: dict[str, torch.Tensor]
    values: dict
    groups: _Groups = field(default_factory=_Groups)
    needs_all: set[str] = field(default_factory=set)

    def build_groups(self) -> None:
        for node in self.nodes:
            rule, ins = self.rules[node.name], [a for a in _tensors(node) if a.name in self.live]
            if rule in ("channelwise", "depthwise"):
                self.groups.union(node.name, ins[0].name)
            elif rule == "elementwise":
                for a in ins:
                    if _aligned(self.values[a.name], self.values[node.name]):
                        self.groups.union(node.name, a.name)
                    else:
                        self.needs_all.add(a.name)
            elif rule in ("input", "opaque", "output"):
                self.needs_all.update([node.name] * (rule != "output") + [a.name for a in ins])

    def kept_all(self) -> dict[str, torch.Tensor]:
        """Kept channels of every group (by root), marking more groups as needing all until nothing changes."""
        while True:
            before = len(self.needs_all)
            kept = _Kept(self).solve()
            if len(self.needs_all) == before:
                return kept


class _Kept:
    """One pass of the kept-channel computation over the groups of `graph`."""

    def __init__(self, graph: _Graph):
        self.g = graph
        self.members: dict[str, list[fx.Node]] = {}
        for node in graph.nodes:
            if node.name in graph.live:
                self.members.setdefault(graph.groups.find(node.name), []).append(node)
        self.kept: dict[str, torch.Tensor] = {}

    def solve(self) -> dict[str, torch.Tensor]:
        for root in self.members:
            self.of(root)
        return self.kept

    def of(self, root: str) -> torch.Tensor:
        if root not in self.kept:
            self.kept[root] = self._compute(root)
        return self.kept[root]

    def _compute(self, root: str) -> torch.Tensor:
        g, members = self.g, self.members[root]
        size = len(g.live[members[0].name])
        derived = [m for m in members if g.rules[m.name] in ("cat", "flatten")]
        free = [m for m in members if g.rules[m.name] in SOURCES]
        if any(m.name in g.needs_all for m in members) or len(derived) > 1 or (derived and free):
            for d in derived:  # a concatenation feeding a group that keeps everything keeps all its inputs
                g.needs_all.update(a.name for a in _tensors(d) if a.name in g.live)
            return torch.arange(size)
        if derived:
            return self._derived(derived[0])
        live = torch.stack([g.live[m.name] for m in members]).any(0).nonzero().flatten()
        return live if len(live) else torch.zeros(1, dtype=torch.long)  # a layer keeps at least one channel

    def _derived(self, node: fx.Node) -> torch.Tensor:
        ins = [a for a in _tensors(node) if a.name in self.g.live]
        if self.g.rules[node.name] == "flatten":
            src = self.g.values[ins[0].name]
            hw = src.shape[2] * src.shape[3]
            kept = self.of(self.g.groups.find(ins[0].name))
            return (kept[:, None] * hw + torch.arange(hw)).flatten()
        parts, offset = [], 0
        for a in node.args[0]:
            parts.append(self.of(self.g.groups.find(a.name)) + offset)
            offset += self.g.values[a.name].shape[1]
        return torch.cat(parts)


def _gathering_graph(nodes, rules: dict[str, str], live: dict, values: dict) -> _Graph:
    """The grouped graph, with a depthwise conv that has empty filters on ≥ 20% of its live input channels as a
    source of its own ("gather": it computes only its live channels, from a gathered subset of its input) wherever its
    output reaches only channel-wise ops before its consumers; elsewhere it stays channel-wise."""
    for n in nodes:
        if rules[n.name] == "depthwise" and 0 < int(live[n.name].sum()) <= GATHER_BELOW * int(
                live[_tensors(n)[0].name].sum()):
            rules[n.name] = "gather"
    while True:
        graph = _Graph(nodes, rules, live, values)
        graph.build_groups()
        members: dict[str, list[str]] = {}
        for name in live:
            members.setdefault(graph.groups.find(name), []).append(name)
        bad = [n.name for n in nodes if rules[n.name] == "gather" and any(
            m != n.name and rules[m] != "channelwise" or m in graph.needs_all
            for m in members[graph.groups.find(n.name)])]
        if not bad:
            return graph
        rules.update({name: "depthwise" for name in bad})


def _analyse(model: nn.Module, example: torch.Tensor) -> tuple[_Graph, dict[str, nn.Module]]:
    """The grouped graph of the eval-mode `model` traced on `example`, and its modules by name."""
    gm = fx.GraphModule(model, LeafTracer().trace(model))
    recorder = _Recorder(gm)
    recorder.run(example[:1])
    values, modules = recorder.values, dict(gm.named_modules())
    calls = Counter(n.target for n in gm.graph.nodes if n.op == "call_module")
    nodes = list(gm.graph.nodes)
    rules = {n.name: classify(n, modules, calls, values) for n in nodes}
    live: dict[str, torch.Tensor] = {}
    for n in nodes:
        if isinstance(values.get(n.name), torch.Tensor) and rules[n.name] not in ("meta", "output"):
            module = modules.get(n.target) if n.op == "call_module" else None
            live[n.name] = _live(rules[n.name], n, module, live, values)
    return _gathering_graph(nodes, rules, live, values), modules


@torch.no_grad()
def coupled_layers(model: nn.Module, example: torch.Tensor) -> list[list[str]]:
    """The layers whose output channels are coupled (Torch-Pruning's dependency groups), by module name: per
    group of two or more, its producers (conv / linear) and the depthwise convs inside it (not the gathering
    ones, which are sources of their own), in graph order. Sparse layers are analysed with their masks applied
    (a depthwise conv gathers where its mask empties enough filters); `model` is run in eval mode on
    `example[:1]`, its mode restored (raises whatever torch.fx raises on an untraceable model)."""
    training = model.training
    try:
        graph, _ = _analyse(model.eval(), example)
    finally:
        model.train(training)
    members: dict[str, list[str]] = {}
    for n in graph.nodes:
        if n.op == "call_module" and graph.rules[n.name] in ("conv", "linear", "depthwise"):
            members.setdefault(graph.groups.find(n.name), []).append(n.target)
    return [names for names in members.values() if len(names) > 1]


@torch.no_grad()
def plan_removal(model: nn.Module, example: torch.Tensor) -> Removal:
    """The channels of every conv / linear / depthwise conv / BatchNorm of the plain, eval-mode `model` that
    can go, traced on `example` (raises whatever torch.fx raises on an untraceable model)."""
    graph, modules = _analyse(model, example)
    nodes, rules, values = graph.nodes, graph.rules, graph.values
    kept = graph.kept_all()
    removal = Removal()
    for n in nodes:
        if n.op != "call_module" or rules[n.name] not in ("conv", "linear", "gather", "depthwise", "channelwise"):
            continue
        out = kept[graph.groups.find(n.name)]
        src = _tensors(n)[0]
        kin = kept[graph.groups.find(src.name)] if rules[n.name] in SOURCES else out
        full_in, full_out = values[src.name].shape[1], values[n.name].shape[1]
        if rules[n.name] == "channelwise" and not isinstance(modules[n.target], nn.modules.batchnorm._BatchNorm):
            continue
        if len(kin) < full_in or len(out) < full_out:
            removal.kept[n.target] = (kin, out)
            removal.inputs[n.target] = values[src.name]
    return removal
