"""NAS-Bench-201 topology space: a cell of 4 nodes and 6 edges (i→j), each edge one of 5 ops; 15,625 archs.

Two forms, chosen by `mode`:
- `table` (default): a tabular benchmark. `benchmark_file` is a CSV with an `arch_str` column in the official
  string form `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`; the `signal` column is reported as `val_acc` (the search
  signal, default the 12-epoch CIFAR-10-valid accuracy) and the `final` column as `test_acc` (default the
  200-epoch CIFAR-10 test accuracy). The package ships no table.
- `train`: the NB201 cell network (`NB201Network`) is built and trained on `data` like any TrainedSpace.

`flops` and `params` are exact for the NB201 network with C channels and N cells per stage: in table mode for
CIFAR-10 (3×32×32 input, 10 classes; C=16, N=5 as in the NB201 paper), in train mode for the data in use.
Convention (the project's, see sparsenas.ops.accounting): `flops` = multiply-accumulates of the conv and
linear layers for one sample; `params` = every trainable parameter (conv, BN affine, classifier with bias).
Every op of the cell is counted, also one whose output cannot reach the cell's output.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

from torch import nn

from ..errors import ConfigError
from ..schema import OPT_STR, Field, count, one_of
from ..space import Arch, Categorical, register_space
from ..tables import read_table
from .trained import TrainedSpace

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # (from, to), in arch_str order
EDGE_LABELS = tuple(f"edge_{i}_{j}" for i, j in EDGES)
_OP = "(" + "|".join(OPS) + ")"
ARCH_STR = re.compile(rf"\|{_OP}~0\|\+\|{_OP}~0\|{_OP}~1\|\+\|{_OP}~0\|{_OP}~1\|{_OP}~2\|")
MODES = ("table", "train")


def arch_str(arch) -> str:
    """The official NB201 string of an arch (its `label`)."""
    nodes = []
    for j in (1, 2, 3):
        nodes.append("|" + "|".join(f"{arch[f'edge_{i}_{j}']}~{i}" for i in range(j)) + "|")
    return "+".join(nodes)


def parse_arch_str(text: str) -> Arch:
    """The Arch of an official NB201 string; ConfigError if it is not one."""
    try:
        values = {}
        nodes = text.strip().split("+")
        if len(nodes) != 3:
            raise ValueError
        for j, node in enumerate(nodes, start=1):
            if not (node.startswith("|") and node.endswith("|")):
                raise ValueError
            items = node[1:-1].split("|")
            if len(items) != j:
                raise ValueError
            for item in items:
                op, _, i = item.partition("~")
                if op not in OPS or not i.isdigit() or int(i) >= j:
                    raise ValueError
                values[f"edge_{int(i)}_{j}"] = op
        if len(values) != len(EDGES):
            raise ValueError
    except ValueError:
        raise ConfigError(f"not an NB201 arch string: {text!r}") from None
    return Arch(values)


@functools.lru_cache(maxsize=8)
def _load_table(path: str, mtime: float, signal: str, final: str) -> dict[str, tuple[float, float]]:
    """{arch_str: (signal, final)} — read once per process (the cache key includes the file's mtime)."""
    _, rows = read_table(path, ["arch_str", signal, final], hints={signal: "space.signal", final: "space.final"})
    table = {}
    for n, row in enumerate(rows, start=2):
        try:
            label = (row["arch_str"] or "").strip()
            if not ARCH_STR.fullmatch(label):
                raise ValueError
            table[label] = (float(row[signal]), float(row[final]))
        except (TypeError, ValueError):
            raise ConfigError(f"NB201 table {path} line {n}: bad row {row.get('arch_str')!r}") from None
    return table


# -- analytic accounting ----------------------------------------------------------------------------------
def nb201_counts(arch, C: int = 16, N: int = 5, input_shape=(3, 32, 32), num_classes: int = 10) -> dict[str, float]:
    """Exact `flops` and `params` of `NB201Network(arch, C, N, input_shape, num_classes)` without building it."""
    in_ch, h, w = input_shape
    conv = {"nor_conv_1x1": 1, "nor_conv_3x3": 9}
    flops = h * w * 9 * in_ch * C                      # stem conv
    params = 9 * in_ch * C + 2 * C                     # stem conv + BN
    c = C
    for stage in range(3):
        if stage:                                      # residual reduction block, stride 2
            cin, c = c, 2 * c
            h, w = (h + 1) // 2, (w + 1) // 2          # conv 3x3, stride 2, padding 1
            flops += h * w * (9 * cin * c + 9 * c * c)
            params += 9 * cin * c + 2 * c + 9 * c * c + 2 * c
            flops += h * w * cin * c                   # AvgPool2d(2, 2, ceil) then 1x1 conv
            params += cin * c
        k = sum(conv.get(arch[e], 0) for e in EDGE_LABELS)
        flops += N * h * w * k * c * c
        params += N * sum(conv[arch[e]] * c * c + 2 * c for e in EDGE_LABELS if arch[e] in conv)
    params += 2 * c + c * num_classes + num_classes  # last BN, classifier
    flops += c * num_classes
    return {"flops": float(flops), "params": float(params)}


# -- the network (trainable form) -------------------------------------------------------------------------
class ReLUConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__(nn.ReLU(), nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))


class Zero(nn.Module):
    def forward(self, x):
        return x * 0.0


def make_op(name: str, c: int) -> nn.Module:
    return {"none": Zero, "skip_connect": nn.Identity,
            "nor_conv_1x1": lambda: ReLUConvBN(c, c, 1), "nor_conv_3x3": lambda: ReLUConvBN(c, c, 3),
            "avg_pool_3x3": lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False)}[name]()


class Cell(nn.Module):
    """node_j = Σ_{i<j} op_ij(node_i); the output is node 3."""

    def __init__(self, arch, c: int):
        super().__init__()
        self.ops = nn.ModuleDict({e: make_op(arch[e], c) for e in EDGE_LABELS})

    def forward(self, x):
        nodes = [x]
        for j in (1, 2, 3):
            nodes.append(sum(self.ops[f"edge_{i}_{j}"](nodes[i]) for i in range(j)))
        return nodes[3]


class ResBlock(nn.Module):
    """NB201's reduction: ReLUConvBN 3x3 stride 2 → ReLUConvBN 3x3, plus AvgPool 2x2 → 1x1 conv shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv_a, self.conv_b = ReLUConvBN(cin, cout, 3, 2), ReLUConvBN(cout, cout, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2, ceil_mode=True), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x):
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


class NB201Network(nn.Sequential):
    """Stem conv → N cells (C) → reduction → N cells (2C) → reduction → N cells (4C) → BN-ReLU-pool → linear."""

    def __init__(self, arch, C: int = 16, N: int = 5, input_shape=(3, 32, 32), num_classes: int = 10):
        layers: list[nn.Module] = [nn.Conv2d(input_shape[0], C, 3, 1, 1, bias=False), nn.BatchNorm2d(C)]
        c = C
        for stage in range(3):
            if stage:
                layers.append(ResBlock(c, 2 * c))
                c *= 2
            layers += [Cell(arch, c) for _ in range(N)]
        layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
        super().__init__(*layers)


# -- the space --------------------------------------------------------------------------------------------
@register_space("nb201")
class NB201Space(TrainedSpace):
    options_schema = {"mode": one_of("table", MODES), "benchmark_file": Field(None, OPT_STR),
                      "signal": Field("c10valid_val_12", (str,)), "final": Field("c10_test_200", (str,)),
                      "C": count(16), "N": count(5)}

    def dims(self):
        return {label: Categorical(OPS) for label in EDGE_LABELS}

    def label(self, arch: Arch) -> str:
        return arch_str(arch)

    @property
    def tabular(self) -> bool:
        return self.options["mode"] == "table"

    def table(self) -> dict[str, tuple[float, float]]:
        path = self.options["benchmark_file"]
        if not path:
            raise ConfigError("space nb201 (mode: table) needs space.benchmark_file, a CSV with an arch_str column "
                              "(e.g. --set space.benchmark_file=path/to/nb201.csv); the package ships none")
        path = str(Path(path).expanduser().resolve())
        try:
            mtime = Path(path).stat().st_mtime
        except OSError as e:
            raise ConfigError(f"cannot read NB201 table {path}: {e.strerror}") from None
        return _load_table(path, mtime, self.options["signal"], self.options["final"])

    def metrics(self):
        return frozenset({"flops", "params", "val_acc", "test_acc"}) if self.tabular else super().metrics()

    def prepare(self, context):
        self.table() if self.tabular else super().prepare(context)

    def build(self, arch, input_shape, num_classes):
        if len(input_shape) != 3:
            raise ConfigError(f"space nb201 needs image data (C, H, W), got input shape {input_shape}")
        return NB201Network(arch, self.options["C"], self.options["N"], tuple(input_shape), num_classes)

    def cheap_metrics(self, arch, context):
        if self.tabular:
            return nb201_counts(arch, self.options["C"], self.options["N"])
        return super().cheap_metrics(arch, context)

    def evaluate(self, arch, seed, context, on_epoch=None):
        if not self.tabular:
            return super().evaluate(arch, seed, context, on_epoch)
        label = arch_str(arch)
        try:
            signal, final = self.table()[label]
        except KeyError:
            raise ConfigError(f"arch {label} is not in the NB201 table {self.options['benchmark_file']}") from None
        return {"val_acc": signal, "test_acc": final}
