"""The `model` space: search the layer-wise sparsity (and structure) of any torch.nn.Module.

`factory: "package.module:function"` builds the model. The module is never imported by the space: it must be
imported already (`sparsenas --allow-import package.module ...`), else a one-line error says so. The function is
called with `factory_kwargs`, plus `num_classes=` and `input_shape=` (per sample: (C, H, W) or (D,)) when its
signature names them. The default factory is `sparsenas.spaces.model_examples:small_net` (a small CNN or MLP).
`weights: PATH` (optional) loads a state dict (torch.load weights_only=True, or .safetensors) into the model
before pruning — searching the sparsity of a trained model.

Dims. The prunable layers are every nn.Conv2d and nn.Linear of the model (in registration order) except `skip`
(module names; null = the first layer and the classifier, the last Linear — the layers AMC and RigL keep
dense; [] = none). They are grouped by `group_by`: `layer` (one group per layer), `block` (the outermost
non-container module on the layer's path: a top-level child, or a residual block inside a Sequential stage
such as `layer1.0`), or `type` (conv3x3, dwconv3x3, conv1x1, linear, ...). Per group g:
  g.sparsity   one of `sparsities`
  g.structure  one of `structures` (only when there are several): `unstructured` (top-k by magnitude, learned
               scores or random, as `prune`), `channel` (whole output filters of largest L1 norm; never the
               classifier) or an N:M pattern such as `2:4` (only where the input dimension divides by M; its
               density is N/M whatever the sparsity).
Layers are swapped for sparsenas.ops SparseConv2d / SparseLinear (masks from the loaded or initial weights), so
accounting, sparse training (`train.sparse_training`), export and latency apply unchanged; skipped layers stay
dense modules. `sparsity` (a metric) is the overall sparsity of the searched layers.

`target_sparsity: s` makes every arch meet overall sparsity s of the searched layers (within rounding): the
per-group sparsities become relative densities 1 − s_g rescaled by one factor, layers that would exceed
density 1 staying dense and the rest re-solved (ops.allocation.scale_densities, ERK's redistribution); N:M
layers keep N/M. `allocation` (with a target) replaces the searched densities by a baseline at the same
overall sparsity: `uniform`, `er`, `erk`, or `random` (layer densities drawn uniformly, seeded by the arch, so
every arch of a random-strategy run is one random allocation); structures stay as the arch says.
Evaluation: fine-tune (or train) for the `train` budget with `train.sparse_training`; the usual metrics. Without
`weights` the masks prune the initialisation, whose kept weights are rescaled to the dense fan-in variance
(`model_layers.sparsify`, at_init).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, InfeasibleArch
from ..ops.allocation import ALLOCATIONS, scale_densities
from ..ops.channel_align import align_channel_masks
from ..ops.masks import _NM, kept_count
from ..schema import OPT_INT, OPT_NUM, OPT_STR, Field, number, numbers, one_of
from ..space import Arch, Categorical, register_space
from . import model_examples  # noqa: F401 — the default factory's module, so it is imported
from .model_layers import (LayerPlan, apply_weights, call_factory, default_skip, group_key, load_weights,
                           prunable_layers, sparsify, structure_fits)
from .trained import TrainedSpace

PROBE_SHAPE = (1, 8, 8)  # the default data (digits); the shape the factory is first called with
PROBE_CLASSES = 10


def _structure_ok(v) -> bool:
    return isinstance(v, str) and (v in ("unstructured", "channel") or bool(_NM.match(v)))


def _structures_ok(v) -> bool:
    return bool(v) and len(set(map(str, v))) == len(v) and all(_structure_ok(x) for x in v)


def _shape_ok(v) -> bool:
    return bool(v) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v)


def _names_ok(v) -> bool:
    return all(isinstance(x, str) for x in v)


@register_space("model")
class ModelSpace(TrainedSpace):
    options_schema = {
        "factory": Field("sparsenas.spaces.model_examples:small_net", (str,)),
        "factory_kwargs": Field({}, (dict,)),
        "weights": Field(None, OPT_STR),
        "skip": Field(None, (list, type(None)), _names_ok, "must be a list of layer names"),
        "sparsities": numbers([0.0, 0.5, 0.75, 0.9, 0.95], 0, 1, high_open=True),
        "structures": Field(["unstructured"], (list,), _structures_ok,
                            "must be a non-empty list of distinct structures: unstructured, channel or N:M "
                            "such as 2:4"),
        "group_by": one_of("layer", ("layer", "block", "type")),
        "prune": one_of("magnitude", ("magnitude", "scores", "random")),
        "target_sparsity": number(None, 0, 1, low_open=True, high_open=True, types=OPT_NUM),
        "allocation": one_of("search", lambda: ["search", *ALLOCATIONS.names()]),
        "input_shape": Field(None, (list, type(None)), _shape_ok, "must be a non-empty list of integers >= 1"),
        "num_classes": Field(None, OPT_INT, lambda v: v >= 1, "must be an integer >= 1"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        o = self.options
        if o["allocation"] != "search" and o["target_sparsity"] is None:
            raise ConfigError(f"space.allocation={o['allocation']} needs space.target_sparsity (the overall "
                              f"sparsity the baseline allocates)")
        self._state = load_weights(o["weights"]) if o["weights"] is not None else None
        # the weights are checked against the model built on the data's shape (prepare, build), not the probe's
        probe = self._dense(tuple(o["input_shape"] or PROBE_SHAPE), o["num_classes"] or PROBE_CLASSES, weights=False)
        layers = prunable_layers(probe)
        if not layers:
            raise ConfigError(f"space.factory {o['factory']!r} builds a model without Conv2d or Linear layers")
        skip = default_skip(layers) if o["skip"] is None else o["skip"]
        unknown = [n for n in skip if n not in layers]
        if unknown:
            shown = ", ".join(list(layers)[:12]) + (", ..." if len(layers) > 12 else "")
            raise ConfigError(f"space.skip names no prunable layer {unknown[0]!r} (layers: {shown})")
        self.layer_names = list(layers)
        classifier = default_skip(layers)[-1] if any(isinstance(m, nn.Linear) for m in layers.values()) else None
        self.groups: dict[str, list[str]] = {}
        for name, layer in layers.items():
            if name not in skip:
                self.groups.setdefault(group_key(probe, name, layer, o["group_by"]), []).append(name)
        if not self.groups:
            raise ConfigError("space.skip leaves no layer to search")
        self._dims = {}
        for g, names in self.groups.items():
            self._dims[f"{g}.sparsity"] = Categorical([float(s) for s in o["sparsities"]])
            fits = [s for s in o["structures"]
                    if all(structure_fits(s, layers[n], n == classifier) for n in names)]
            if not fits:
                raise ConfigError(f"none of space.structures {o['structures']} fits layer group {g!r}")
            if len(o["structures"]) > 1:
                self._dims[f"{g}.structure"] = Categorical(fits)
            elif fits != o["structures"]:
                raise ConfigError(f"space.structures {o['structures']} does not fit layer group {g!r}")

    # -- the user's model ---------------------------------------------------------------------------
    def _dense(self, input_shape: tuple[int, ...], num_classes: int, weights: bool = True) -> nn.Module:
        model = call_factory(self.options["factory"], self.options["factory_kwargs"], input_shape, num_classes)
        if weights and self._state is not None:
            apply_weights(model, self._state, self.options["weights"])
        return model

    def dims(self):
        return dict(self._dims)

    def structure(self, arch: Arch, group: str) -> str:
        return arch.get(f"{group}.structure", self.options["structures"][0])

    def label(self, arch: Arch) -> str:
        def one(g):
            s, structure = arch[f"{g}.sparsity"], self.structure(arch, g)
            return f"{g}={structure if _NM.match(structure) else ('ch' if structure == 'channel' else '') + f'{s:g}'}"

        o = self.options
        if o["allocation"] == "search":
            return ",".join(one(g) for g in self.groups)
        # a baseline allocation ignores the sparsity dims; random's densities follow the arch id
        structures = ",".join(f"{g}={self.structure(arch, g)}" for g in self.groups) if len(o["structures"]) > 1 \
            else ""
        seed = f"#{arch.arch_id[:6]}" if o["allocation"] == "random" else ""
        return f"{o['allocation']}{seed}@{o['target_sparsity']:g}" + (f":{structures}" if structures else "")

    def plans(self, arch: Arch, shapes: dict[str, tuple[int, ...]]) -> dict[str, LayerPlan]:
        """Mask spec and keep ratio of every searched layer for `arch` (`shapes`: the layers' weight shapes)."""
        o = self.options
        specs, raw, fixed = {}, {}, {}
        for g, names in self.groups.items():
            structure = self.structure(arch, g)
            spec = o["prune"] if structure == "unstructured" else structure
            nm = _NM.match(structure)
            for name in names:
                specs[name] = spec
                if nm:
                    fixed[name] = int(nm.group(1)) / int(nm.group(2))
                else:
                    raw[name] = 1.0 - arch[f"{g}.sparsity"]
        densities = {**raw, **fixed}
        if o["target_sparsity"] is not None:
            densities = self._rescaled(arch, shapes, raw, fixed)
            channel = {n: kept_count(shapes[n][0], densities[n]) / shapes[n][0]
                       for n, spec in specs.items() if spec == "channel"}
            if channel and len(channel) + len(fixed) < len(specs):  # whole channels: others absorb the rounding
                densities = self._rescaled(arch, shapes, raw, {**fixed, **channel})
        return {n: LayerPlan(specs[n], min(1.0, max(densities[n], 1.0 / math.prod(shapes[n])))) for n in specs}

    def _rescaled(self, arch: Arch, shapes, raw: dict, fixed: dict) -> dict[str, float]:
        method = self.options["allocation"]
        names = [n for names in self.groups.values() for n in names]
        if method != "search":
            rng = np.random.default_rng(int(arch.arch_id, 16))
            raw = {n: ALLOCATIONS.get(method)(shapes[n], rng) for n in names}
        index = {n: i for i, n in enumerate(names)}
        try:
            densities = scale_densities([math.prod(shapes[n]) for n in names], [raw.get(n) for n in names],
                                        1.0 - self.options["target_sparsity"],
                                        fixed={index[n]: d for n, d in fixed.items()})
        except ConfigError as e:  # N:M layers fix their density: too many of them and the target is out of reach
            raise InfeasibleArch(f"space.target_sparsity={self.options['target_sparsity']:g}: {e}") from None
        return dict(zip(names, densities))

    def build(self, arch: Arch, input_shape, num_classes) -> nn.Module:
        model = self._dense(tuple(input_shape), num_classes)
        layers = prunable_layers(model)
        if list(layers) != self.layer_names:
            raise ConfigError(f"space.factory {self.options['factory']!r} builds other layers for input shape "
                              f"{tuple(input_shape)} and {num_classes} classes than for the space's probe; set "
                              f"space.input_shape and space.num_classes to the data's")
        plans = self.plans(arch, {n: tuple(m.weight.shape) for n, m in layers.items()})
        random = self.options["prune"] == "random"
        model = sparsify(model, plans, random_masks=random, at_init=self._state is None)
        if any(p.mask == "channel" for p in plans.values()):
            self._align(model, input_shape, random)
        return model

    def _align(self, model: nn.Module, input_shape, random: bool) -> None:
        """Coupled channel masks keep the same channels (ops.channel_align; random ones: one random ranking per
        group); a model torch.fx cannot trace keeps its per-layer masks, with a warning."""
        generator = torch.Generator().manual_seed(int(torch.randint(2 ** 31 - 1, ()))) if random else None
        try:
            align_channel_masks(model, torch.zeros(1, *input_shape), generator)
        except Exception as e:  # noqa: BLE001 — any model: fx tracing fails in many ways
            warnings.warn(f"{self.subject()}: channel masks not aligned across residual adds ({type(e).__name__}: "
                          f"{str(e)[:120]}); export keeps the union of coupled layers' channels", stacklevel=2)

    def subject(self) -> str:
        return f"the model of space.factory {self.options['factory']!r}"

    def layer_table(self, arch: Arch, input_shape, num_classes) -> list[dict]:
        """Per searched layer of `arch`: name, group, structure (mask spec), density (keep ratio), weights."""
        model = self._dense(tuple(input_shape), num_classes)
        layers = prunable_layers(model)
        plans = self.plans(arch, {n: tuple(m.weight.shape) for n, m in layers.items()})
        group_of = {n: g for g, names in self.groups.items() for n in names}
        return [{"layer": n, "group": group_of[n], "mask": p.mask, "density": p.keep,
                 "weights": layers[n].weight.numel()} for n, p in plans.items()]
