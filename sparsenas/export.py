"""Export: turn a masked model (dense weights ⊙ mask) into one that runs with real sparse execution.

Per sparse layer (the `plan`, one entry per layer, saved with the weights):
  dense     keep 1, or an unstructured conv (unfold + CSR is slower than a dense conv on CPU), or an
            unstructured linear where CSR is not faster: a plain nn.Linear / nn.Conv2d with W ⊙ mask baked in
  csr       unstructured linear run as torch.sparse CSR (`CSRLinear`) when that is faster on the layer's
            real input (timed, median of a few runs) — or always / never (`csr=`)
  channel   whole-channel masks: a physically smaller dense layer over the kept output channels, its
            output scattered into the full width (`ChannelSlice`; the consumer is not shrunk)
  nm        N:M masks: `to_sparse_semi_structured` on a CUDA device of compute capability >= 8.0, else a
            dense layer (the plan says why)
`export_run` retrains the chosen trial of a run (best.json, or --trial N) with the run's config, converts it,
checks that the outputs match the masked model, and writes OUT/model.pt (a state dict that loads with
torch.load(weights_only=True)) and OUT/export.json (run config, arch, seed, plan, metrics, and the
per-layer accounting of `ops.accounting.count_layers`: weights, nnz, dense and sparse MACs);
`load_exported(OUT)` rebuilds the deployable module (from the space's `build`; no data needed).
Retraining uses `training.train_and_evaluate` with the run's `train` section (plain CE): a space whose own
`evaluate` trains differently (e.g. TAS with distillation) is retrained without that difference.
"""
from __future__ import annotations

import copy
import json
import statistics
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .ops.accounting import count_layers
from .ops.sparse import SparseMixin
from .registry import Registry

CSR_CHOICES = ("auto", "always", "never")


def _csr(crow, col, values, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


class _Resizable(nn.Module):
    """Buffers whose sizes depend on the trained weights take the size of the loaded state dict."""

    _resizable: tuple[str, ...] = ()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self._resizable:
            if prefix + name in state_dict:
                setattr(self, name, state_dict[prefix + name].detach().clone())
        return super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class CSRLinear(_Resizable):
    """y = x Wᵀ + b with W stored as CSR (buffers crow_indices, col_indices, values)."""

    _resizable = ("crow_indices", "col_indices", "values")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            csr = weight.detach().to_sparse_csr()
        self.register_buffer("crow_indices", csr.crow_indices().clone())
        self.register_buffer("col_indices", csr.col_indices().clone())
        self.register_buffer("values", csr.values().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = _csr(self.crow_indices, self.col_indices, self.values, (self.out_features, self.in_features))
        flat = x.reshape(-1, self.in_features)
        y = (w @ flat.t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


class ChannelSlice(nn.Module):
    """A layer computed only for its kept output channels; the others output their bias (or 0)."""

    def __init__(self, inner: nn.Module, kept: torch.Tensor, full_bias: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.dim = -1 if isinstance(inner, nn.Linear) else 1  # the channel dimension of the output
        self.register_buffer("kept", kept.clone())
        self.register_buffer("full_bias", full_bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        dim = self.dim % y.dim()
        shape = list(y.shape)
        shape[dim] = self.full_bias.numel()
        view = [1] * len(shape)
        view[dim] = -1
        out = self.full_bias.view(view).expand(shape).contiguous()
        return out.index_copy_(dim, self.kept, y)


def _plain(layer: SparseMixin, rows: torch.Tensor | None = None) -> nn.Module:
    """A plain nn.Linear / nn.Conv2d with the effective weight baked in (only output channels `rows`)."""
    w = layer.effective_weight().detach()
    bias = None if layer.bias is None else layer.bias.detach()
    if rows is not None:
        w, bias = w[rows], None if bias is None else bias[rows]
    if isinstance(layer, nn.Linear):
        out = nn.Linear(w.shape[1], w.shape[0], bias=layer.bias is not None)
    else:
        out = nn.Conv2d(w.shape[1] * layer.groups, w.shape[0], layer.kernel_size, layer.stride, layer.padding,
                        layer.dilation, layer.groups, bias=layer.bias is not None, padding_mode=layer.padding_mode)
    out = out.to(device=w.device, dtype=w.dtype)
    with torch.no_grad():
        out.weight.copy_(w)
        if layer.bias is not None:
            out.bias.copy_(bias)
    return out


def median_ms(fns, reps: int = 9) -> list[float]:
    """Median ms of each callable; they run in turn within each repetition (after 2 warm-up rounds), so a
    change of machine load hits all of them alike."""
    times: list[list[float]] = [[] for _ in fns]
    with torch.no_grad():
        for rep in range(reps + 2):
            for fn, ts in zip(fns, times):
                t = time.perf_counter()
                fn()
                if rep >= 2:
                    ts.append(time.perf_counter() - t)
    return [statistics.median(ts) * 1e3 for ts in times]


def semi_structured_ok(device: str) -> str | None:
    """None if 2:4 semi-structured kernels can run on `device`, else the reason why not."""
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return "semi-structured sparse kernels need a CUDA device; kept dense"
    if torch.cuda.get_device_capability(torch.device(device)) < (8, 0):
        return "semi-structured sparse kernels need CUDA compute capability >= 8.0; kept dense"
    return None


def _fits_2_4(layer: SparseMixin, w: torch.Tensor) -> str | None:
    """None if `w` is a linear weight with at most 2 nonzeros in every 4 consecutive inputs, else why not."""
    if not isinstance(layer, nn.Linear):
        return "semi-structured kernels are for linear layers; kept dense"
    if w.shape[1] % 4 or int((w.reshape(-1, 4) != 0).sum(-1).max()) > 2:
        return f"{layer.mask_mode} is not a 2:4 pattern; kept dense"
    return None


# how each mask pattern is deployed: DEPLOY_RULES[pattern](layer, w, x, csr, device) -> (action, note)
DEPLOY_RULES: Registry = Registry("mask pattern")
# how each action builds the replacement: ACTIONS[action](layer, w) -> module
ACTIONS: Registry = Registry("export action")


@DEPLOY_RULES.register("unstructured")
def _unstructured_rule(layer, w, x, csr, device):
    if not isinstance(layer, nn.Linear):
        return "dense", "unstructured conv: CSR conv is slower than dense on CPU"
    if csr == "always":
        return "csr", ""
    if csr == "never" or x is None:
        return "dense", ""
    sparse = CSRLinear(w, layer.bias)
    dense_ms, csr_ms = median_ms([lambda: F.linear(x, w, layer.bias), lambda: sparse(x)])
    return "csr" if csr_ms < dense_ms else "dense", f"dense {dense_ms:.3f} ms, csr {csr_ms:.3f} ms"


@DEPLOY_RULES.register("channel")
def _channel_rule(layer, w, x, csr, device):
    if getattr(layer, "groups", 1) != 1:
        return "dense", "grouped conv: channel slicing would break its groups"
    return "channel", ""


@DEPLOY_RULES.register("nm")
def _nm_rule(layer, w, x, csr, device):
    why = semi_structured_ok(device) or _fits_2_4(layer, w)
    return ("dense", why) if why else ("nm", "to_sparse_semi_structured")


ACTIONS.register("dense")(lambda layer, w: _plain(layer))
ACTIONS.register("csr")(lambda layer, w: CSRLinear(w, layer.bias))


@ACTIONS.register("channel")
def _channel_slice(layer, w):
    kept = layer.mask().detach().flatten(1).amax(1).nonzero().flatten()
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros(w.shape[0], device=w.device, dtype=w.dtype)
    return ChannelSlice(_plain(layer, kept), kept, bias)


@ACTIONS.register("nm")
def _semi_structured(layer, w):
    from torch.sparse import to_sparse_semi_structured

    plain = _plain(layer)
    plain.weight = nn.Parameter(to_sparse_semi_structured(plain.weight.detach()), requires_grad=False)
    return plain


def _convert(layer: SparseMixin, action: str | None, x: torch.Tensor | None, csr: str,
             device: str) -> tuple[nn.Module, dict]:
    """The deployable replacement of one layer and its plan entry. `action` None = decide now."""
    w = layer.effective_weight().detach()
    entry = {"mask": layer.mask_mode, "shape": list(w.shape), "sparsity": 1.0 - int(torch.count_nonzero(w)) / w.numel()}
    if action is None:
        if layer.dense or entry["sparsity"] == 0:
            action, note = "dense", ""
        else:
            action, note = DEPLOY_RULES.get(layer.mask_kind.pattern)(layer, w, x, csr, device)
        if note:
            entry["note"] = note
    entry["action"] = action
    try:
        return ACTIONS.get(action)(layer, w), entry
    except (RuntimeError, ValueError, TypeError) as e:  # e.g. a dtype the semi-structured kernels lack
        if action != "nm":
            raise
        entry["action"], entry["note"] = "dense", f"to_sparse_semi_structured failed ({e}); kept dense"
        return _plain(layer), entry


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


@torch.no_grad()
def to_deployable(model: nn.Module, example: torch.Tensor | None = None, csr: str = "auto", device: str = "cpu",
                  plan: dict[str, dict] | None = None) -> tuple[nn.Module, dict[str, dict]]:
    """A copy of `model` (eval mode) with every sparse layer replaced by its deployable form, and the
    plan {layer name: {action, mask, shape, sparsity, note}}. With `plan`, its actions are reused."""
    if csr not in CSR_CHOICES:
        raise ConfigError(f"csr must be one of {', '.join(CSR_CHOICES)}, got {csr!r}")
    model = copy.deepcopy(model).eval()
    layers = {n: m for n, m in model.named_modules() if isinstance(m, SparseMixin)}
    inputs: dict[str, torch.Tensor] = {}
    if example is not None and plan is None and csr == "auto":
        def capture(name):
            def hook(module, inp, out):
                inputs.setdefault(name, inp[0].detach())
            return hook

        hooks = [m.register_forward_hook(capture(n)) for n, m in layers.items() if isinstance(m, nn.Linear)]
        model(example)
        for h in hooks:
            h.remove()
    new_plan = {}
    for name, layer in layers.items():
        action = plan[name]["action"] if plan is not None else None
        module, new_plan[name] = _convert(layer, action, inputs.get(name), csr, device)
        if name:
            _set_module(model, name, module)
        else:  # the model is itself one sparse layer
            model = module
    return model, new_plan


def max_abs_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a.eval()(x) - b.eval()(x)).abs().max())


# -- exporting a run ---------------------------------------------------------------------------------------
def _chosen_trial(run_dir: Path, config: dict, trial: int | None):
    """The record of trial `trial`, by default the best (the one best.json names), read without touching the
    journal (a search may be writing it)."""
    from .journal import Journal
    from .objective import Objective

    records = {r.trial: r for r in Journal(run_dir / "trials.jsonl").read()}
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
    from . import spaces  # noqa: F401  (registers the spaces)
    from .search import build_space

    space = build_space(config)
    if not hasattr(space, "build"):
        raise ConfigError(f"space {config['space']['name']!r} is not built as a network; nothing to export")
    torch.manual_seed(seed)  # as TrainedSpace.build_seeded
    return space.build(arch, tuple(input_shape), num_classes)


def _load_config(run_dir: Path) -> dict:
    from . import spaces  # noqa: F401  (registers the spaces)
    from .config import read_yaml_file, resolve

    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a sparsenas run (no config.yaml)")
    return resolve([read_yaml_file(path, "run config")])


def _portable(plan: dict) -> dict:
    """The plan as saved: N:M layers are stored dense and converted at load time where the device allows."""
    return {n: {**e, "action": "dense" if e["action"] == "nm" else e["action"]} for n, e in plan.items()}


def export_run(run_dir, trial: int | None = None, out=None, epochs: int | None = None, csr: str = "auto",
               device: str = "cpu", log=print) -> dict:
    """Retrain the chosen trial's architecture and write the deployable module; returns export.json's dict.
    Everything the user gives is checked before retraining."""
    from .config import check_device
    from .paths import output_dir
    from .training import resolve_device, train_and_evaluate

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} does not exist")
    config = _load_config(run_dir)
    record = _chosen_trial(run_dir, config, trial)
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {epochs}")
        config["train"]["epochs"] = epochs
    out = output_dir(out if out is not None else run_dir / f"export-trial{record.trial}", "--out")
    check_device(device, "--device")
    device = resolve_device(device)
    from .data import load_data

    data = load_data(config["data"])
    model = _build(config, record.arch, record.seed, data.input_shape, data.num_classes)
    log(f"retraining trial {record.trial} ({config['train']['epochs']} epochs, seed {record.seed}) ...")
    metrics = train_and_evaluate(model, data, config["train"], record.seed, device)
    model = model.to(device).eval()
    example = data.val[0][:256].to(device)
    deployable, plan = to_deployable(model, example, csr=csr, device=device)
    diff = max_abs_diff(model, deployable, example)
    if not diff < 1e-4:
        raise RuntimeError(f"exported model differs from the masked model by {diff:.3g} (> 1e-4)")
    portable, _ = to_deployable(model, plan=_portable(plan))
    out.mkdir(parents=True, exist_ok=True)
    torch.save(portable.cpu().state_dict(), out / "model.pt")
    layers = [row.as_dict() for row in count_layers(model.cpu(), data.input_shape)]
    info = {"run_dir": str(run_dir), "trial": record.trial, "seed": record.seed, "arch": dict(record.arch),
            "label": record.label, "metrics": metrics, "max_abs_diff": diff, "input_shape": list(data.input_shape),
            "num_classes": data.num_classes, "plan": plan, "layers": layers, "config": config}
    (out / "export.json").write_text(json.dumps(info, indent=1))
    return info


def load_exported(out, device: str = "cpu") -> nn.Module:
    """The deployable module saved by `export_run` in `out` (eval mode, on `device`)."""
    out = Path(out)
    try:
        info = json.loads((out / "export.json").read_text())
    except (OSError, ValueError):
        raise ConfigError(f"{out} is not a sparsenas export (no readable export.json)") from None
    from .space import Arch

    model = _build(info["config"], Arch(info["arch"]), info["seed"], info["input_shape"], info["num_classes"])
    deployable, _ = to_deployable(model, plan=_portable(info["plan"]))
    deployable.load_state_dict(torch.load(out / "model.pt", weights_only=True, map_location="cpu"))
    deployable = deployable.to(device).eval()
    if semi_structured_ok(device) is None:
        from torch.sparse import to_sparse_semi_structured

        for name, entry in info["plan"].items():
            if entry["action"] == "nm":
                layer = deployable.get_submodule(name)
                layer.weight = nn.Parameter(to_sparse_semi_structured(layer.weight.detach()), requires_grad=False)
    return deployable


def format_plan(plan: dict) -> str:
    rows = [f"{'layer':<40} {'mask':<10} {'sparsity':>8}  action   note"]
    for name, e in plan.items():
        rows.append(f"{name[-40:]:<40} {e['mask']:<10} {e['sparsity']:>8.3f}  {e['action']:<8} {e.get('note', '')}")
    return "\n".join(rows)
