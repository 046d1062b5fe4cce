"""Run configuration: defaults ← space preset ← strategy preset ← CLI flags ← `--set` overrides.

Presets and YAML files are read and merged here, and the core sections checked against their schema (CORE)
so that a typo or a wrong type fails before anything is written, with one line. Nothing here looks a name up
in a registry: `sparsenas.assemble.resolve` completes the check (`space` and `strategy` against the chosen
class's `defaults`, and every registered name) and builds the run's parts.
"""
from __future__ import annotations

import copy
import logging
import os
import re
from pathlib import Path

import torch
import yaml

from . import presets
from .data import AUGMENTATIONS
from .errors import ConfigError
from .schema import NUM, OPT_INT, OPT_NUM, OPT_STR, Field, fraction, non_negative, number_ok, positive, \
    show, type_ok, validate_section
from .sparse_training import TRAIN_OPTIONS

log = logging.getLogger("sparsenas")

CORE: dict[str, dict[str, Field]] = {
    "search": {
        "budget": Field(10, (int,), positive, "must be >= 1"),
        "seed": Field(0, (int,), lambda v: 0 <= v < 2 ** 32, "must be in 0..4294967295"),
        "max_failures": Field(None, OPT_INT, positive, "must be >= 1"),
        "trial_timeout_s": Field(None, OPT_NUM, positive, "must be > 0"),
    },
    "data": {
        "name": Field("digits", (str,)),
        "path": Field(None, OPT_STR),
        "val_fraction": Field(0.25, NUM, fraction, "must be in (0, 1)"),
        "test_fraction": Field(0.25, NUM, fraction, "must be in (0, 1)"),
        "limit": Field(None, OPT_INT, positive, "must be >= 1"),
        "downsample": Field(1, (int,), positive, "must be an integer >= 1"),
        "image_size": Field(None, OPT_INT, positive, "must be >= 1"),  # resize images to image_size²
        "normalize": Field("none", (str,), choices=("none", "dataset")),  # dataset: training split's mean/std
        "augment": Field([], (list, str), choices=AUGMENTATIONS),  # of training batches, from the trial seed
    },
    "train": {
        "epochs": Field(5, (int,), positive, "must be >= 1"),
        "batch_size": Field(64, (int,), positive, "must be >= 1"),
        "lr": Field(0.05, NUM, positive, "must be > 0"),
        "momentum": Field(0.9, NUM, non_negative, "must be >= 0"),
        "weight_decay": Field(3e-4, NUM, non_negative, "must be >= 0"),
        "score_lr": Field(0.1, NUM, positive, "must be > 0"),
        "grad_clip": Field(5.0, OPT_NUM, positive, "must be > 0"),
        "warmup_epochs": Field(0, NUM, non_negative, "must be >= 0"),  # linear LR warm-up; < epochs (validate_core)
        **TRAIN_OPTIONS,  # sparse training and the random-mask baseline, declared in sparsenas/sparse_training.py
    },
    "objective": {
        "maximize": Field(["val_acc"], (list, str)),
        "minimize": Field([], (list, str)),
        "constraints": Field({}, (dict,)),
        "reference": Field({}, (dict,)),  # hypervolume reference point {metric: value}; see Objective
    },
    "execution": {
        "executor": Field("local", (str,)),
        "workers": Field(None, OPT_INT, positive, "must be >= 1"),
        "address": Field(None, OPT_STR),
        "device": Field("auto", (str,), lambda v: v in ("auto", "cpu", "cuda"), "must be auto, cpu or cuda"),
        "cpus_per_trial": Field(1, NUM, positive, "must be > 0"),
        "gpus_per_trial": Field(0, NUM, non_negative, "must be >= 0"),
        # ray / tune executors: retries of a trial whose worker died, driver-side kill limit per attempt,
        # and how long to wait for a first worker (early stopping: the `scheduler` section)
        "retries": Field(1, (int,), non_negative, "must be >= 0"),
        "kill_timeout_s": Field(None, OPT_NUM, positive, "must be > 0"),
        "start_timeout_s": Field(120.0, NUM, positive, "must be > 0"),
    },
    # hardware latency predictor → cheap metric latency_ms (sparsenas/hardware; checked by normalise_latency_config)
    "latency": {
        "predictor": Field(None, OPT_STR),  # null (no latency_ms), measured, lut or learned
        "version": Field(None, OPT_STR),  # filled in from the predictor: every latency_ms of a run is from it
        "device": Field("cpu", (str,)),
        "batch_size": Field(1, (int,), positive, "must be >= 1"),
        "threads": Field(1, (int,), positive, "must be >= 1"),
        "dtype": Field("float32", (str,)),
        "mode": Field("exported", (str,)),  # exported (what `sparsenas export` deploys) or masked (dense)
        # measured: what executes the network (sparsenas/hardware/runtimes.py)
        "runtime": Field("torch", (str,), choices=("torch", "onnxruntime")),
        "file": Field(None, OPT_STR),  # lut: a table (default: found in cache_dir); learned: P.json
        "cache_dir": Field(None, OPT_STR),  # lut tables (default ~/.cache/sparsenas)
        "warmup": Field(5, (int,), non_negative, "must be >= 0"),  # measured
        "repeats": Field(20, (int,), positive, "must be >= 1"),  # measured
        "reward_target_ms": Field(None, OPT_NUM, positive, "must be > 0"),  # MnasNet reward latency_reward
        "reward_exponent": Field(-0.07, NUM),
    },
}
SECTIONS = ("space", "strategy", "scheduler", *CORE)
# the old early-stopping keys of `execution` (tune only), read as the `scheduler` section's with a warning
LEGACY_SCHEDULER = {"scheduler": "name", "asha_grace_period": "grace_period",
                    "asha_reduction_factor": "reduction_factor"}
_warned: set[str] = set()


def preset_names(kind: str) -> list[str]:
    return sorted(p.name[:-5] for p in presets.folder(kind).iterdir() if p.name.endswith(".yaml"))


class SafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader with YAML 1.2 numbers: `1e-3` and `1e12` are floats, `2:4` stays a string (YAML 1.1
    would read it as the base-60 integer 124)."""


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
SafeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
SafeLoader.add_implicit_resolver(_INT, re.compile(r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""", re.X), list("-+0123456789"))
SafeLoader.add_implicit_resolver(_FLOAT, re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X), list("-+0123456789."))


def safe_load(text: str):
    return yaml.load(text, Loader=SafeLoader)


def _load_yaml(text: str, where: str) -> dict:
    try:
        data = safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{where} is not valid YAML{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping, got {type(data).__name__}")
    return data


def read_yaml_file(path, what: str) -> dict:
    """The mapping in the YAML file `path`; one line (ConfigError) naming `what` and the path if it cannot be
    read, is not UTF-8 text or not YAML, or holds something else than a mapping."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {e.start})") from None
    return _load_yaml(text, f"{what} {path}")


PRESET_FOLDERS = {"space": "search_spaces", "strategy": "strategies"}  # the presets of each plug-in section


def load_preset(section: str, ref: str, registry) -> dict:
    """A config fragment for `section` (space or strategy) from a preset name, a YAML file, or a bare
    registered name."""
    kind = PRESET_FOLDERS[section]
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        return read_yaml_file(ref, f"{kind} file")
    preset = presets.folder(kind) / f"{ref}.yaml"
    if preset.is_file():
        return _load_yaml(preset.read_text(encoding="utf-8"), f"preset {ref}")
    registry.get(ref)  # raises with the known names
    return {section: {"name": ref}}


def merge(base: dict, update: dict) -> dict:
    """Deep merge: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(item: str) -> dict:
    """`a.b.c=value` → {"a": {"b": {"c": value}}}; the value is read as YAML (numbers, lists, null)."""
    key, sep, raw = item.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects key=value with a dotted key, got {item!r}")
    parts = key.split(".")
    if parts[0] not in SECTIONS:
        raise ConfigError(f"unknown config section {parts[0]!r} in --set {item} (known: {', '.join(SECTIONS)})")
    try:
        value = safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    for part in reversed(parts):
        value = {part: value}
    return value


def merge_fragments(fragments: list[dict]) -> dict:
    """The fragments merged in order (later wins), each section checked to be a known mapping."""
    raw: dict = {"space": {}, "strategy": {}, "scheduler": {}}
    for fragment in fragments:
        unknown = sorted(set(fragment) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"unknown config section {unknown[0]!r} (known: {', '.join(SECTIONS)})")
        for section, values in fragment.items():
            if not isinstance(values, dict):
                raise ConfigError(f"config section {section!r} must be a mapping, got {values!r}")
        raw = merge(raw, fragment)
    return legacy_scheduler(raw)


def legacy_scheduler(raw: dict) -> dict:
    """`execution.scheduler` (fifo → none), `execution.asha_grace_period` and `execution.asha_reduction_factor`
    moved to the `scheduler` section (its own keys win); each warns once per process."""
    old = {k: raw.get("execution", {}).pop(k) for k in LEGACY_SCHEDULER if k in raw.get("execution", {})}
    for key in old:
        if key not in _warned:
            _warned.add(key)
            log.warning("sparsenas: execution.%s is deprecated; use scheduler.%s", key, LEGACY_SCHEDULER[key])
    if "scheduler" in old and old["scheduler"] not in ("fifo", "asha"):
        raise ConfigError(f"execution.scheduler must be fifo or asha, got {old['scheduler']!r}")
    name = raw["scheduler"].get("name", {"fifo": "none"}.get(old.get("scheduler"), old.get("scheduler")))
    if name is not None:
        raw["scheduler"].setdefault("name", name)
    if name in ("asha", "hyperband"):  # the ASHA options were inert with fifo
        for key, new in LEGACY_SCHEDULER.items():
            if key in old and key != "scheduler":
                raw["scheduler"].setdefault(new, old[key])
    return raw


def validate_core(raw: dict) -> dict:
    """The core sections of a merged config checked against CORE and completed with defaults. The `space`,
    `strategy` and registry names are checked by `sparsenas.assemble.resolve`."""
    config = {section: validate_section(section, raw.get(section, {}), schema) for section, schema in CORE.items()}
    train = config["train"]
    if train["warmup_epochs"] >= train["epochs"]:
        raise ConfigError(f"train.warmup_epochs={train['warmup_epochs']:g} must be < train.epochs "
                          f"({train['epochs']})")
    return config


def normalise_objective(obj: dict) -> None:
    for key in ("maximize", "minimize"):
        names = [obj[key]] if isinstance(obj[key], str) else obj[key]
        if not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"objective.{key} must be a metric name or a list of names, got {obj[key]!r}")
        twice = [n for n in names if names.count(n) > 1]
        if twice:
            raise ConfigError(f"objective.{key} names {twice[0]!r} more than once")
        obj[key] = list(names)
    if not obj["maximize"] and not obj["minimize"]:
        raise ConfigError("objective needs at least one metric in maximize or minimize")
    both = set(obj["maximize"]) & set(obj["minimize"])
    if both:
        raise ConfigError(f"objective metric {sorted(both)[0]!r} is both maximized and minimized")
    for name, bounds in obj["constraints"].items():
        name = show(str(name))
        ok = (isinstance(bounds, list) and len(bounds) == 2
              and all(b is None or (type_ok(b, NUM) and number_ok(b)) for b in bounds))
        if not ok:
            raise ConfigError(f"objective.constraints.{name} must be [low, high] (null for open), got {bounds!r}")
        low, high = bounds
        if low is not None and high is not None and low > high:
            raise ConfigError(f"objective.constraints.{name} has low > high: {bounds!r}")


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def check_device(device: str, what: str = "execution.device") -> None:
    """ConfigError for a device this machine does not have."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{what}=cuda but CUDA is not available on this machine")


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _gpus() -> int:
    return torch.cuda.device_count()


LOCAL_RESOURCES = {"cpus_per_trial": ("CPUs", _cpus), "gpus_per_trial": ("CUDA GPUs", _gpus)}


def check_machine(config: dict) -> None:
    """ConfigError when a resolved config asks this machine for what it lacks: CUDA for trials that run here
    (no execution.address), or, for the local executor, more CPUs or GPUs per trial than it has."""
    execution = config["execution"]
    if not execution["address"]:
        check_device(execution["device"])
    if execution["executor"] != "local":
        return  # Ray checks a trial's resources against its nodes
    for key, (unit, available) in LOCAL_RESOURCES.items():
        have = available()
        if execution[key] > have:
            raise ConfigError(f"execution.{key}={execution[key]:g} but this machine has {have} {unit}")
