"""The graph an arch's network runs as, and its features for the `learned` predictor.

`run_graph(module, x)` traces one forward pass (every top-level torch call, as `kernels.trace`) and follows the
data: which tensors depend on the input, which are known zeros, which call produced what. Two views of it:

  all    every call that computes on the input — what eager PyTorch executes;
  live   what a graph compiler (ONNX Runtime, XNNPACK, TensorRT) executes after constant folding and dead-code
         elimination: a multiplication by zero is a zero constant (NB201's `none` edge, written x·0), calls
         whose inputs are all constants are folded, an add of a constant (a zero, a folded branch, a bias) is
         fused into the producer of its other operand, and calls whose result does not reach the output are
         dropped.

`graph_features` summarises a view: per op kind (conv2d is split by kernel size and depthwise) the number of
calls, their MACs, the bytes they read and write and the nonzero weights they use; per (kind, stage) the number
of calls, the stage being the output's spatial size; the number of calls, the longest input→output chain of
calls (the path length) and the totals. Feature names are strings (`view:...`), so a predictor file can list
the ones it was fitted on.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .kernels import call_features, op_name, tensors_of

ADDS = frozenset({"add", "add_", "__add__", "__radd__", "__iadd__"})
MULS = frozenset({"mul", "mul_", "__mul__", "__rmul__", "__imul__"})
# ops whose output is zero when their (first) input is zero (conv2d only without bias); as runtimes.ZERO_PRESERVING
ZERO_PRESERVING = frozenset({"relu", "relu_", "avg_pool2d", "max_pool2d", "conv2d", "flatten", "reshape", "view",
                             "dropout", "contiguous"})


@dataclass
class Call:
    kind: str
    features: tuple[float, ...]  # kernels.FEATURES
    stage: int
    weights: int  # nonzero weights the call reads
    folded: bool  # a compiler folds it away (constant inputs, x·0, x + 0)
    inputs: list[int] = field(default_factory=list)  # calls producing its inputs, in the live view
    made_from: list[int] = field(default_factory=list)  # calls producing its inputs, in the eager view


def _is_zero_scalar(obj) -> bool:
    return isinstance(obj, (int, float)) and not isinstance(obj, bool) and obj == 0


def _kind(op: str, args: tuple, kwargs: dict) -> str:
    if op == "conv2d" and len(args) > 1 and isinstance(args[1], torch.Tensor):
        w = args[1]
        groups = args[6] if len(args) > 6 else kwargs.get("groups", 1)
        return f"conv{w.shape[-1]}x{w.shape[-2]}" + ("dw" if groups > 1 and groups == w.shape[0] else "")
    return op.strip("_").removesuffix("_")


class _DataFlow(TorchFunctionMode):
    """Records every call on tensors computed in the forward pass (not on parameters alone); tensors are kept
    alive so that their ids stay unique."""

    def __init__(self, x: torch.Tensor):
        super().__init__()
        self.calls: list[Call] = []
        self.made: dict[int, int] = {id(x): -1}  # tensor computed in the pass → the call that made it (-1: input)
        self.producer: dict[int, int] = {id(x): -1}  # the same for input-dependent tensors, in the live view
        self.zeros: set[int] = set()
        self.keep: list = [x]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        flat = list(args) + list(kwargs.values())
        ins, outs = tensors_of(flat), tensors_of(out)
        runtime = [t for t in ins if id(t) in self.made]
        if not runtime or not outs:
            return out
        self.keep += outs
        op = op_name(func)
        kind = _kind(op, args, kwargs)
        dependent = [t for t in runtime if id(t) in self.producer and id(t) not in self.zeros]
        scalars_zero = all(_is_zero_scalar(a) for a in flat if not isinstance(a, torch.Tensor))
        zero = (op in MULS and (any(_is_zero_scalar(a) for a in flat) or any(id(t) in self.zeros for t in ins))) \
            or (id(ins[0]) in self.zeros and op in ZERO_PRESERVING and not (op == "conv2d" and _bias(args, kwargs))) \
            or (op in ADDS and all(id(t) in self.zeros for t in ins) and scalars_zero)
        alias = op in ADDS and len(dependent) == 1  # x + a constant: fused into x's producer (its bias)
        folded = zero or alias or not dependent
        weights = sum(int(torch.count_nonzero(t)) for t in ins if t.layout == torch.strided and t.dim() > 1
                      and id(t) not in self.made)
        shape = outs[0].shape
        self.calls.append(Call(kind, call_features(op, args, kwargs, out), int(shape[-1]) if len(shape) == 4 else 0,
                               weights, folded, [self.producer[id(t)] for t in dependent],
                               [self.made[id(t)] for t in runtime]))
        for t in outs:
            self.made[id(t)] = len(self.calls) - 1
            if zero:
                self.zeros.add(id(t))
            elif alias:
                self.producer[id(t)] = self.producer[id(dependent[0])]
            elif not folded:
                self.producer[id(t)] = len(self.calls) - 1
        return out


def _bias(args, kwargs) -> bool:
    return (args[2] if len(args) > 2 else kwargs.get("bias")) is not None


@dataclass
class RunGraph:
    """The calls of one forward pass and, per view, the indices of those that run."""

    calls: list[Call]
    views: dict[str, list[int]]


@torch.no_grad()
def run_graph(module: nn.Module, x: torch.Tensor) -> RunGraph:
    flow = _DataFlow(x)
    with flow:
        out = module(x)
    seen, stack = set(), [flow.producer.get(id(t), -1) for t in tensors_of(out) if id(t) not in flow.zeros]
    while stack:
        i = stack.pop()
        if i >= 0 and i not in seen:
            seen.add(i)
            stack += flow.calls[i].inputs
    return RunGraph(flow.calls, {"all": list(range(len(flow.calls))), "live": sorted(seen)})


def _path_length(calls: list[Call], idx: list[int], view: str) -> int:
    keep, depth = set(idx), {}
    for i in idx:  # calls are in execution order, so inputs come first
        inputs = calls[i].inputs if view == "live" else calls[i].made_from
        depth[i] = 1 + max((depth[j] for j in inputs if j in keep), default=0)
    return max(depth.values(), default=0)


def graph_features(graph: RunGraph) -> dict[str, float]:
    """{feature name: value} of both views (see the module docstring)."""
    out: dict[str, float] = {}
    for view, idx in graph.views.items():
        f: dict[str, float] = defaultdict(float)
        for i in idx:
            c = graph.calls[i]
            in_elems, out_elems, macs = c.features[:3]
            f[f"{view}:count:{c.kind}"] += 1
            f[f"{view}:count:{c.kind}@{c.stage}"] += 1
            f[f"{view}:macs:{c.kind}"] += macs
            f[f"{view}:bytes:{c.kind}"] += 4 * (in_elems + out_elems)
            f[f"{view}:weights:{c.kind}"] += c.weights
            f[f"{view}:total:macs"] += macs
            f[f"{view}:total:bytes"] += 4 * (in_elems + out_elems)
        f[f"{view}:total:calls"] = float(len(idx))
        f[f"{view}:total:path"] = float(_path_length(graph.calls, idx, view))
        out.update(f)
    return out
