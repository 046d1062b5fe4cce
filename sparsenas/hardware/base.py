"""Latency predictors: the target they predict for, their interface and registry, and the shared helpers
(the network an arch really runs as, and how it is timed).

A predictor answers `predict(arch) -> milliseconds` for one `Target`: device, batch size, CPU threads,
dtype and execution mode:
  masked     every sparse layer runs as a plain dense layer with W ⊙ mask baked in (masked dense = dense)
  exported   what `sparsenas export` deploys (sparsenas.ops.deploy.to_deployable): dead channels removed
             (smaller dense layers), and each sparse layer as the kernel the deploy planner (`ops.planner`)
             picks among those that exist for it — dense, CSR (linear and 1×1 conv), BSR (linear), 2:4
             semi-structured (CUDA compute capability >= 8.0) — dense unless a candidate is clearly faster.
Every predictor has a `name` (its registry key) and a `version`, bumped whenever the numbers it gives for
the same input change; both are stored in the run's config.yaml (`latency.predictor`, `latency.version`),
which holds for every `latency_ms` in that run's trials.jsonl (metrics are floats only).
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import nn

from ..data import load_data
from ..errors import ConfigError
from ..ops.deploy import to_deployable
from ..ops.planner import price
from ..ops.sparse import SparseMixin
from ..registry import Registry
from ..space import Arch, SearchSpace

DEVICES = ("cpu", "cuda")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
MODES = ("masked", "exported")


@dataclass(frozen=True)
class Target:
    """Where and how the network runs: one latency is only meaningful for one target."""

    device: str = "cpu"
    batch_size: int = 1
    threads: int = 1
    dtype: str = "float32"
    mode: str = "exported"

    def __post_init__(self):
        if self.device not in DEVICES:
            raise ConfigError(f"unknown latency device {self.device!r} (choose from: {', '.join(DEVICES)})")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown latency dtype {self.dtype!r} (choose from: {', '.join(DTYPES)})")
        if self.dtype == "float16" and self.device == "cpu":
            raise ConfigError("latency dtype float16 needs device cuda (use float32 or bfloat16 on cpu)")
        if self.mode not in MODES:
            raise ConfigError(f"unknown latency mode {self.mode!r} (choose from: {', '.join(MODES)})")
        for key in ("batch_size", "threads"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"latency {key} must be an integer >= 1, got {value!r}")

    @classmethod
    def from_config(cls, cfg: dict) -> "Target":
        return cls(**{k: cfg[k] for k in ("device", "batch_size", "threads", "dtype", "mode")})

    def as_dict(self) -> dict:
        return asdict(self)

    def require_device(self) -> None:
        """Raise ConfigError if this machine cannot run on the target's device (needed to measure)."""
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("latency device cuda: CUDA is not available on this machine")


@dataclass(frozen=True)
class ModelIO:
    """The input shape (C, H, W) of one sample and the number of classes of the networks a space builds."""

    input_shape: tuple[int, ...]
    num_classes: int


def model_io(space: SearchSpace, data: dict) -> ModelIO:
    """The shapes a space's networks are built for: the data in use, or CIFAR-10 for a tabular NB201 space
    (whose table and flops are for CIFAR-10)."""
    if not hasattr(space, "build"):
        raise ConfigError(f"space {space.name!r} builds no network; it has no latency to predict")
    if getattr(space, "tabular", False):
        return ModelIO((3, 32, 32), 10)
    splits = load_data(data)
    return ModelIO(tuple(splits.input_shape), splits.num_classes)


def build_model(space: SearchSpace, arch: Arch, io: ModelIO) -> nn.Module:
    """The arch's masked network, seeded (seed 0) and in eval mode. Latency does not depend on the weights,
    only on shapes and sparsity, which the seed does not change."""
    torch.manual_seed(0)
    return space.build(arch, io.input_shape, io.num_classes).eval()


def runnable(model: nn.Module, target: Target, csr: str = "auto", example: torch.Tensor | None = None,
             pricer=price) -> tuple[nn.Module, dict]:
    """The module that really runs on `target` and the export plan ({layer: {action, ...}}), by
    `ops.deploy.to_deployable`: in `masked` mode every sparse layer as a dense layer (action forced to dense);
    in `exported` mode export's own choice (`csr`: auto = the planner's pick, each candidate priced on its
    input in `example` by `pricer`: timed, or a latency table's prices)."""
    if target.mode == "masked":
        plan = {n: {"action": "dense"} for n, m in model.named_modules() if isinstance(m, SparseMixin)}
        return to_deployable(model, plan=plan)
    if target.device == "cpu" and target.dtype != "float32":
        csr = "never"  # torch's CSR matmul has no reduced-precision CPU kernel
    return to_deployable(model, example, csr=csr, device=target.device, pricer=pricer)


@contextlib.contextmanager
def threads(n: int):
    """Run with `n` intra-op CPU threads, restoring the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def example_input(io: ModelIO, target: Target, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(target.batch_size, *io.input_shape, generator=g)
    return x.to(device=target.device, dtype=DTYPES[target.dtype])


class LatencyPredictor:
    """predict(arch) → milliseconds of one forward pass of `target.batch_size` samples on `target`."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"

    def __init__(self, space: SearchSpace, target: Target, io: ModelIO):
        self.space, self.target, self.io = space, target, io

    @classmethod
    def from_config(cls, cfg: dict, space: SearchSpace, io: ModelIO) -> "LatencyPredictor":
        """The predictor of a resolved `latency` config section."""
        return cls(space, Target.from_config(cfg), io)

    def predict(self, arch: Arch) -> float:
        raise NotImplementedError

    def predict_trained(self, model: nn.Module) -> float | None:
        """ms of a trained network of the space as export deploys it (its masks as trained: an unstructured mask
        that emptied whole filters makes smaller layers); None where the predictor prices archs only."""
        return None


PREDICTORS: Registry[type[LatencyPredictor]] = Registry("latency predictor")
register_predictor = PREDICTORS.register
