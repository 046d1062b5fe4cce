"""`sparsenas latency profile | fit | predict` (the CLI wiring is in sparsenas/cli.py)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

from .. import spaces  # noqa: F401 — registers the spaces
from ..config import CORE, load_preset, merge, parse_override
from ..errors import ConfigError
from ..paths import output_file
from ..schema import schema_of, validate_section
from ..space import SPACES, SearchSpace
from ..tables import read_table
from .base import Target, model_io
from .learned import LearnedLatency, Prior, parse_arch
from .lut import describe_noise, profile, table_path


def space_and_data(ref: str, overrides: list[str]) -> tuple[SearchSpace, dict]:
    """The space of a preset name or YAML file (with `--set space.*/data.*` overrides) and its data section."""
    raw = load_preset("space", ref, SPACES)
    for item in overrides:
        fragment = parse_override(item)
        if set(fragment) - {"space", "data"}:
            raise ConfigError(f"--set {item}: latency commands take only space.* and data.* keys")
        raw = merge(raw, fragment)
    values = dict(raw.get("space") or {})
    name = values.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(f"{ref} names no space (space.name)")
    cls = SPACES.get(name)
    options = validate_section("space", values, schema_of(cls))
    return cls(**options), validate_section("data", raw.get("data") or {}, CORE["data"])


def _archs(space: SearchSpace, path: str, rows: list[dict], column: str):
    archs = []
    for n, row in enumerate(rows, start=2):
        try:
            archs.append(parse_arch(space, row[column]))
        except ConfigError as e:
            raise ConfigError(f"{path} line {n}: {e}") from None
    return archs


def cmd_profile(args) -> int:
    space, data = space_and_data(args.space, args.overrides)
    target = Target(args.device, args.batch_size, args.threads, args.dtype, args.mode)
    io = model_io(space, data)
    out = output_file(args.out or table_path(space, target, io, args.cache_dir), "--out" if args.out else "--cache-dir")
    for key, value, least in (("--archs", args.archs, 1), ("--calibration", args.calibration, 0),
                              ("--passes", args.passes, 1)):
        if value < least:
            raise ConfigError(f"{key} must be >= {least}, got {value}")
    table = profile(space, target, io, archs=args.archs, calibration=args.calibration, seed=args.seed,
                    passes=args.passes, log=(lambda m: None) if args.quiet else print)
    table.save(out)
    print(f"latency table of space {space.name} ({len(table.kernels)} kernels, {target.device}, batch "
          f"{target.batch_size}, {target.threads} threads, {target.mode}) written to {out}")
    print(describe_noise(table.meta["noise"]))
    return 0


def cmd_fit(args) -> int:
    output_file(args.out, "--out")
    space, data = space_and_data(args.space, args.overrides)
    _, rows = read_table(args.table, [args.arch_column, args.latency_column])
    archs = _archs(space, args.table, rows, args.arch_column)
    latencies = []
    for n, row in enumerate(rows, start=2):
        try:
            value = float(row[args.latency_column])
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{args.table} line {n}: {args.latency_column}={row[args.latency_column]!r} "
                              "is not a latency in ms (> 0)")
        latencies.append(value)
    io = model_io(space, data) if hasattr(space, "build") else None
    prior = Prior.load(args.prior, space) if args.prior else None
    predictor = LearnedLatency(space, archs, latencies, args.model, io=io, prior=prior)
    predictor.save(args.out)
    print(f"learned latency predictor ({predictor.model} on {predictor.view} features"
          f"{', prior ' + args.prior if args.prior else ''}, {len(archs)} samples, space {space.name}) "
          f"written to {args.out}")
    return 0


def cmd_predict(args) -> int:
    output_file(args.out, "--out")
    predictor = LearnedLatency.load(args.predictor)
    header, rows = read_table(args.table, [args.arch_column])
    archs = _archs(predictor.space, args.table, rows, args.arch_column)
    predicted = predictor.predict_many(archs)
    out_header = header + (["predicted_ms"] if "predicted_ms" not in header else [])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, out_header, extrasaction="ignore")
        writer.writeheader()
        for row, ms in zip(rows, predicted):
            writer.writerow({**row, "predicted_ms": f"{ms:.6g}"})
    print(f"{len(rows)} predictions written to {args.out}")
    return 0


COMMANDS = {"profile": cmd_profile, "fit": cmd_fit, "predict": cmd_predict}
