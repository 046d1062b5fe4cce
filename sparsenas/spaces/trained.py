"""Base of spaces whose archs are built as networks and trained (as opposed to tabular spaces)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data import load_data
from ..errors import ConfigError
from ..ops import count_model
from ..space import Arch, EvalContext, SearchSpace
from ..training import resolve_device, train_and_evaluate


TRAIN_METRICS = frozenset({"val_acc", "test_acc", "train_loss", "train_time_s"})  # of train_and_evaluate
COUNT_METRICS = frozenset({"params", "nnz", "flops", "flops_sparse", "sparsity"})  # of count_model


class TrainedSpace(SearchSpace):
    """Subclasses implement `build(arch, input_shape, num_classes)`; evaluation trains it."""

    def metrics(self) -> frozenset[str]:
        return TRAIN_METRICS | COUNT_METRICS

    def build(self, arch: Arch, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        raise NotImplementedError

    def prepare(self, context: EvalContext) -> None:
        """Load the data, build one arch on its shape and run a sample through it, so that data the space cannot
        take (flat features on a convolutional space, say) is one line before the run writes anything."""
        data = load_data(context.data)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = self.build(self.sample(np.random.default_rng(0)), data.input_shape, data.num_classes)
            try:
                count_model(model, data.input_shape)
            except Exception as e:  # noqa: BLE001 — whatever the network raises on these inputs
                text = " ".join(f"{type(e).__name__}: {e}".split())[:300]
                raise ConfigError(f"{self.subject()} fails on the inputs of data {context.data['name']!r} "
                                  f"(shape {tuple(data.input_shape)}): {text}") from None

    def subject(self) -> str:
        """How errors about this space's networks name it."""
        return f"space {self.name!r}"

    def build_seeded(self, arch: Arch, seed: int, context: EvalContext) -> nn.Module:
        data = load_data(context.data)
        torch.manual_seed(seed)
        return self.build(arch, data.input_shape, data.num_classes)

    def cheap_metrics(self, arch: Arch, context: EvalContext) -> dict[str, float]:
        model = self.build_seeded(arch, 0, context)
        return count_model(model, load_data(context.data).input_shape)

    def evaluate(self, arch: Arch, seed: int, context: EvalContext, on_epoch=None) -> dict[str, float]:
        data = load_data(context.data)
        model = self.build_seeded(arch, seed, context)
        metrics = train_and_evaluate(model, data, context.train, seed, resolve_device(context.device), on_epoch,
                                     context.time_limit_s)
        return {**metrics, **self.trained_metrics(model, data.input_shape, context)}

    def trained_metrics(self, model: nn.Module, input_shape, context: EvalContext) -> dict[str, float]:
        """What the trained network costs: its counts (`count_model`, as trained: a learned mask may empty whole
        filters) and, with a latency predictor that prices networks, `latency_ms` of it as export deploys it
        (replacing the prediction for the arch made before training, which had rejected or admitted it)."""
        counts = count_model(model, input_shape)
        return counts | (context.latency.trained_metrics(model) if context.latency is not None else {})
