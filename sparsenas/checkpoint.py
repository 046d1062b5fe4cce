"""state/checkpoint.json: the search loop's and the strategy's state as plain JSON, which cannot carry code.

A run directory is input (it may have been copied from elsewhere or edited), so nothing read from it may run
code: no pickle. `encode` turns a state (dicts, lists, tuples, numbers, strings, None, NumPy arrays and torch
tensors) into JSON-able data that `decode` turns back into the same structure, exactly: tensors and arrays as
dtype, shape and base64 bytes; tuples and dicts with non-string keys (an optimizer's parameter indices) tagged.
The file carries a format number, the space and strategy that wrote it and a SHA-256 of the state, so a
checkpoint that is corrupt, from another version or from another run is refused with one line.
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError
from .journal import read_regular, write_atomic

FORMAT = 2
TENSOR_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
    torch.int8, torch.uint8, torch.bool)}
ARRAY_DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64", "uint32", "uint16",
                "uint8", "bool")


def encode(obj: Any) -> Any:
    """`obj` as JSON-able data (see the module docstring); anything else is a TypeError."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        return {"__tensor__": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                "data": base64.b64encode(raw).decode()}
    if isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        return {"__array__": a.dtype.name, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v) for v in obj]}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode(v) for k, v in obj.items()}
        return {"__items__": [[encode(k), encode(v)] for k, v in obj.items()]}
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def decode(data: Any) -> Any:
    """The inverse of `encode`; malformed data is a ValueError."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "__tensor__" in data:
        dtype = TENSOR_DTYPES.get(data["__tensor__"])
        if dtype is None:
            raise ValueError(f"tensor dtype {data['__tensor__']!r}")
        raw = bytearray(base64.b64decode(data["data"], validate=True))
        if not raw:
            return torch.empty(_shape(data["shape"]), dtype=dtype)
        return torch.frombuffer(raw, dtype=torch.uint8).view(dtype).reshape(_shape(data["shape"])).clone()
    if "__array__" in data:
        if data["__array__"] not in ARRAY_DTYPES:
            raise ValueError(f"array dtype {data['__array__']!r}")
        raw = base64.b64decode(data["data"], validate=True)
        return np.frombuffer(raw, dtype=data["__array__"]).reshape(_shape(data["shape"])).copy()
    if "__tuple__" in data:
        return tuple(decode(v) for v in data["__tuple__"])
    if "__items__" in data:
        return {_key(decode(k)): decode(v) for k, v in data["__items__"]}
    return {k: decode(v) for k, v in data.items()}


def _shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError(f"shape {shape!r}")
    return tuple(shape)


def _key(key: Any) -> Any:
    hash(key)  # a list here would be a TypeError: say it as a ValueError
    return key


def _digest(state: Any) -> str:
    return hashlib.sha256(json.dumps(state, sort_keys=True, allow_nan=True).encode()).hexdigest()


def save(path: Path, state: dict[str, Any], *, space: str, strategy: str) -> None:
    """Write `state` atomically, stamped with the format, the space and the strategy."""
    data = encode(state)
    write_atomic(path, json.dumps({"format": FORMAT, "space": space, "strategy": strategy,
                                   "sha256": _digest(data), "state": data}, allow_nan=True))


def load(path: Path, *, space: str, strategy: str) -> dict[str, Any]:
    """The state saved by `save` for this space and strategy; anything else is a one-line ConfigError."""
    where = f"checkpoint {path}"
    try:
        doc = json.loads(read_regular(path))
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{where} is corrupt (not JSON); remove it to resume from trials.jsonl alone "
                          "(the strategy then re-learns from the finished trials)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise ConfigError(f"{where} has format {found!r}, this sparsenas reads format {FORMAT}")
    if (doc.get("space"), doc.get("strategy")) != (space, strategy):
        raise ConfigError(f"{where} was written by space {doc.get('space')!r} and strategy {doc.get('strategy')!r}, "
                          f"not {space!r} and {strategy!r}")
    if doc.get("sha256") != _digest(doc.get("state")):
        raise ConfigError(f"{where} is corrupt (checksum mismatch); remove it to resume from trials.jsonl alone "
                          "(the strategy then re-learns from the finished trials)")
    try:
        state = decode(doc["state"])
    except (ValueError, TypeError, KeyError, RuntimeError) as e:
        raise ConfigError(f"{where} is corrupt ({e})") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{where} is corrupt (its state is not an object)")
    return state
