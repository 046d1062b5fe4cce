"""`lut`: an nn-Meter-style lookup table of kernel latencies, profiled on this machine for one space and target.

Profiling (`profile`, CLI `sparsenas latency profile`): sample `archs` architectures of the space, convert each
to what runs on the target (see `base.runnable`), trace its kernels (`kernels.trace`) and time every kernel
signature not yet in the table alone, at `target.threads` threads, robustly (`ops.timing.robust_ms`: the
arch's new kernels interleaved round by round, the 10% quantile of their calls, warm-up until stable, repeats
adapted to the noise, the thread pinned to a CPU), so that a table profiled on a busy machine predicts the
quiet machine's times; the table records its noise floor (`noise_floor`). Each kernel keeps its lowest time of
`passes` passes (default 2, alternating), as a CPU's speed drifts over minutes: two one-pass profiles priced 32
archs 16% apart (median), two two-pass ones 1.8% (one pair each, dass C=32, batch 64, idle, 2026-11-28). So the
table covers the configurations the space produces: op type, C_in, C_out, kernel, stride, H·W, batch, and the
sparsity as it really runs (a CSR matmul is keyed by its nnz; a channel-pruned layer is a smaller conv).

Prediction: trace the arch's runnable module (no timing) and sum its kernels, each looked up by signature or,
if never measured, predicted by a per-op random forest on log features (FEATURES: elements in/out, MACs,
nnz, kernel, stride, groups; nn-Meter uses one random forest per kernel type). In `exported` mode the network
is planned by export's own code (`ops.deploy.to_deployable`: dead channels removed, then per sparse layer the
deploy planner's candidates — dense, CSR for linear and 1×1 conv, BSR, 2:4 on a capable GPU), except that each
candidate is priced by the table (traced on the layer's input, its kernels summed, noise from the table)
instead of timed; `ops.planner.choose` picks, dense unless clearly faster: what export deploys is what is
priced. Profiling traces and times every candidate kernel of every sparse layer for this reason.

Calibration (our addition to nn-Meter, for Python-dispatched tiny networks): isolated kernels miss the
per-module-call Python time and cache effects of the whole forward pass, so `profile` also measures
`calibration` whole networks (MeasuredLatency, in two passes bracketing the kernels' profiling, each network
the lower of its two timings) and fits, by non-negative least squares on relative errors,
  latency = a · Σ kernels + b · module calls + c.
`calibration: 0` keeps the pure sum (a = 1, b = c = 0). The table is a JSON file in the cache directory
(`default_cache_dir()`), named after a hash of everything it depends on (space options, input shape, target,
torch version, CPU/GPU model); the regressors are refitted from it on load (deterministic, no pickles).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..journal import write_atomic
from ..space import Arch, SearchSpace
from .base import (DTYPES, LatencyPredictor, ModelIO, Target, build_model, example_input, register_predictor, runnable,
                   threads)
from ..ops.planner import built
from ..ops.timing import Timing, pass_order
from .kernels import KernelCall, Trace, log_features, replay_timings, trace
from .measured import MeasuredLatency, lowest

TABLE_FORMAT = 1


def default_cache_dir() -> Path:
    """$SPARSENAS_CACHE_DIR, else $XDG_CACHE_HOME/sparsenas, else ~/.cache/sparsenas."""
    if os.environ.get("SPARSENAS_CACHE_DIR"):
        return Path(os.environ["SPARSENAS_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "sparsenas"


def machine(device: str) -> str:
    """The hardware a table was measured on: CPU model (and GPU name for cuda)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device == "cuda" and torch.cuda.is_available():
        cpu += " / " + torch.cuda.get_device_name()
    return cpu


def table_meta(space: SearchSpace, target: Target, io: ModelIO) -> dict:
    return {"format": TABLE_FORMAT, "space": space.name, "space_options": space.options, "target": target.as_dict(),
            "input_shape": list(io.input_shape), "num_classes": io.num_classes, "torch": torch.__version__,
            "machine": machine(target.device)}


def table_path(space: SearchSpace, target: Target, io: ModelIO, cache_dir: str | Path | None = None) -> Path:
    """Where the table of (space, target, io) on this machine lives in the cache directory. The space's options
    are not part of the name (most, e.g. TAS's distillation, do not change the networks): profile again after
    changing one that does (C, layers, ...) — kernels the table lacks fall back to the regressors meanwhile."""
    meta = {k: v for k, v in table_meta(space, target, io).items() if k != "space_options"}
    key = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode())
    name = f"lut-{space.name}-{key.hexdigest()[:12]}.json"
    return Path(cache_dir or default_cache_dir()).expanduser() / "latency" / name


@dataclass
class Breakdown:
    """An arch's kernels with their predicted ms, its module calls, and the export choices made."""

    kernels: list[tuple[KernelCall, float]]
    module_calls: int
    plan: dict[str, str]
    calibration: tuple[float, float, float]

    @property
    def kernel_sum(self) -> float:
        return sum(ms for _, ms in self.kernels)

    @property
    def total(self) -> float:
        a, b, c = self.calibration
        return a * self.kernel_sum + b * self.module_calls + c


class LatencyTable:
    """Measured kernels {signature: {op, features, ms}} of one (space, target, io), their regressors and the
    calibration (a, b, c)."""

    def __init__(self, meta: dict, kernels: dict[str, dict], calibration=(1.0, 0.0, 0.0)):
        self.meta, self.kernels = meta, kernels
        self.calibration = tuple(float(v) for v in calibration)
        self._models: dict[str, object] | None = None

    # -- persistence ----------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({"meta": self.meta, "calibration": list(self.calibration),
                                       "kernels": self.kernels}, indent=0, default=str))

    @classmethod
    def load(cls, path: Path) -> "LatencyTable":
        try:
            data = json.loads(Path(path).read_text())
            if data["meta"]["format"] != TABLE_FORMAT:
                raise ConfigError(f"latency table {path} has format {data['meta']['format']}, "
                                  f"this sparsenas reads {TABLE_FORMAT}; profile again")
            return cls(data["meta"], data["kernels"], data["calibration"])
        except OSError as e:
            raise ConfigError(f"cannot read latency table {path}: {e.strerror}") from None
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{path} is not a sparsenas latency table") from None

    # -- prediction of one kernel ---------------------------------------------------------------------
    def _fit(self) -> dict[str, object]:
        from sklearn.ensemble import RandomForestRegressor

        by_op: dict[str, list[dict]] = {}
        for row in self.kernels.values():
            by_op.setdefault(row["op"], []).append(row)
        models = {}
        for op, rows in [*by_op.items(), ("*", list(self.kernels.values()))]:
            x = np.array([log_features(r["features"]) for r in rows])
            y = np.log(np.array([max(r["ms"], 1e-6) for r in rows]))
            if len(rows) == 1:
                models[op] = float(np.exp(y[0]))
                continue
            models[op] = RandomForestRegressor(n_estimators=50, random_state=0).fit(x, y)
        return models

    def kernel_ms(self, calls: list[KernelCall]) -> list[float]:
        """Per call: the measured ms of its signature, else the regression of its op (else of all ops)."""
        out = [self.kernels[c.signature]["ms"] if c.signature in self.kernels else None for c in calls]
        missing: dict[str, list[int]] = {}
        for i, (c, ms) in enumerate(zip(calls, out)):
            if ms is None:
                missing.setdefault(c.op, []).append(i)
        if missing and self._models is None:
            if not self.kernels:
                raise ConfigError("latency table is empty; profile again")
            self._models = self._fit()
        for op, idx in missing.items():
            model = self._models.get(op, self._models["*"])
            if isinstance(model, float):
                values = [model] * len(idx)
            else:
                values = np.exp(model.predict(np.array([log_features(calls[i].features) for i in idx])))
            for i, v in zip(idx, values):
                out[i] = float(v)
        return out

    def noise(self, calls: list[KernelCall]) -> float:
        """The noise of the summed ms of `calls` (a candidate kernel): the largest measured noise among them (a
        call never measured: the table's 90th percentile kernel noise), as the planner's margin needs it."""
        default = (self.meta.get("noise") or {}).get("kernels_p90") or 0.0
        return max((self.kernels.get(c.signature, {}).get("noise", default) for c in calls), default=0.0)

    def __getstate__(self):  # regressors are refitted after unpickling (Ray workers)
        return {**self.__dict__, "_models": None}


@register_predictor("lut")
class LutLatency(LatencyPredictor):
    """Σ kernel latencies from a profiled `LatencyTable` (see the module docstring)."""

    version = "6"  # 3: plans through the deploy planner; 4: BN folded, channel masks aligned per group (as export);
    # 5: timed with the allocator steady (`ops.timing.steady_allocator`); 6: a trial's latency_ms prices its trained
    # network (`predict_trained`)
    runtimes = ("torch",)

    def __init__(self, space: SearchSpace, target: Target, io: ModelIO, table: LatencyTable):
        super().__init__(space, target, io)
        self.table = table

    @classmethod
    def from_config(cls, cfg, space, io):
        target = Target.from_config(cfg)
        path = Path(cfg["file"]).expanduser() if cfg["file"] else table_path(space, target, io, cfg["cache_dir"])
        if not path.is_file():
            where = f"--cache-dir {cfg['cache_dir']} " if cfg["cache_dir"] else ""
            raise ConfigError(f"no latency table {path} for space {space.name!r} on {target.device} (batch "
                              f"{target.batch_size}, {target.threads} threads, {target.mode}); make it with "
                              f"'sparsenas latency profile --space {space.name} {where}...' with the same options")
        table = LatencyTable.load(path)
        if table.meta.get("space") != space.name:
            raise ConfigError(f"latency table {path} is for space {table.meta.get('space')!r}, not {space.name!r}")
        return cls(space, target, io, table)

    def breakdown(self, arch: Arch) -> Breakdown:
        return self.module_breakdown(build_model(self.space, arch, self.io), self.io.input_shape)

    def module_breakdown(self, module: nn.Module, input_shape, whole: bool = True) -> Breakdown:
        """The priced kernels of any masked module (a whole network, or one op of a supernet) on a batch of
        `input_shape` samples. `whole=False` drops the calibration's constant (a per-network cost), so that the
        parts of a network add up: e.g. a differentiable search's expected latency Σ softmax(α)·module_ms(op)."""
        calls, ms, module_calls, plan = traced_kernels(module, input_shape, self.target, self.table.kernel_ms,
                                                       self.table.noise)
        a, b, c = self.table.calibration
        return Breakdown(list(zip(calls, ms)), module_calls, plan, (a, b, c if whole else 0.0))

    def module_ms(self, module: nn.Module, input_shape) -> float:
        """Predicted ms of a part of a network (see `module_breakdown`, whole=False)."""
        return self.module_breakdown(module, input_shape, whole=False).total

    def predict(self, arch: Arch) -> float:
        return self.breakdown(arch).total

    def predict_trained(self, model: nn.Module) -> float:
        return self.module_breakdown(model, self.io.input_shape).total


def runnable_traces(model: nn.Module, input_shape, target: Target, keep: bool):
    """Traces of the runnable form of the masked `model` on one batch of `input_shape` samples (traced on the
    CPU unless the target is a present GPU): in `exported` mode one with every unstructured sparse linear layer
    dense and one with them CSR, and the names of those layers. For filling a table by hand (the CSR part of
    benchmarks/latency_accuracy.py); predictions plan through the deploy planner (`traced_kernels`)."""
    device = target.device if target.device == "cpu" or torch.cuda.is_available() else "cpu"
    with threads(target.threads):
        model = model.to(device).eval()
        x = example_input(ModelIO(tuple(input_shape), 0), Target(**{**target.as_dict(), "device": device}))
        dtype = DTYPES[target.dtype]
        if target.mode == "masked":
            return trace(runnable(model, target)[0].to(dtype=dtype), x, keep=keep), None, ()
        dense = runnable(model, target, csr="never")[0].to(dtype=dtype)
        sparse, plan = runnable(model, target, csr="always")
        layers = tuple(n for n, e in plan.items() if e["action"] == "csr")
        return (trace(dense, x, layers, keep), trace(sparse.to(dtype=dtype), x, layers, keep) if layers else None,
                layers)


def table_pricer(price, noise=None, collect: list | None = None):
    """A deploy planner pricer (layer, x, device) -> {kernel: Timing} that prices each candidate kernel
    (`ops.planner.built`) by tracing it on the layer's input `x`: ms = Σ `price(calls)`, noise = `noise(calls)`
    (else 0). With `collect`, the traced calls are appended to it with their arguments (for profiling)."""
    def pricer(layer: nn.Module, x: torch.Tensor, device: str) -> dict[str, Timing]:
        out = {}
        for name, module in built(layer, x, device).items():
            calls = trace(module, x, keep=collect is not None).calls
            if collect is not None:
                collect.extend(calls)
            ms = float(sum(price(calls)))
            out[name] = Timing(ms, ms, 0.0, noise(calls) if noise else 0.0, 0)
        return out
    return pricer


def deployed_trace(model: nn.Module, input_shape, target: Target, pricer, keep: bool = False) -> tuple[Trace, dict]:
    """The trace of what export deploys of the masked `model` (`base.runnable`, the planner pricing each
    candidate by `pricer`) on one batch of `input_shape` samples, and the plan. Traced on the CPU unless the
    target is a present GPU; the planner plans in float32 (as export does), the trace runs in `target.dtype`."""
    device = target.device if target.device == "cpu" or torch.cuda.is_available() else "cpu"
    dtype = target.dtype if device != "cpu" or target.dtype != "float16" else "float32"
    local = Target(**{**target.as_dict(), "device": device, "dtype": dtype})
    with threads(target.threads):
        model = model.to(device).eval()
        x = example_input(ModelIO(tuple(input_shape), 0), Target(**{**local.as_dict(), "dtype": "float32"}))
        module, plan = runnable(model, local, example=x, pricer=pricer)
        return trace(module.to(dtype=DTYPES[target.dtype]), x.to(DTYPES[target.dtype]), keep=keep), plan


def traced_kernels(model: nn.Module, input_shape, target: Target, price, noise=None):
    """(kernels of what runs, their ms, number of module calls, {sparse layer: kernel}) of the masked `model`:
    `price(calls)` gives the ms of each call, `noise(calls)` the noise of their sum. In `exported` mode each
    sparse layer's candidate kernels are priced so and the planner picks among them (`ops.planner.choose`:
    dense unless clearly faster), exactly as export does with timings — one code path."""
    t, plan = deployed_trace(model, input_shape, target, table_pricer(price, noise))
    choice = {} if target.mode == "masked" else {n: e["action"] for n, e in plan.items() if e["action"] != "slice"}
    return t.calls, price(t.calls), t.module_calls, choice


def noise_floor(kernels: list[Timing], networks: list[Timing]) -> dict:
    """A profile's noise floor (stored in the table's meta, printed by the CLI) from the Timings of its kernels
    and calibration networks: the median and 90th percentile of their repeatability (|even − odd| / estimate,
    see `ops.timing`), the median spread (median/estimate − 1: how much the machine interfered), the share
    of timings taken at real-time priority and the load."""
    q = lambda v, p: float(np.quantile(v, p)) if v else None  # noqa: E731
    both = kernels + networks
    return {"kernels_median": q([t.noise for t in kernels], 0.5), "kernels_p90": q([t.noise for t in kernels], 0.9),
            "networks_median": q([t.noise for t in networks], 0.5),
            "networks_p90": q([t.noise for t in networks], 0.9), "spread_median": q([t.spread for t in both], 0.5),
            "realtime": float(np.mean([t.realtime for t in both])) if both else None,
            "load_average": [round(v, 2) for v in os.getloadavg()]}


def describe_noise(noise: dict) -> str:
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    return (f"noise floor: kernels {pct(noise['kernels_median'])} (p90 {pct(noise['kernels_p90'])}), whole "
            f"networks {pct(noise['networks_median'])} (p90 {pct(noise['networks_p90'])}); interference "
            f"(median/estimate - 1) {pct(noise['spread_median'])}; real-time priority "
            f"{pct(noise.get('realtime'))} of timings; load average "
            f"{', '.join(f'{v:.2f}' for v in noise['load_average'])}")


def deployed_kernels(model: nn.Module, input_shape, target: Target) -> dict[str, KernelCall]:
    """The kernels (with arguments) of the masked `model`'s deployed network and its candidates, by signature."""
    candidates: list = []
    zero = lambda calls: [0.0] * len(calls)  # noqa: E731 — ties: the deployed network stays dense
    t, _ = deployed_trace(model, input_shape, target, table_pricer(zero, collect=candidates), keep=True)
    calls: dict[str, KernelCall] = {}
    for call in t.calls + candidates:
        calls.setdefault(call.signature, call)
    return calls


def time_kernels(table: LatencyTable, calls: dict, target: Target, warmup: int = 3, repeats: int = 15) -> list:
    """Time `calls` (interleaved) into `table`, each keeping its lowest time so far; returns the new Timings."""
    timings = replay_timings(list(calls.values()), target.device, warmup, repeats)
    for (signature, call), timing in zip(calls.items(), timings):
        if signature not in table.kernels or timing.ms < table.kernels[signature]["ms"]:
            table.kernels[signature] = {"op": call.op, "features": list(call.features), "ms": timing.ms,
                                        "noise": timing.noise}
    return timings


def profile_module(table: LatencyTable, model: nn.Module, input_shape, target: Target, warmup: int = 3,
                   repeats: int = 15) -> list:
    """Time into `table` the kernels of `model` it lacks (`deployed_kernels`); returns their Timings."""
    calls = deployed_kernels(model, input_shape, target)
    return time_kernels(table, {s: c for s, c in calls.items() if s not in table.kernels}, target, warmup, repeats)


def _profile_kernels(space, target, io, table, archs, warmup, repeats, passes, log) -> list:
    """`passes` passes over the kernels of `archs` (later ones: each arch rebuilt); the first pass's Timings."""
    groups, timings = [], []
    for i, arch in enumerate(archs):
        before = set(table.kernels)
        timings += profile_module(table, build_model(space, arch, io), io.input_shape, target, warmup, repeats)
        groups.append((arch, set(table.kernels) - before))
        log(f"profiled arch {i + 1}/{len(archs)}: {len(table.kernels)} kernels in the table")
    for k in range(1, passes):
        for arch, signatures in pass_order(groups, k):
            calls = deployed_kernels(build_model(space, arch, io), io.input_shape, target)
            time_kernels(table, {s: c for s, c in calls.items() if s in signatures}, target, warmup, repeats)
        log(f"timing pass {k + 1}/{passes} done")
    return timings


def profile(space: SearchSpace, target: Target, io: ModelIO, archs: int = 64, calibration: int = 24,
            seed: int = 0, warmup: int = 3, repeats: int = 15, passes: int = 2, log=print) -> LatencyTable:
    """Measure the kernels of `archs` sampled architectures (and calibrate on `calibration` more, timed whole).
    Every time is robust (`ops.timing.robust_ms`: the kernels of one arch interleaved, a low quantile, warm-up
    until stable, repeats adapted to the noise); the table's meta["noise"] is its noise floor (`noise_floor`).
    The calibration networks are timed in two passes, one before the kernels and one (reversed) after, and
    each keeps the lower: the fit then holds for the quietest state of the machine over the whole profile (a
    busy spell of a few seconds or minutes moves neither), as the kernels' low quantile and `passes` do."""
    from scipy.optimize import nnls

    target.require_device()
    rng = np.random.default_rng(seed)
    table = LatencyTable(table_meta(space, target, io), {})
    profiled = [space.sample(rng) for _ in range(archs)]
    calibrating = [space.sample(rng) for _ in range(calibration)]
    measured = MeasuredLatency(space, target, io, warmup=5, repeats=20)
    before = [measured.timing(arch) for arch in calibrating]
    with threads(target.threads):
        kernels = _profile_kernels(space, target, io, table, profiled, warmup, repeats, passes, log)
    after = [measured.timing(arch) for arch in calibrating[::-1]][::-1]
    networks = [lowest(ts) for ts in zip(before, after)]
    if calibration:
        lut = LutLatency(space, target, io, table)
        rows = [[b.kernel_sum, b.module_calls, 1.0] for b in map(lut.breakdown, calibrating)]
        y = np.array([t.ms for t in networks])  # fitted on relative errors (the ±10% criterion): rows / latency
        coef, _ = nnls(np.array(rows) / y[:, None], np.ones_like(y))
        table.calibration = tuple(float(v) for v in coef)
        log(f"calibrated on {calibration} measured archs: latency = {coef[0]:.3f}·Σkernels + "
            f"{coef[1] * 1e3:.2f} µs·module calls + {coef[2]:.3f} ms")
    table.meta["noise"] = noise_floor(kernels, networks)
    return table
