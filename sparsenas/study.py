"""The Python API: a search as an object, in the spirit of Optuna's `Study` (the CLI is a thin layer over it).

    study = sparsenas.Study(space="nb201", strategy="evolution", seed=0,
                            overrides={"space.benchmark_file": "nb201.csv"})
    study.optimize(n_trials=50)
    study.best, study.trials, study.pareto_front

`space` and `strategy`: a preset name or YAML file (as on the command line), a config section (a dict with a
`name`), or an object — a `SearchSpace` instance, a `Strategy` class (registered or not). `objective`: a config
section (`{"maximize": [...], "minimize": [...], "constraints": {...}}`) or an `Objective`. `overrides`: dotted
keys as `--set` takes them, as a dict (`{"train.epochs": 2}`) or a list of `"key=value"` strings.
`storage`: a run directory, written exactly as `sparsenas search` writes it; with `load_if_exists=True` an
existing one is continued (its config is kept; only the keys in `RESUMABLE` may change). None keeps the study
in memory: nothing is written and it cannot be resumed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .assemble import resolve
from .config import load_preset, parse_override
from .errors import ConfigError
from .journal import TrialResult
from .objective import Objective
from .rundir import MemoryRun, RunDir
from .search import Search
from .space import SPACES, SearchSpace
from .strategies import STRATEGIES, Strategy

RESUMABLE = ("search.budget", "search.max_failures", "search.trial_timeout_s", "execution")
REGISTRIES = {"space": SPACES, "strategy": STRATEGIES}


class Study:
    """A search over `space` with `strategy`, resumable when `storage` is a run directory."""

    def __init__(self, space: str | dict | SearchSpace | None = None, strategy: str | dict | type[Strategy] | None = None,
                 *, storage: str | Path | None = None, load_if_exists: bool = False, seed: int | None = None,
                 objective: dict | Objective | None = None, overrides: dict[str, Any] | list[str] = (),
                 progress: bool = False):
        self.run = MemoryRun() if storage is None else RunDir(Path(storage))
        extra = _override_fragments(overrides, seed, objective)
        space_obj = space if isinstance(space, SearchSpace) else None
        strategy_cls = strategy if isinstance(strategy, type) else None
        classes = {"space": type(space_obj) if space_obj else None, "strategy": strategy_cls}
        self.resume = isinstance(self.run, RunDir) and self.run.is_run()
        if self.resume:
            if not load_if_exists:
                raise ConfigError(f"{self.run} already exists; use --resume (load_if_exists=True) to continue it "
                                  "or choose another --name")
            self.config = _resumed_config(self.run, space, strategy, extra, classes)
        else:
            if space is None or strategy is None:
                raise ConfigError("a search needs a space and a strategy (or --resume of an existing run)")
            fragments = [section_fragment("space", space), section_fragment("strategy", strategy)]
            self.config = resolve(fragments + extra, classes=classes)
        self.search = Search(self.config, self.run, progress=progress, space=space_obj, strategy_cls=strategy_cls)
        self.objective = self.search.objective
        self._trials: list[TrialResult] = self.run.results() if self.resume else []

    def optimize(self, n_trials: int | None = None) -> list[TrialResult]:
        """Run `n_trials` more trials (default: until the config's `search.budget` trials are done)."""
        if n_trials is not None:
            if n_trials < 0:
                raise ConfigError(f"n_trials must be >= 0, got {n_trials}")
            self.search.config["search"]["budget"] = len(self._trials) + n_trials
        self._trials = self.search.run(resume=self.resume)
        self.resume = isinstance(self.run, RunDir)
        return self.trials

    @property
    def trials(self) -> list[TrialResult]:
        """Every finished trial, in the order they finished."""
        return list(self._trials)

    @property
    def best(self) -> TrialResult | None:
        """The best trial by the first objective (constraints respected), or None before any ok trial."""
        return self.objective.best(self._trials)

    @property
    def pareto_front(self) -> list[TrialResult]:
        """The non-dominated ok trials over all objectives."""
        return self.objective.pareto_front(self._trials)


def section_fragment(section: str, value) -> dict:
    """A config fragment for `space`/`strategy` given as a preset name or file, a dict, or an object."""
    if isinstance(value, str):
        return load_preset(section, value, REGISTRIES[section])
    if isinstance(value, dict):
        return {section: value}
    if isinstance(value, SearchSpace):
        return {section: {"name": value.name, **value.options}}
    if isinstance(value, type) and issubclass(value, Strategy):
        return {section: {"name": value.name or value.__name__}}
    raise ConfigError(f"{section} must be a preset name, a YAML file, a dict or a "
                      f"{'SearchSpace' if section == 'space' else 'Strategy class'}, got {type(value).__name__}")


def _override_fragments(overrides, seed: int | None, objective) -> list[dict]:
    if isinstance(overrides, dict):
        fragments = [_nested(key, value) for key, value in overrides.items()]
    else:
        fragments = [parse_override(item) for item in overrides]
    if seed is not None:
        fragments.append({"search": {"seed": seed}})
    if isinstance(objective, Objective):
        objective = {"maximize": objective.maximize, "minimize": objective.minimize,
                     "constraints": objective.constraints}
    if objective is not None:
        fragments.append({"objective": objective})
    return fragments


def _nested(key: str, value) -> dict:
    """{"a.b": v} as {"a": {"b": v}}, the value taken as given (not read as YAML)."""
    fragment = parse_override(f"{key}=null")
    inner = fragment
    *path, last = key.split(".")
    for part in path:
        inner = inner[part]
    inner[last] = value
    return fragment


def _resumed_config(run: RunDir, space, strategy, extra: list[dict], classes: dict) -> dict:
    """The run's saved config with `extra` applied, refusing any change outside RESUMABLE."""
    saved = resolve([run.read_config("--resume: run config")], classes=classes)
    for section, value in (("space", space), ("strategy", strategy)):
        if value is not None:
            wanted = section_fragment(section, value).get(section, {}).get("name")
            if wanted != saved[section]["name"]:
                raise ConfigError(f"--resume: run {run.path.name!r} used {section} {saved[section]['name']!r}, "
                                  f"not {wanted!r}")
    config = resolve([saved] + extra, classes=classes)
    changed = [k for k in _changed_keys(saved, config) if not any(k == r or k.startswith(r + ".") for r in RESUMABLE)]
    if changed:
        raise ConfigError(f"--resume cannot change {changed[0]} (only {', '.join(RESUMABLE)})")
    return config


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(old) | set(new)):
        a, b, path = old.get(k), new.get(k), f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed_keys(a, b, path + ".")
        elif a != b:
            keys.append(path)
    return keys
