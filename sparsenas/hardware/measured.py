"""`measured`: build the arch's network, convert it to what really runs on the target, and time it."""
from __future__ import annotations

from ..ops.timing import time_ms
from ..space import Arch, SearchSpace
from .base import (DTYPES, LatencyPredictor, ModelIO, Target, build_model, example_input, register_predictor,
                   runnable, threads)


@register_predictor("measured")
class MeasuredLatency(LatencyPredictor):
    """Median of `repeats` timed forward passes after `warmup` untimed ones, with `target.threads` CPU threads.

    In `exported` mode the network is converted by `ops.deploy.to_deployable` exactly as `sparsenas export` does
    (CSR for an unstructured linear layer only where it is timed faster on this machine), so the number is
    the latency of the deployed module. The input is random (latency does not depend on its values)."""

    version = "1"

    def __init__(self, space: SearchSpace, target: Target, io: ModelIO, warmup: int = 5, repeats: int = 20):
        super().__init__(space, target, io)
        target.require_device()
        self.warmup, self.repeats = warmup, repeats

    @classmethod
    def from_config(cls, cfg, space, io):
        return cls(space, Target.from_config(cfg), io, cfg["warmup"], cfg["repeats"])

    def module(self, arch: Arch):
        """The runnable module of `arch` on the target (device, dtype) and its export plan."""
        x = example_input(self.io, self.target)
        with threads(self.target.threads):
            model = build_model(self.space, arch, self.io).to(self.target.device)
            module, plan = runnable(model, self.target, example=x.float())
        return module.to(dtype=DTYPES[self.target.dtype]), plan

    def predict(self, arch: Arch) -> float:
        module, _ = self.module(arch)
        x = example_input(self.io, self.target)
        with threads(self.target.threads):
            return time_ms(lambda: module(x), self.target.device, self.warmup, self.repeats)
