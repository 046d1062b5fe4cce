"""Artifacts that run without sparsenas, written beside export's state dict (`sparsenas export --format`):

  pt           only OUT/model.pt (a state dict; `sparsenas.export.load_exported` rebuilds the module)
  torchscript  OUT/model.torchscript.pt: `torch.jit.trace` of the deployable module (traced at batch 2, so the
               batch size is free), loadable with `torch.jit.load` alone. CSR layers stay CSR: their buffers
               are saved and the CSR tensor is built in the traced graph. (`torch.export` cannot trace sparse
               CSR tensors in torch 2.13: "Values and compressed tensor instance need to be on the same device".)
  onnx         OUT/model.onnx (TorchScript exporter, opset 17, dynamic batch axis). ONNX has no sparse tensors:
               every CSR / BSR / 2:4 layer is stored dense (listed in `dense_layers`); removed channels stay
               removed (smaller dense layers). Needs the `onnx` extra; checked with onnxruntime when installed.
Each writer checks that the artifact reproduces the deployable module (< 1e-4) on the example input and
returns what export.json records under "artifact".
"""
from __future__ import annotations

import copy
import importlib.util
import io
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import Registry
from .channel_removal import replace_module

FORMATS: Registry[Callable[[nn.Module, torch.Tensor, Path], dict]] = Registry("export format")
NEEDS = {"onnx": "onnx"}  # format -> the package it needs (the `onnx` extra)


def check_format(fmt: str) -> None:
    """Raise ConfigError for an unknown format or one whose package is not installed (before any work)."""
    FORMATS.get(fmt)
    if fmt in NEEDS and importlib.util.find_spec(NEEDS[fmt]) is None:
        raise ConfigError(f"--format {fmt} needs {NEEDS[fmt]} (pip install sparsenas[onnx])")


def _check(expected: torch.Tensor, got, what: str) -> float:
    diff = float((expected - torch.as_tensor(got)).abs().max())
    if not diff < 1e-4:
        raise RuntimeError(f"the {what} artifact differs from the exported module by {diff:.3g} (> 1e-4)")
    return diff


@FORMATS.register("pt")
def _pt(module: nn.Module, x: torch.Tensor, out: Path) -> dict:
    return {"format": "pt", "file": "model.pt"}


@FORMATS.register("torchscript")
def _torchscript(module: nn.Module, x: torch.Tensor, out: Path) -> dict:
    x2 = x[:2] if len(x) >= 2 else torch.cat([x, x])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings on shape checks, "sparse CSR is in beta"
        traced = torch.jit.trace(module.eval(), x2)
    path = out / "model.torchscript.pt"
    torch.jit.save(traced, str(path))
    with torch.no_grad():
        diff = _check(module(x), torch.jit.load(str(path))(x), "torchscript")
    return {"format": "torchscript", "file": path.name, "max_abs_diff": diff}


def densified(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """A copy of `module` with every sparse-kernel layer as its dense equivalent, and their names."""
    module = copy.deepcopy(module)
    names = []
    for name, m in list(module.named_modules()):
        weight = getattr(m, "weight", None)
        if hasattr(m, "dense") and callable(m.dense):
            module = replace_module(module, name, m.dense())
        elif isinstance(weight, torch.Tensor) and weight.layout != torch.strided or type(weight) not in (
                torch.Tensor, nn.Parameter, type(None)):  # BSR / CSR parameter, or a semi-structured subclass
            m.weight = nn.Parameter(weight.to_dense(), requires_grad=False)
        else:
            continue
        names.append(name)
    return module, names


def onnx_bytes(module: nn.Module, x: torch.Tensor, dynamic_batch: bool = False) -> bytes:
    """`module` (dense layers only) as an ONNX model traced on `x`: the TorchScript exporter, opset 17, input
    `x` and output `y`; the batch dimension fixed to x's unless `dynamic_batch`."""
    axes = {"x": {0: "batch"}, "y": {0: "batch"}} if dynamic_batch else None
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          opset_version=17, dynamic_axes=axes)
    return buf.getvalue()


@FORMATS.register("onnx")
def _onnx(module: nn.Module, x: torch.Tensor, out: Path) -> dict:
    try:
        import onnx
    except ImportError:
        raise ConfigError("--format onnx needs onnx (pip install sparsenas[onnx])") from None
    dense, names = densified(module)
    data = onnx_bytes(dense.eval(), x, dynamic_batch=True)
    onnx.checker.check_model(onnx.load_from_string(data))
    path = out / "model.onnx"
    path.write_bytes(data)
    info = {"format": "onnx", "file": path.name, "dense_layers": names,
            "note": "ONNX has no sparse tensors: these layers are stored dense" if names else ""}
    try:
        import onnxruntime as ort
    except ImportError:
        return info
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        info["max_abs_diff"] = _check(module(x), session.run(None, {"x": x.cpu().numpy()})[0], "onnx")
    return info
