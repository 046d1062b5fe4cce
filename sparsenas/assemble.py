"""One place that assembles a run from a config: `resolve` completes the check of a merged config against the
registries (the chosen space's and strategy's options, the latency predictor, executor and dataset names),
and `build_space` / `build_strategy` make the run's parts from a resolved config.

It stands above every registry (spaces, strategies, hardware, execution, data) and below whatever runs or
reads a run (the search loop, export, the CLI), so no registry needs to know about configs.
"""
from __future__ import annotations

from . import spaces  # noqa: F401 — registers the built-in spaces
from .config import SECTIONS, merge_fragments, normalise_objective, validate_core
from .data import DATASETS
from .errors import ConfigError
from .execution import EXECUTORS
from .hardware import normalise_latency_config
from .objective import Objective
from .registry import Registry
from .schedulers import SCHEDULERS, Scheduler
from .schema import schema_of, validate_section
from .space import SPACES, SearchSpace
from .strategies import STRATEGIES, Strategy


def _plugin_section(section: str, values: dict, registry: Registry, cls: type | None = None) -> dict:
    """`space` or `strategy`: a `name` and the options of its class (registered under that name, or `cls`, a
    class given as an object), checked against the class's options schema — the check its `__init__` makes."""
    values = dict(values)
    name = values.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(f"{section}.name is required (choose from: {', '.join(registry.names())})")
    cls = cls or registry.get(name)
    return {"name": name, **validate_section(section, values, schema_of(cls))}


def resolve(fragments: list[dict], classes: dict[str, type | None] | None = None) -> dict:
    """Merge fragments over the core defaults and validate everything; returns the full config. `classes`:
    the space and strategy classes when they are given as objects (then they need not be registered)."""
    raw = merge_fragments(fragments)
    config = validate_core(raw)
    for section, registry in (("space", SPACES), ("strategy", STRATEGIES)):
        config[section] = _plugin_section(section, raw[section], registry, (classes or {}).get(section))
    config["scheduler"] = _plugin_section("scheduler", {"name": "none", **raw["scheduler"]}, SCHEDULERS)
    normalise_objective(config["objective"])
    normalise_latency_config(config["latency"])
    EXECUTORS.get(config["execution"]["executor"])
    DATASETS.get(config["data"]["name"])
    return {s: config[s] for s in SECTIONS}


def build_space(config: dict) -> SearchSpace:
    options = {k: v for k, v in config["space"].items() if k != "name"}
    return SPACES.get(config["space"]["name"])(**options)


def build_strategy(config: dict, space: SearchSpace, objective: Objective, cls: type[Strategy] | None = None) -> Strategy:
    cls = cls or STRATEGIES.get(config["strategy"]["name"])
    missing = [cap.__name__ for cap in cls.requires if not isinstance(space, cap)]
    if missing:
        raise ConfigError(f"strategy {cls.name!r} needs a space with {', '.join(missing)}; "
                          f"space {space.name!r} has none")
    options = {k: v for k, v in config["strategy"].items() if k != "name"}
    return cls(space, objective, config["search"]["seed"], **options)


def build_scheduler(config: dict, objective: Objective) -> Scheduler:
    """The run's scheduler; its cross-checks (grace period within max_epochs, metrics among the objectives) are
    one-line ConfigErrors."""
    options = {k: v for k, v in config["scheduler"].items() if k != "name"}
    return SCHEDULERS.get(config["scheduler"]["name"])(objective, config["train"]["epochs"],
                                                       config["search"]["seed"], **options)
