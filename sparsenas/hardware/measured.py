"""`measured`: build the arch's network, convert it to what really runs on the target, and time it."""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..ops.timing import Timing, pass_order, robust_ms
from ..space import Arch, SearchSpace
from .base import (DTYPES, LatencyPredictor, ModelIO, Target, build_model, example_input, register_predictor,
                   runnable, threads)
from .runtimes import RUNTIMES


@register_predictor("measured")
class MeasuredLatency(LatencyPredictor):
    """The robust time (`ops.timing.robust_ms`) of one forward pass on `runtime` with `target.threads` threads:
    the 10% quantile of interleaved timed calls after a warm-up until stable (at least `warmup` calls), at
    least `repeats` timed calls and up to 4× as many while two halves of them disagree by more than 2%. On a
    quiet core this is within a few % of the median; on a busy machine it stays near the quiet value where the
    median grows with the load (the 10% of calls least interfered with).

    In `exported` mode the network is converted by `ops.deploy.to_deployable` exactly as `sparsenas export` does
    (CSR for an unstructured linear layer only where it is timed faster on this machine), so the number is
    the latency of the deployed module; runtime `onnxruntime` runs it dense through ONNX Runtime (see
    `runtimes`). The input is random (latency does not depend on its values)."""

    version = "5"  # 3: BN folded into convs and channel masks aligned per group, as export now deploys; 4: timed
    # with the allocator steady (`ops.timing.steady_allocator`); 5: a trial's latency_ms times its trained network
    runtimes = ("torch", "onnxruntime")

    def __init__(self, space: SearchSpace, target: Target, io: ModelIO, warmup: int = 5, repeats: int = 20,
                 runtime: str = "torch"):
        super().__init__(space, target, io)
        target.require_device()
        if runtime not in RUNTIMES:
            raise ConfigError(f"unknown latency runtime {runtime!r} (choose from: {', '.join(RUNTIMES.names())})")
        self.warmup, self.repeats, self.runtime = warmup, repeats, runtime

    @classmethod
    def from_config(cls, cfg, space, io):
        return cls(space, Target.from_config(cfg), io, cfg["warmup"], cfg["repeats"], cfg["runtime"])

    def module(self, arch: Arch):
        """The runnable module of `arch` on the target (device, dtype) and its export plan."""
        return self.deployable(build_model(self.space, arch, self.io))

    def deployable(self, model: nn.Module):
        """The runnable module of a masked network on the target (device, dtype) and its export plan."""
        x = example_input(self.io, self.target)
        csr = "never" if self.runtime == "onnxruntime" else "auto"
        with threads(self.target.threads):
            module, plan = runnable(model.to(self.target.device).eval(), self.target, csr=csr, example=x.float())
        return module.to(dtype=DTYPES[self.target.dtype]), plan

    def timing(self, arch: Arch) -> Timing:
        """The robust timing of `arch` (estimate, median, spread, noise: see `ops.timing`)."""
        return self.module_timing(self.module(arch)[0])

    def predict_trained(self, model: nn.Module) -> float:
        return self.module_timing(self.deployable(model)[0]).ms

    def module_timing(self, module: nn.Module) -> Timing:
        x = example_input(self.io, self.target)
        with threads(self.target.threads):
            run = RUNTIMES.get(self.runtime)(module, x, self.target)
            return robust_ms([run], self.target.device, self.warmup, self.repeats)[0]

    def timings(self, archs: list[Arch], passes: int = 2) -> list[list[Timing]]:
        """Each arch's robust timing (`timing`) in each of `passes` passes over `archs` (in order, then
        reversed, ...): per arch, its `passes` Timings. A busy spell of seconds hits one arch's repeats in one
        pass only, so the lower of its timings (`lowest`) is the quiet machine's. Each network is built, timed
        and freed in turn: other networks kept in memory slow it (200 dass networks made one ~8% slower here,
        garbage collection on or off), and a deployed network runs alone."""
        out: list[list[Timing]] = [[] for _ in archs]
        for p in range(passes):
            for i in pass_order(range(len(archs)), p):
                out[i].append(self.timing(archs[i]))
        return out

    def predict(self, arch: Arch) -> float:
        return self.timing(arch).ms


def lowest(timings: list[Timing]) -> Timing:
    """The Timing with the lowest estimate (of one arch's passes, see `MeasuredLatency.timings`)."""
    return min(timings, key=lambda t: t.ms)
