"""Export a run: `export_run` retrains the chosen trial of a run (best.json, or --trial N) with the run's
config, converts it with `sparsenas.ops.deploy.to_deployable` (see there for the per-layer plan: dense, csr,
channel, nm), checks that the outputs match the masked model, and writes OUT/model.pt (a state dict that
loads with torch.load(weights_only=True)) and OUT/export.json (run config, arch, seed, plan, metrics, and the
per-layer accounting of `ops.accounting.count_layers`: weights, nnz, dense and sparse MACs; "artifact": the
file `--format` wrote, see `ops.formats`);
`load_exported(OUT)` rebuilds the deployable module (from the space's `build`; no data needed).
Retraining uses `training.train_and_evaluate` with the run's `train` section (plain CE): a space whose own
`evaluate` trains differently (e.g. TAS with distillation) is retrained without that difference.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .assemble import build_space, resolve
from .config import check_device
from .data import load_data
from .errors import ConfigError
from .objective import Objective
from .ops.accounting import count_layers
from .ops.deploy import REBUILT_AT_LOAD, max_abs_diff, portable, replace_module, to_deployable
from .ops.formats import FORMATS, check_format
from .ops.planner import KERNELS
from .paths import output_dir
from .rundir import RunDir
from .space import Arch
from .training import resolve_device, train_and_evaluate


def _chosen_trial(run: RunDir, config: dict, trial: int | None):
    """The record of trial `trial`, by default the best (the one best.json names), read without touching the
    journal (a search may be writing it)."""
    run_dir = run.path
    records = {r.trial: r for r in run.results()}
    if trial is None:
        best = Objective.from_config(config["objective"]).best(list(records.values()))
        if best is None:
            raise ConfigError(f"{run_dir} has no successful trial to export")
        trial = best.trial
    if trial not in records:
        raise ConfigError(f"{run_dir} has no trial {trial} (trials: 0..{max(records, default=-1)})")
    if not records[trial].ok:
        raise ConfigError(f"trial {trial} of {run_dir} is {records[trial].status}, not ok; nothing to export")
    return records[trial]


def _build(config: dict, arch, seed: int, input_shape, num_classes: int) -> nn.Module:
    """The freshly built (seeded) masked model of `arch` in the run's space."""
    space = build_space(config)
    if not hasattr(space, "build"):
        raise ConfigError(f"space {config['space']['name']!r} is not built as a network; nothing to export")
    torch.manual_seed(seed)  # as TrainedSpace.build_seeded
    return space.build(arch, tuple(input_shape), num_classes)


def export_run(run_dir, trial: int | None = None, out=None, epochs: int | None = None, csr: str = "auto",
               device: str = "cpu", fmt: str = "pt", batch_size: int = 1, threads: int = 1, log=print) -> dict:
    """Retrain the chosen trial's architecture and write the deployable module, its kernels timed for the
    target (`batch_size` samples per forward pass, `threads` CPU threads, `device`); returns export.json's
    dict. Everything the user gives is checked before retraining."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} does not exist")
    check_format(fmt)
    for flag, value in (("--batch-size", batch_size), ("--threads", threads)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    run = RunDir(run_dir)
    config = resolve([run.read_config()])
    record = _chosen_trial(run, config, trial)
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {epochs}")
        config["train"]["epochs"] = epochs
    out = output_dir(out if out is not None else run_dir / f"export-trial{record.trial}", "--out")
    check_device(device, "--device")
    device = resolve_device(device)
    data = load_data(config["data"])
    model = _build(config, record.arch, record.seed, data.input_shape, data.num_classes)
    log(f"retraining trial {record.trial} ({config['train']['epochs']} epochs, seed {record.seed}) ...")
    metrics = train_and_evaluate(model, data, config["train"], record.seed, device)
    model = model.to(device).eval()
    example = data.val[0][:256].to(device)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        deployable, plan = to_deployable(model, example[:batch_size], csr=csr, device=device)
    finally:
        torch.set_num_threads(before)
    diff = max_abs_diff(model, deployable, example)
    if not diff < 1e-4:
        raise RuntimeError(f"exported model differs from the masked model by {diff:.3g} (> 1e-4)")
    saved, _ = to_deployable(model, plan=portable(plan))
    saved.load_state_dict(_dense_state(deployable, plan))
    out.mkdir(parents=True, exist_ok=True)
    torch.save(saved.cpu().state_dict(), out / "model.pt")
    artifact = FORMATS.get(fmt)(deployable, example, out)
    layers = [row.as_dict() for row in count_layers(model.cpu(), data.input_shape)]
    info = {"run_dir": str(run_dir), "trial": record.trial, "seed": record.seed, "arch": dict(record.arch),
            "label": record.label, "metrics": metrics, "max_abs_diff": diff, "input_shape": list(data.input_shape),
            "num_classes": data.num_classes, "plan": plan, "layers": layers, "artifact": artifact,
            "target": {"batch_size": batch_size, "threads": threads, "device": device}, "config": config}
    (out / "export.json").write_text(json.dumps(info, indent=1))
    return info


def load_exported(out, device: str = "cpu") -> nn.Module:
    """The deployable module saved by `export_run` in `out` (eval mode, on `device`)."""
    out = Path(out)
    try:
        info = json.loads((out / "export.json").read_text())
    except (OSError, ValueError):
        raise ConfigError(f"{out} is not a sparsenas export (no readable export.json)") from None
    model = _build(info["config"], Arch(info["arch"]), info["seed"], info["input_shape"], info["num_classes"])
    deployable, _ = to_deployable(model, plan=portable(info["plan"]))
    deployable.load_state_dict(torch.load(out / "model.pt", weights_only=True, map_location="cpu"))
    deployable = deployable.to(device).eval()
    for name, entry in info["plan"].items():  # kernels saved dense: converted where they exist on this device
        kernel = KERNELS.get(entry["action"]) if entry["action"] in REBUILT_AT_LOAD else None
        if kernel is not None and kernel.exists(deployable.get_submodule(name), device) is None:
            deployable = replace_module(deployable, name, kernel.build(deployable.get_submodule(name)))
    return deployable


def _dense_state(deployable: nn.Module, plan: dict) -> dict:
    """The state dict of `deployable` with the weights of REBUILT_AT_LOAD kernels as dense tensors."""
    state = deployable.state_dict()
    for name, e in plan.items():
        if e["action"] in REBUILT_AT_LOAD:
            key = f"{name}.weight" if name else "weight"
            state[key] = state[key].to_dense()
    return state



def format_plan(plan: dict) -> str:
    """One row per module: mask, sparsity, kernel, channels kept (in → out) where they changed, note."""
    rows = [f"{'layer':<40} {'mask':<10} {'sparsity':>8}  {'action':<8} {'channels':<12} note"]
    for name, e in plan.items():
        sparsity = f"{e['sparsity']:>8.3f}" if "sparsity" in e else f"{'':>8}"
        channels = f"{len(e['kept_in'])}→{len(e['kept_out'])}" if "kept_in" in e else ""
        rows.append(f"{name[-40:]:<40} {e.get('mask', '-'):<10} {sparsity}  {e['action']:<8} {channels:<12} "
                    f"{e.get('note', '')}")
    return "\n".join(rows)
