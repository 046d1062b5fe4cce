"""Latency in the objective: the `latency` config section, the predictor it makes, and the metrics it adds.

`latency_ms` is a cheap metric (predicted for the arch before training), so
`objective.constraints.latency_ms: [null, X]` records an over-budget arch `infeasible` without training it, and
`objective.minimize: [latency_ms]` makes it a second objective. After training it is predicted again for the
trained network (`trained_metrics`, where the predictor prices networks, as lut and measured do), which is what
export deploys: learned masks can empty whole filters, which export removes. As a penalty,
`latency.reward_target_ms: T` adds MnasNet's soft-constrained reward `latency_reward = val_acc · (latency_ms /
T)^w` (w = `latency.reward_exponent`, MnasNet: −0.07) after training, to maximise instead of val_acc.
"""
from __future__ import annotations

from ..errors import ConfigError
from ..space import Arch, SearchSpace
from .base import PREDICTORS, LatencyPredictor, Target, model_io


def normalise_latency_config(cfg: dict) -> None:
    """Check a resolved `latency` section (ConfigError, one line) and record the predictor's version in it.
    A saved config whose version differs from this release's predictor is refused (its latencies would not
    be comparable)."""
    name = cfg["predictor"]
    Target.from_config(cfg)
    if name is None:
        if cfg["reward_target_ms"] is not None:
            raise ConfigError("latency.reward_target_ms needs latency.predictor (measured, lut or learned)")
        return
    cls = PREDICTORS.get(name)
    runtimes = getattr(cls, "runtimes", None)
    if runtimes is not None and cfg.get("runtime", "torch") not in runtimes:
        raise ConfigError(f"latency.runtime {cfg['runtime']!r} does not work with predictor {name!r} (it times "
                          f"{' or '.join(runtimes)}; use measured, or learned from a table timed on that runtime)")
    if cfg["version"] is None:
        cfg["version"] = cls.version
    elif str(cfg["version"]) != cls.version:
        raise ConfigError(f"latency.version {cfg['version']!r} is not the version of predictor {name!r} in this "
                          f"sparsenas ({cls.version!r}): its latencies are not comparable; start a new run")


class LatencyObjective:
    """What a run's trials get from the latency section: `latency_ms` before training, the reward after."""

    def __init__(self, predictor: LatencyPredictor, cfg: dict):
        self.predictor = predictor
        self.target_ms, self.exponent = cfg["reward_target_ms"], cfg["reward_exponent"]

    def metrics(self) -> frozenset[str]:
        """Names of the metrics it adds to a trial's."""
        return frozenset({"latency_ms"} | ({"latency_reward"} if self.target_ms is not None else set()))

    def cheap_metrics(self, arch: Arch) -> dict[str, float]:
        return {"latency_ms": float(self.predictor.predict(arch))}

    def trained_metrics(self, model) -> dict[str, float]:
        """`latency_ms` of the trained `model` where the predictor prices networks (`predict_trained`)."""
        ms = self.predictor.predict_trained(model)
        return {} if ms is None else {"latency_ms": float(ms)}

    def derived_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        if self.target_ms is None or "val_acc" not in metrics or "latency_ms" not in metrics:
            return {}
        return {"latency_reward": metrics["val_acc"] * (metrics["latency_ms"] / self.target_ms) ** self.exponent}


def make_predictor(cfg: dict, space: SearchSpace, data: dict) -> LatencyObjective | None:
    """The latency objective of a resolved config's `latency` section (None without a predictor)."""
    if cfg["predictor"] is None:
        return None
    cls = PREDICTORS.get(cfg["predictor"])
    io = model_io(space, data) if getattr(cls, "needs_network", True) else None
    return LatencyObjective(cls.from_config(cfg, space, io), cfg)
