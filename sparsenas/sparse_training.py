"""Sparse training: how the masks of a model's sparse layers evolve while its weights train.

    trainer = SPARSE_TRAINING.get("rigl")(model, total_steps, optimizer=opt, update_interval=100)
    for step in range(total_steps):
        ...; loss.backward(); opt.step()
        trainer.step(step)           # after every optimizer step

Methods (registry SPARSE_TRAINING, config key `train.sparse_training`):
  static  the masks stay as built (learned-score masks keep training their scores).
  set     SET (Mocanu et al. 2018): every `update_interval` steps, drop the fraction f(t) of active weights
          of smallest |W| and regrow as many at random among the inactive ones.
  rigl    RigL (Evci et al. 2020): drop as SET, regrow the inactive weights of largest |dL/dW| (the dense
          gradient of the masked weight at that step).
          f(t) = drop_fraction/2 · (1 + cos(π t / (stop_fraction · T))), no update after stop_fraction · T
          (Sparse-IFT defaults: interval 100, drop fraction 0.3, stop at 0.75). Regrown weights start at 0
          and their optimizer momentum is zeroed. nnz of every layer is constant.
  imp     iterative magnitude pruning with rewind (Frankle et al.): training is split into `imp_rounds`
          equal cycles; the first trains dense, after each cycle the layers are pruned by magnitude
          (density keep^(r/(R-1)) after cycle r) and the whole network (weights, BN statistics; not the
          masks) is rewound to its state at `rewind_fraction` of the first cycle; the LR schedule restarts each cycle (`lr_factor`).
          Simplified for one training budget: the R cycles share the configured epochs.
  hydra   HYDRA (Sehwag et al. 2020), the DASS discrete training of learned-score masks: the steps are split
          by `hydra_phases` (default 2:1:2, the shape of DASS's 100/50/100 search epochs; HYDRA's own
          100/20/100 is 5:1:5) into pretrain — score layers dense, weights train —, prune — scores
          re-initialised from the trained weights (scaled |W|, as the DASS supernet) and trained to each
          layer's keep ratio with every other parameter frozen —, and finetune — the mask fixed, weights
          train; one cosine LR decay per phase, momentum reset between phases. Simplified for one budget:
          HYDRA runs the three phases as separate trainings. Masks that are not learned (e.g.
          `mask_baseline: random`) stay fixed; a model without learned ones trains as static.
SET, RigL and IMP need unstructured masks: layers with learned scores are frozen to their current mask
(scores stop training); N:M and channel layers are refused with a ConfigError.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .errors import ConfigError
from .ops.masks import scores_from_weights
from .ops.sparse import SparseMixin
from .registry import Registry
from .schema import Field, check_value, count, is_number, number, one_of

SPARSE_TRAINING: Registry = Registry("sparse training method")


def sparse_layers(model: nn.Module) -> list[SparseMixin]:
    return [m for m in model.modules() if isinstance(m, SparseMixin)]


class SparseTrainer:
    """Base: the static mask. Subclasses override `step`; the training loop takes its LR schedule from
    `lr_factor` (IMP restarts it every cycle)."""

    def __init__(self, model: nn.Module, total_steps: int, optimizer: torch.optim.Optimizer | None = None,
                 generator: torch.Generator | None = None, **options):
        self.model = model
        self.total_steps = int(total_steps)
        self.optimizer = optimizer
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.options = options
        self.layers = sparse_layers(model)

    def step(self, step: int) -> None:
        """Called after optimizer.step() of step `step` (0-based)."""

    def lr_factor(self, step: int) -> float:
        """Multiplier of the base LR at `step`: one cosine decay over the whole training."""
        return 0.5 * (1 + math.cos(math.pi * step / max(1, self.total_steps)))

    def _require_unstructured(self) -> None:
        for layer in self.layers:
            if layer.mask_kind.pattern != "unstructured":
                raise ConfigError(f"train.sparse_training={self.name} needs unstructured masks, "
                                  f"but a {type(layer).__name__} uses mask {layer.mask_mode!r}")
            if not layer.dense and layer.mask_kind.learned:
                layer.set_mask(layer.mask().detach())

    def _zero_momentum(self, layer: SparseMixin, where: torch.Tensor) -> None:
        if self.optimizer is None:
            return
        for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
            buf = self.optimizer.state.get(layer.weight, {}).get(key)
            if buf is not None:
                buf[where] = 0


@SPARSE_TRAINING.register("static")
class Static(SparseTrainer):
    pass


class _DropGrow(SparseTrainer):
    """Shared prune-and-regrow schedule of SET and RigL."""

    def __init__(self, model, total_steps, optimizer=None, generator=None, update_interval: int = 100,
                 drop_fraction: float = 0.3, stop_fraction: float = 0.75, **options):
        super().__init__(model, total_steps, optimizer, generator, **options)
        check_train_options(update_interval=update_interval, drop_fraction=drop_fraction, stop_fraction=stop_fraction)
        self.update_interval, self.drop_fraction, self.stop_fraction = update_interval, drop_fraction, stop_fraction
        self._require_unstructured()
        self.layers = [layer for layer in self.layers if layer.mask_buf is not None]
        self.updates = 0

    @property
    def stop_step(self) -> int:
        return int(self.stop_fraction * self.total_steps)

    def fraction(self, step: int) -> float:
        """Cosine-annealed drop fraction at `step`."""
        return self.drop_fraction / 2 * (1 + math.cos(math.pi * min(step, self.stop_step) / max(1, self.stop_step)))

    def is_update(self, step: int) -> bool:
        return (step + 1) % self.update_interval == 0 and step + 1 < self.stop_step

    def step(self, step: int) -> None:
        if not self.is_update(step):
            return
        f = self.fraction(step + 1)
        with torch.no_grad():
            for layer in self.layers:
                self._update(layer, f)
        self.updates += 1

    def grow_scores(self, layer: SparseMixin) -> torch.Tensor:
        raise NotImplementedError

    def _update(self, layer: SparseMixin, f: float) -> None:
        mask = layer.mask_buf.flatten().clone()
        active = mask.bool()
        n_active = int(active.sum())
        n = min(int(f * n_active), int((~active).sum()))
        if n == 0:
            return
        weights = layer.weight.detach().abs().flatten()
        drop = torch.topk(torch.where(active, -weights, torch.full_like(weights, -math.inf)), n).indices
        mask[drop] = 0
        grow_score = self.grow_scores(layer).flatten().clone()
        grow_score[mask.bool()] = -math.inf  # only inactive weights (just-dropped ones included) may grow
        grow = torch.topk(grow_score, n).indices
        mask[grow] = 1
        grown = torch.zeros_like(mask, dtype=torch.bool)
        grown[grow] = True
        grown &= ~active  # weights dropped and regrown at once keep their value
        grown = grown.view_as(layer.weight)
        layer.weight[grown] = 0.0
        self._zero_momentum(layer, grown)
        layer.mask_buf.copy_(mask.view_as(layer.mask_buf))


@SPARSE_TRAINING.register("set")
class SET(_DropGrow):
    def grow_scores(self, layer):
        return torch.rand(layer.weight.shape, generator=self.generator).to(layer.weight.device)


@SPARSE_TRAINING.register("rigl")
class RigL(_DropGrow):
    """The dense gradient is captured by a hook on each layer's masked weight while updates remain."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for layer in self.layers:
            layer._dense_grad = None
            layer._dense_grad_hook = self._capture(layer)

    @staticmethod
    def _capture(layer):
        def hook(grad):
            layer._dense_grad = grad.detach()
        return hook

    def grow_scores(self, layer):
        if layer._dense_grad is None:
            raise RuntimeError("RigL needs a backward pass before its update (call step() after optimizer.step())")
        return layer._dense_grad.abs()

    def step(self, step: int) -> None:
        super().step(step)
        if step + 1 >= self.stop_step:
            for layer in self.layers:
                layer._dense_grad_hook = layer._dense_grad = None


def _restarting_cosine(step: int, starts: list[int], total: int) -> float:
    """One cosine decay per segment; `starts` are the segments' first steps, the last ends at `total`."""
    start = max(s for s in starts if s <= step)
    ends = [s for s in starts if s > start] + [total]
    return 0.5 * (1 + math.cos(math.pi * (step - start) / max(1, ends[0] - start)))


def _reset_momentum(optimizer) -> None:
    if optimizer is None:
        return
    for state in optimizer.state.values():
        for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
            if key in state and torch.is_tensor(state[key]):
                state[key].zero_()


@SPARSE_TRAINING.register("hydra")
class Hydra(SparseTrainer):
    PHASES = ("pretrain", "prune", "finetune")

    def __init__(self, model, total_steps, optimizer=None, generator=None, hydra_phases=(2, 1, 2), **options):
        super().__init__(model, total_steps, optimizer, generator, **options)
        check_train_options(hydra_phases=hydra_phases)
        self.layers = [layer for layer in self.layers if not layer.dense and layer.mask_kind.learned]
        self.targets = {id(layer): layer.keep for layer in self.layers}
        weights = [float(w) for w in hydra_phases]
        cut1 = round(weights[0] / sum(weights) * self.total_steps)
        cut2 = max(cut1 + 1, round((weights[0] + weights[1]) / sum(weights) * self.total_steps))
        T = self.total_steps
        self.starts = [0, cut1, min(cut2, T)] if self.layers else [0, T, T]  # nothing to prune: all pretrain
        self.phase = -1
        self._advance(0)

    def _advance(self, steps_done: int) -> None:
        while self.phase < 2 and steps_done >= self.starts[self.phase + 1]:
            self.phase += 1
            getattr(self, "_" + self.PHASES[self.phase])()
            _reset_momentum(self.optimizer)

    def _pretrain(self) -> None:
        for layer in self.layers:
            layer.keep = 1.0

    @torch.no_grad()
    def _prune(self) -> None:
        for layer in self.layers:
            layer.scores.copy_(scores_from_weights(layer.weight))
            layer.keep = self.targets[id(layer)]
        scores = {id(layer.scores) for layer in self.layers}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in scores)

    def _finetune(self) -> None:
        frozen = [p for p in self.model.parameters() if not p.requires_grad]
        for layer in self.layers:
            layer.set_mask(layer.mask().detach())  # also stops the scores training
        for p in frozen:
            p.requires_grad_(True)

    def step(self, step: int) -> None:
        self._advance(step + 1)

    def lr_factor(self, step: int) -> float:
        return _restarting_cosine(step, self.starts, self.total_steps)


@SPARSE_TRAINING.register("imp")
class IMP(SparseTrainer):
    def __init__(self, model, total_steps, optimizer=None, generator=None, imp_rounds: int = 3,
                 rewind_fraction: float = 0.0, **options):
        super().__init__(model, total_steps, optimizer, generator, **options)
        check_train_options(imp_rounds=imp_rounds, rewind_fraction=rewind_fraction)
        self.rounds = imp_rounds
        self.cycle_steps = max(1, self.total_steps // imp_rounds)
        self.rewind_step = int(rewind_fraction * self.cycle_steps)
        self._require_unstructured()
        self.targets = {id(layer): layer.keep for layer in self.layers}
        for layer in self.layers:
            if not layer.dense:
                layer.set_mask(torch.ones_like(layer.weight))
        self.rewind_state = self._snapshot() if self.rewind_step == 0 else None
        self.round = 0

    def lr_factor(self, step: int) -> float:
        """A cosine decay per cycle; the last cycle also takes the steps left over by the division."""
        return _restarting_cosine(step, [r * self.cycle_steps for r in range(self.rounds)], self.total_steps)

    def _snapshot(self) -> dict[str, torch.Tensor]:
        """Every weight and BN statistic of the model (not masks or scores): what a rewind restores."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()
                if not k.endswith(("mask_buf", "scores"))}

    def step(self, step: int) -> None:
        if step + 1 == self.rewind_step and self.rewind_state is None:
            self.rewind_state = self._snapshot()
        if (step + 1) % self.cycle_steps or self.round >= self.rounds - 1:
            return
        self.round += 1
        with torch.no_grad():
            for layer in self.layers:
                target = self.targets[id(layer)]
                if target >= 1:
                    continue
                keep = target ** (self.round / (self.rounds - 1))
                k = max(1, round(keep * layer.weight.numel()))
                score = torch.where(layer.mask_buf.bool(), layer.weight.abs(), torch.full_like(layer.weight, -1.0))
                mask = torch.zeros_like(score).flatten()
                mask[torch.topk(score.flatten(), k).indices] = 1
                layer.set_mask(mask.view_as(layer.weight))
            self.model.load_state_dict(self.rewind_state, strict=False)
        _reset_momentum(self.optimizer)


def make_sparse_trainer(model: nn.Module, train_cfg: dict, total_steps: int, optimizer=None,
                        seed: int = 0) -> SparseTrainer:
    """The trainer named by `train.sparse_training`, with its options from the train section."""
    cls = SPARSE_TRAINING.get(train_cfg.get("sparse_training", "static"))
    keys = ("update_interval", "drop_fraction", "stop_fraction", "imp_rounds", "rewind_fraction", "hydra_phases")
    options = {k: train_cfg[k] for k in keys if k in train_cfg}
    return cls(model, total_steps, optimizer=optimizer, generator=torch.Generator().manual_seed(seed), **options)


@torch.no_grad()
def randomize_masks(model: nn.Module, seed: int) -> None:
    """The random-sparse baseline: every sparse layer gets a random mask of its kind's structure with the
    same number of kept weights (equal per-layer sparsity), drawn from `seed`, fixed during training."""
    generator = torch.Generator().manual_seed(seed)
    for layer in sparse_layers(model):
        if layer.dense:
            continue
        layer.set_mask(layer.mask_kind.random_mask(layer, generator))


MASK_BASELINES: Registry = Registry("mask baseline")
MASK_BASELINES.register("none")(lambda model, seed: None)
MASK_BASELINES.register("random")(randomize_masks)


def apply_mask_baseline(model: nn.Module, name: str, seed: int) -> None:
    """`train.mask_baseline`: "none" keeps the searched masks, "random" = `randomize_masks(model, seed)`."""
    MASK_BASELINES.get(name)(model, seed)


def _phase_weights(v) -> bool:
    return len(v) == 3 and all(is_number(x) and x >= 0 for x in v) and v[1] > 0


# the `train` options of the sparse-training methods and the mask baseline (part of the config's `train` section);
# names come from the registries, read when a value is checked
TRAIN_OPTIONS: dict[str, Field] = {
    "sparse_training": one_of("static", SPARSE_TRAINING.names),
    "update_interval": count(100),
    "drop_fraction": number(0.3, 0, 1, low_open=True, high_open=True),
    "stop_fraction": number(0.75, 0, 1, low_open=True),
    "imp_rounds": count(3, 2),  # one dense cycle, then pruned ones
    "rewind_fraction": number(0.0, 0, 1, high_open=True),
    "hydra_phases": Field([2, 1, 2], (list,), _phase_weights,
                          "must be 3 numbers >= 0 (pretrain, prune, finetune) with prune > 0"),
    "mask_baseline": one_of("none", MASK_BASELINES.names),
}


def check_train_options(**values) -> None:
    """ConfigError (one line, `train.KEY ...`) for a sparse-training option given to a trainer built directly."""
    for key, value in values.items():
        check_value("train", key, value, TRAIN_OPTIONS[key])
