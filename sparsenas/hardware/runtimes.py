"""Runtimes that execute a runnable module for `measured` (`latency.runtime`): a runtime turns (module, example
input, target) into a callable that runs one forward pass.

  torch        eager PyTorch: the module as it is (every op it calls runs, in Python order).
  onnxruntime  ONNX Runtime on the CPU with all graph optimisations (constant folding, Conv+BN/activation
               fusion, NCHWc layouts, dead-node removal), `target.threads` intra-op threads. The module is
               exported to ONNX (TorchScript exporter, opset 17) with every layer dense (ONNX has no CSR matmul
               operator that export could target), then `fold_zero_products` removes the work whose result is
               known to be zero before ORT loads it: a graph compiler's view of e.g. NB201's `none` edge
               (written x·0), so a branch that only feeds zeros costs nothing, as on XNNPACK or TensorRT.
Needs the `onnx` extra (pip install sparsenas[onnx]) for onnxruntime.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..ops.formats import onnx_bytes
from ..registry import Registry

RUNTIMES: Registry[Callable[[nn.Module, torch.Tensor, Any], Callable[[], Any]]] = Registry("latency runtime")


@RUNTIMES.register("torch")
def torch_runner(module: nn.Module, x: torch.Tensor, target) -> Callable[[], Any]:
    return lambda: module(x)


# ops whose output is zero when their first input is zero (Conv only without a bias input)
ZERO_PRESERVING = frozenset({"Relu", "AveragePool", "MaxPool", "Identity", "Conv", "Flatten", "Reshape"})


def _zero_constants(graph) -> set[str]:
    from onnx import numpy_helper

    zeros = {t.name for t in graph.initializer if not numpy_helper.to_array(t).any()}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            if not numpy_helper.to_array(node.attribute[0].t).any():
                zeros.add(node.output[0])
    return zeros


def fold_zero_products(model):
    """The ONNX `model` with the work that only produces zeros removed: a Mul by a zero constant is zero, a
    zero-preserving op (ZERO_PRESERVING) of a zero is zero, an Add of zeros and one tensor is that tensor; the
    zeros still read by other ops become constant initializers (which ORT's constant folding then propagates)
    and nodes whose outputs nobody reads are dropped."""
    from onnx import helper, numpy_helper, shape_inference

    model = shape_inference.infer_shapes(model)
    graph = model.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*graph.value_info, *graph.output, *graph.input]}
    const_zero, zero, kept = _zero_constants(graph), set(), []
    for node in graph.node:
        ins = [i for i in node.input if i]
        data_zero = bool(ins) and ins[0] in zero
        if (node.op_type == "Mul" and any(i in zero or i in const_zero for i in ins)) or (
                node.op_type in ZERO_PRESERVING and data_zero and not (node.op_type == "Conv" and len(ins) > 2)):
            zero.add(node.output[0])
        elif node.op_type in ("Add", "Sum") and any(i in zero for i in ins):
            rest = [i for i in ins if i not in zero]
            if not rest:
                zero.add(node.output[0])
            elif len(rest) == 1 and shapes.get(rest[0]) == shapes.get(node.output[0]):
                kept.append(helper.make_node("Identity", rest, list(node.output), name=node.name))
            else:
                kept.append(node)
        else:
            kept.append(node)
    read = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    for name in sorted(zero & read):
        shape = shapes.get(name)
        if not shape or 0 in shape:
            raise ConfigError(f"onnxruntime: cannot fold the zeros of {name!r} (shape unknown)")
        graph.initializer.append(numpy_helper.from_array(np.zeros(shape, np.float32), name))
    while True:  # dead-node removal
        read = {i for n in kept for i in n.input} | {o.name for o in graph.output}
        live = [n for n in kept if any(o in read for o in n.output)]
        if len(live) == len(kept):
            break
        kept = live
    del graph.node[:]
    graph.node.extend(kept)
    return model


def onnx_model(module: nn.Module, x: torch.Tensor):
    """`module` exported to ONNX on input `x` (batch size fixed) and folded by `fold_zero_products`."""
    try:
        import onnx
    except ImportError:
        raise ConfigError("latency.runtime onnxruntime needs onnx and onnxruntime (pip install sparsenas[onnx])") \
            from None
    return fold_zero_products(onnx.load_from_string(onnx_bytes(module, x)))


@RUNTIMES.register("onnxruntime")
def onnxruntime_runner(module: nn.Module, x: torch.Tensor, target) -> Callable[[], Any]:
    if target.device != "cpu" or target.dtype != "float32":
        raise ConfigError("latency.runtime onnxruntime runs on device cpu with dtype float32")
    model = onnx_model(module, x)
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("latency.runtime onnxruntime needs onnxruntime (pip install sparsenas[onnx])") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads, options.inter_op_num_threads = target.threads, 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"x": x.detach().cpu().numpy()}
    return lambda: session.run(None, feed)
