"""TAS search space (Transformable Architecture Search, D-X-Y/AutoDL-Projects), discrete form.

A CIFAR-style ResNet — stem conv, 3 stages of N = (depth − 2) / 6 basic blocks at C, 2C, 4C channels,
global pool, linear — whose arch picks
  stem.w, s{s}.b{j}.a, s{s}.b{j}.b   the output width of every conv, one of int(C_l · r) for
                                     r ∈ `ratios` (0.3, 0.4, …, 1.0), deduplicated (zeros dropped)
  s{s}.depth                         how many blocks stage s keeps: 1, 3, 5, …, N (N always included;
                                     N ≤ 3 allows every depth 1..N, as the authors' get_depth_choices)
The discrete build is a physically smaller *dense* network (TAS's speedup). Widths of blocks beyond a
stage's depth are kept in the arch but unused.

Shortcuts, as the authors' inferred network (InferCifarResNet): a stride-2 block's shortcut is a 2×2
average pool + 1×1 conv to the block's output width; a stride-1 block whose input and output widths
differ gets a 1×1 conv projection; otherwise identity. Every such shortcut conv has a BatchNorm (the
authors' stride-2 shortcut has none in the inferred net but one per width in the supernet; we use one in
both, so the supernet and the discrete net agree). Scaled down for 8×8 digits: C = 8 by default.

With `distill: true` a trial trains the arch with knowledge distillation from the unpruned network (all
widths and depths at their maximum), trained first on the same data and train settings with a fixed seed
and cached for the whole process: loss (1 − a)·CE + a·T²·KL(teacher ‖ student), a = `kd_alpha`,
T = `kd_temperature` (TAS: 0.9, 4); `train_loss` is then that loss. The teacher's accuracies are reported as
`teacher_val_acc/test_acc`. The cache is per process: with a distributed executor each worker trains its own
(identical, same seed) teacher. The supernet's weights are not reused: as in TAS, the found network and its
teacher train from scratch.
"""
from __future__ import annotations

import json

from torch import nn

from ..data import load_data
from ..errors import ConfigError
from ..schema import Field, count, number, numbers
from ..space import Arch, Categorical, EvalContext, SuperNet, register_space
from ..training import resolve_device, train_and_evaluate
from .tas_net import RATIOS, STAGES, Layout, TasResNet, depth_choices, discrete_flops, width_choices
from .tas_supernet import TasSupernetSearch
from .trained import TrainedSpace

TEACHER_SEED = 0



@register_space("tas")
class TasSpace(TrainedSpace, SuperNet):
    options_schema = {
        "depth": Field(20, (int,), lambda v: v >= 8 and (v - 2) % 6 == 0, "must be 6n + 2 with n >= 1 (20, 32, 56, ...)"),
        "C": count(8),
        "ratios": numbers(list(RATIOS), 0, 1, low_open=True),
        "distill": Field(True, (bool,)),
        "kd_alpha": number(0.9, 0, 1),
        "kd_temperature": number(4.0, 0, low_open=True),
    }

    def __init__(self, **options):
        super().__init__(**options)
        o = self.options
        ratios = o["ratios"]
        self.layout = Layout(o["C"], o["depth"])
        self.widths = {label: width_choices(self.layout.conv_width(label), ratios)
                       for label in self.layout.conv_labels()}
        if any(not w for w in self.widths.values()):
            raise ConfigError(f"space.C={o['C']} with ratios {ratios} leaves a conv without a width >= 1")
        self.depths = depth_choices(self.layout.blocks)

    def dims(self):
        dims = {label: Categorical(choices) for label, choices in self.widths.items()}
        dims.update({f"s{s}.depth": Categorical(self.depths) for s in range(STAGES)})
        return dims

    def full_arch(self) -> Arch:
        """The unpruned network: every width and depth at its maximum."""
        return self.validate({label: dim.choices[-1] for label, dim in self.dims().items()})

    def label(self, arch: Arch) -> str:
        stages = []
        for s in range(STAGES):
            blocks = [f"{arch[f's{s}.b{j}.a']}/{arch[f's{s}.b{j}.b']}" for j in range(arch[f"s{s}.depth"])]
            stages.append(f"s{s}[{' '.join(blocks)}]")
        return f"stem{arch['stem.w']} " + " ".join(stages)

    def _parts(self, arch: Arch):
        widths = {label: arch[label] for label in self.layout.conv_labels()}
        return widths, [arch[f"s{s}.depth"] for s in range(STAGES)]

    def build(self, arch: Arch, input_shape, num_classes) -> nn.Module:
        return TasResNet(self.layout, *self._parts(arch), input_shape, num_classes)

    def flops(self, arch: Arch, input_shape, num_classes) -> int:
        """Exact FLOPs of `build(arch)` without building it (the supernet's argmax FLOPs)."""
        return discrete_flops(self.layout, *self._parts(arch), input_shape, num_classes)

    def supernet_search_class(self):
        return TasSupernetSearch

    # -- evaluation with knowledge distillation ------------------------------------------------------
    def metrics(self):
        return super().metrics() | (TEACHER_METRICS if self.options["distill"] else frozenset())

    def evaluate(self, arch: Arch, seed: int, context: EvalContext, on_epoch=None) -> dict[str, float]:
        if not self.options["distill"]:
            return super().evaluate(arch, seed, context, on_epoch)
        data = load_data(context.data)
        device = resolve_device(context.device)
        teacher, teacher_metrics = self.teacher(context)
        model = self.build_seeded(arch, seed, context)
        metrics = train_and_evaluate(model, data, context.train, seed, device, on_epoch, context.time_limit_s,
                                     teacher=teacher.to(device), kd_alpha=self.options["kd_alpha"],
                                     kd_temperature=self.options["kd_temperature"])
        return {**metrics, **self.trained_metrics(model, data.input_shape, context), **teacher_metrics}

    def teacher(self, context: EvalContext) -> tuple[nn.Module, dict[str, float]]:
        """The unpruned network trained with plain CE (seed 0), once per process and configuration."""
        key = json.dumps([self.options, context.train, context.data, context.device], sort_keys=True, default=str)
        if key not in _TEACHERS:
            data = load_data(context.data)
            model = self.build_seeded(self.full_arch(), TEACHER_SEED, context)
            m = train_and_evaluate(model, data, context.train, TEACHER_SEED, resolve_device(context.device),
                                   time_limit_s=context.time_limit_s)
            model.eval()
            _TEACHERS.clear()  # keep one teacher in memory
            _TEACHERS[key] = model, {"teacher_val_acc": m["val_acc"], "teacher_test_acc": m["test_acc"]}
        return _TEACHERS[key]


_TEACHERS: dict[str, tuple[nn.Module, dict[str, float]]] = {}
TEACHER_METRICS = frozenset({"teacher_val_acc", "teacher_test_acc"})
