"""Kernels of a forward pass (nn-Meter's unit of latency), found by tracing every top-level torch call.

`trace(module, x)` runs one forward pass under a TorchFunctionMode and records each call the module makes
into torch (conv2d, linear, batch_norm, relu, add, cat, the CSR matmul of an exported layer, ...) as a
`KernelCall`: its op, a `signature` (op + argument shapes/layouts/nnz + scalar arguments: the table key,
so two calls with the same signature cost the same), regression `features` and the name of the enclosing
`layers` module it ran in. With `keep=True` the call's arguments are kept so that `replay_ms` can time the
kernel alone (profiling). Calls made inside a traced call (e.g. the ATen ops of F.batch_norm) are part of it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..ops.timing import Timing, robust_ms

FEATURES = ("in_elems", "out_elems", "macs", "nnz", "kernel", "stride", "groups")


@dataclass
class KernelCall:
    op: str
    signature: str
    features: tuple[float, ...]
    layer: str | None = None
    call: tuple[Callable, tuple, dict] | None = field(default=None, repr=False)


def tensors_of(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in tensors_of(o)]
    return []


def _nnz(t: torch.Tensor) -> int:
    return int(t.values().numel()) if t.layout != torch.strided else 0


def _sig(obj) -> str:
    if isinstance(obj, torch.Tensor):
        dtype = str(obj.dtype).removeprefix("torch.")
        if type(obj) not in (torch.Tensor, nn.Parameter):  # e.g. a semi-structured sparse weight (N:M on GPU)
            return f"{type(obj).__name__}{tuple(obj.shape)}:{dtype}"
        if obj.layout != torch.strided:
            return f"{str(obj.layout).removeprefix('torch.')}{tuple(obj.shape)}:{dtype}:nnz{_nnz(obj)}"
        return f"T{tuple(obj.shape)}:{dtype}" + ("" if obj.is_contiguous() else ":nc")
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(_sig(o) for o in obj) + "]"
    if obj is None or isinstance(obj, (bool, int, float, str, torch.dtype, torch.device, torch.layout)):
        return repr(obj)
    return type(obj).__name__


def op_name(func) -> str:
    name = getattr(func, "__name__", None) or type(func).__name__
    return name.strip("_") or name


def call_features(op: str, args: tuple, kwargs: dict, out) -> tuple[float, ...]:
    ins = tensors_of(list(args) + list(kwargs.values()))
    in_elems = sum(t.numel() for t in ins if t.layout == torch.strided)
    nnz = sum(_nnz(t) for t in ins)
    out_elems = sum(t.numel() for t in tensors_of(out) if t.layout == torch.strided)
    macs, kernel, stride, groups = 0, 0, 0, 0
    if op == "conv2d" and len(ins) >= 2:
        w = ins[1]
        macs = out_elems * w[0].numel()
        kernel = w.shape[-1]
        stride = _arg(args, kwargs, 3, "stride", 1)
        stride = stride[0] if isinstance(stride, (list, tuple)) else stride
        groups = _arg(args, kwargs, 6, "groups", 1)
    elif op == "linear" and len(ins) >= 2:
        macs = out_elems * ins[1].shape[-1]
    elif op.startswith("csr_pointwise") and len(ins) >= 4:  # sparsenas::csr_pointwise(x, crow, col, values, …)
        nnz = ins[3].numel()
        macs = nnz * out_elems // max(out.shape[1], 1)  # every weight once per output pixel
    elif op in ("matmul", "mm", "addmm") and len(ins) >= 2:
        sparse = [t for t in ins if t.layout != torch.strided]
        dense = [t for t in ins if t.layout == torch.strided]
        if sparse and dense:
            macs = nnz * dense[-1].shape[-1]
        elif len(dense) >= 2:
            macs = out_elems * dense[0].shape[-1]
    return tuple(float(v) for v in (in_elems, out_elems, macs, nnz, kernel, stride, groups))


def _arg(args, kwargs, index, name, default):
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


class _Tracer(TorchFunctionMode):
    def __init__(self, keep: bool):
        super().__init__()
        self.keep = keep
        self.calls: list[KernelCall] = []
        self.layer: str | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        op = op_name(func)
        signature = f"{op}({_sig(args)}{_sig(sorted(kwargs.items()))})"
        self.calls.append(KernelCall(op, signature, call_features(op, args, kwargs, out), self.layer,
                                     (func, args, kwargs) if self.keep else None))
        return out


@dataclass
class Trace:
    calls: list[KernelCall]
    module_calls: int  # nn.Module forward calls (each costs Python dispatch time beyond its kernels)


@torch.no_grad()
def trace(module: nn.Module, x: torch.Tensor, layers: tuple[str, ...] = (), keep: bool = False) -> Trace:
    """The kernel calls of one forward pass of `module` on `x`; calls inside the submodules named in
    `layers` are tagged with that name."""
    tracer = _Tracer(keep)
    count = [0]
    hooks = []

    def enter(name):
        def hook(mod, inp):
            tracer.layer = name
        return hook

    def leave(mod, inp, out):
        tracer.layer = None

    for name, sub in module.named_modules():
        hooks.append(sub.register_forward_pre_hook(lambda *a: count.__setitem__(0, count[0] + 1)))
        if name in layers:
            hooks += [sub.register_forward_pre_hook(enter(name)), sub.register_forward_hook(leave)]
    try:
        with tracer:
            module(x)
    finally:
        for h in hooks:
            h.remove()
    return Trace(tracer.calls, count[0])


def replay_timings(calls: list[KernelCall], device: str = "cpu", warmup: int = 3, repeats: int = 15) -> list[Timing]:
    """Robust timings (`ops.timing.robust_ms`: interleaved, low quantile) of each kernel alone, called again
    with the arguments it had in the trace."""
    return robust_ms([lambda c=c: c.call[0](*c.call[1], **c.call[2]) for c in calls], device, warmup, repeats)


def replay_ms(call: KernelCall, device: str = "cpu", warmup: int = 3, repeats: int = 15) -> float:
    """Robust milliseconds of one kernel alone (see `replay_timings`)."""
    return replay_timings([call], device, warmup, repeats)[0].ms


def log_features(features) -> list[float]:
    return [math.log1p(max(0.0, float(v))) for v in features]


__all__ = ["FEATURES", "KernelCall", "Trace", "call_features", "log_features", "op_name", "tensors_of", "replay_ms", "replay_timings",
           "trace"]
