"""The one native search-space format: flat dims, immutable Arch, SearchSpace base and its registry."""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

import numpy as np

from .errors import ConfigError
from .registry import Registry
from .schema import Field, declare_defaults, schema_of, validate_section

Value = str | int | float | bool


@dataclass(frozen=True)
class Categorical:
    """One of a fixed list of JSON scalars."""

    choices: tuple[Value, ...]

    def __post_init__(self):
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.choices:
            raise ValueError("Categorical needs at least one choice")

    def sample(self, rng: np.random.Generator) -> Value:
        return self.choices[int(rng.integers(len(self.choices)))]

    def contains(self, value: Any) -> bool:
        return any(type(value) is type(c) and value == c for c in self.choices)

    def size(self) -> float:
        return len(self.choices)


@dataclass(frozen=True)
class Int:
    """An integer in [low, high] on a grid of `step`."""

    low: int
    high: int
    step: int = 1

    def sample(self, rng: np.random.Generator) -> int:
        return self.low + self.step * int(rng.integers((self.high - self.low) // self.step + 1))

    def contains(self, value: Any) -> bool:
        return (isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high
                and (value - self.low) % self.step == 0)

    def size(self) -> float:
        return (self.high - self.low) // self.step + 1


@dataclass(frozen=True)
class Float:
    """A real number in [low, high], optionally sampled log-uniformly."""

    low: float
    high: float
    log: bool = False

    def sample(self, rng: np.random.Generator) -> float:
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def size(self) -> float:
        return math.inf


Dim = Categorical | Int | Float


class Arch(Mapping):
    """An immutable {label: value} assignment of a space's dims, with a stable content hash `arch_id`."""

    __slots__ = ("_values", "_id")

    def __init__(self, values: Mapping[str, Value]):
        self._values = dict(sorted(values.items()))
        self._id = hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @property
    def arch_id(self) -> str:
        return self._id

    def to_json(self) -> str:
        return json.dumps(self._values, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Arch":
        return cls(json.loads(text))

    def replace(self, **changes: Value) -> "Arch":
        return Arch({**self._values, **changes})

    def __getitem__(self, key: str) -> Value:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Arch) and other._id == self._id

    def __repr__(self) -> str:
        return f"Arch({self._values})"


class SearchSpace:
    """Base of every space. Subclasses declare their options (config keys) — `options_schema` ({key: Field},
    typed, with ranges and choices) or simply `defaults` ({key: default}, typed by the defaults; see
    `sparsenas.schema.schema_of`) — and implement `dims` and one way to evaluate: `build` (trained spaces, see
    `TrainedSpace`) or `query` (tabular spaces). `__init__` checks the options (one-line ConfigError
    `space.KEY ...`, as from a config) and keeps them typed and complete in `self.options`."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    options_schema: ClassVar[dict[str, Field]]

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        declare_defaults(cls)

    def __init__(self, **options: Any):
        self.options = validate_section("space", options, schema_of(type(self)))

    def dims(self) -> dict[str, Dim]:
        raise NotImplementedError

    def sample(self, rng: np.random.Generator) -> Arch:
        return Arch({label: dim.sample(rng) for label, dim in self.dims().items()})

    def validate(self, arch: Mapping[str, Any]) -> Arch:
        """Return `arch` as an Arch, or raise ConfigError naming the first bad dim."""
        dims = self.dims()
        missing = sorted(set(dims) - set(arch))
        extra = sorted(set(arch) - set(dims))
        if missing or extra:
            raise ConfigError(f"arch does not match space {self.name!r}: missing {missing}, unknown {extra}")
        for label, dim in dims.items():
            if not dim.contains(arch[label]):
                raise ConfigError(f"arch value {label}={arch[label]!r} is outside {dim}")
        return arch if isinstance(arch, Arch) else Arch(arch)

    def size(self) -> float:
        """Number of distinct archs (inf when a dim is continuous)."""
        return math.prod(d.size() for d in self.dims().values())

    def label(self, arch: Arch) -> str:
        """Compact human-readable form of an arch."""
        return ",".join(f"{k}={v}" for k, v in arch.items())

    def metrics(self) -> frozenset[str] | None:
        """Names of the metrics this space's trials produce (cheap and evaluated), so that an objective naming
        another one is refused before a run starts; None (the default, e.g. a plug-in) leaves that unchecked."""
        return None

    def prepare(self, context: "EvalContext") -> None:
        """Load and check what evaluation needs (data, tables) before a run writes anything;
        raises ConfigError on bad input."""

    def cheap_metrics(self, arch: Arch, context: "EvalContext") -> dict[str, float]:
        """Metrics known before training (params, FLOPs, ...), checked against constraints."""
        return {}

    def evaluate(self, arch: Arch, seed: int, context: "EvalContext") -> dict[str, float]:
        """Train/query `arch` and return its metrics (val_acc, test_acc, ...)."""
        raise NotImplementedError


class SupernetSearch:
    """A space's one-shot supernet search (DASS bi-level, TAS Gumbel): `epochs` calls of `run_epoch`, then
    `derive()`. Built by `SuperNet.supernet_search` inside a trial; its `state_dict` must load with
    `torch.load(weights_only=True)` (it is checkpointed after every epoch). Its options (`strategy.options`) are
    declared like a space's (`options_schema` or `defaults`) and checked by `resolve_options`."""

    defaults: ClassVar[dict[str, Any]] = {}
    options_schema: ClassVar[dict[str, Field]]
    epochs: int

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        declare_defaults(cls)

    def run_epoch(self, epoch: int) -> tuple[dict[str, float], dict[str, str]]:
        """Train one epoch; return scalars (losses, α entropy, FLOPs, ...) and text (current genotype)."""
        raise NotImplementedError

    def derive(self) -> "Arch":
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    @classmethod
    def resolve_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        return validate_section("strategy.options", options, schema_of(cls))


class SuperNet:
    """Capability of spaces with a supernet form, for `--strategy differentiable`: `supernet_search_class()`
    is the space's `SupernetSearch`; `supernet_search(context, seed, options)` builds it, `options` being the
    strategy's `options` mapping, checked against that search's options schema."""

    def supernet_search_class(self) -> type[SupernetSearch]:
        raise NotImplementedError

    def supernet_search(self, context: "EvalContext", seed: int, options: dict[str, Any]) -> SupernetSearch:
        return self.supernet_search_class()(self, context, seed, options)


@dataclass
class EvalContext:
    """What an evaluation needs besides the arch: the resolved config sections and the device."""

    train: dict[str, Any]
    data: dict[str, Any]
    device: str = "cpu"
    time_limit_s: float | None = None
    threads: int = 1  # torch threads of a trial: execution.cpus_per_trial (small nets run faster on one)
    latency: Any = None  # sparsenas.hardware.objective.LatencyObjective: adds latency_ms to the cheap metrics

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "EvalContext":
        """The context of a resolved config's trials (`execution.cpus_per_trial` threads, rounded up)."""
        return cls(train=config["train"], data=config["data"], device=config["execution"]["device"],
                   time_limit_s=config["search"]["trial_timeout_s"],
                   threads=max(1, math.ceil(config["execution"]["cpus_per_trial"])))


SPACES: Registry[type[SearchSpace]] = Registry("space")
register_space = SPACES.register
