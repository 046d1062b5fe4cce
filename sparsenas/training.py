"""The evaluator of trained spaces: build → count → train (SGD, cosine) → val/test accuracy."""
from __future__ import annotations

import math
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data import Splits
from .sparse_training import apply_mask_baseline, make_sparse_trainer


class TrialError(RuntimeError):
    """A trial that cannot produce a result (e.g. a non-finite loss)."""


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TrialError("execution.device=cuda but CUDA is not available")
    return name


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: str, batch_size: int = 1024) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        logits = model(x[i:i + batch_size].to(device))
        correct += int((logits.argmax(1).cpu() == y[i:i + batch_size]).sum())
    return correct / max(1, len(y))


def _param_groups(model: nn.Module, cfg: dict) -> list[dict]:
    weights = [p for n, p in model.named_parameters() if p.requires_grad and not n.endswith("scores")]
    scores = [p for n, p in model.named_parameters() if p.requires_grad and n.endswith("scores")]
    groups = [{"params": weights, "lr": cfg["lr"], "weight_decay": cfg["weight_decay"]}]
    if scores:
        groups.append({"params": scores, "lr": cfg["score_lr"], "weight_decay": 0.0})
    return groups


def with_warmup(schedule: Callable[[int], float], warmup_steps: int) -> Callable[[int], float]:
    """`schedule` (an LR multiplier by step) after a linear warm-up: (step + 1) / warmup_steps for the first
    `warmup_steps` steps (Goyal et al. 2017), then `schedule(step)` itself, not shifted (timm's default,
    `warmup_prefix=False`): the cosine keeps its length and the warm-up replaces its first steps."""
    if warmup_steps <= 0:
        return schedule
    return lambda step: (step + 1) / warmup_steps if step < warmup_steps else schedule(step)


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      alpha: float, temperature: float) -> torch.Tensor:
    """Knowledge distillation: (1 − a)·CE(s, y) + a·T²·KL(softmax(t/T) ‖ softmax(s/T)) (Hinton; TAS a=0.9, T=4)."""
    soft = F.kl_div(F.log_softmax(logits / temperature, dim=1), F.softmax(teacher_logits / temperature, dim=1),
                    reduction="batchmean")
    return (1 - alpha) * F.cross_entropy(logits, targets) + alpha * temperature ** 2 * soft


def train_and_evaluate(model: nn.Module, data: Splits, cfg: dict, seed: int, device: str,
                       on_epoch: Callable[[int, dict], None] | None = None,
                       time_limit_s: float | None = None, teacher: nn.Module | None = None,
                       kd_alpha: float = 0.9, kd_temperature: float = 4.0) -> dict[str, float]:
    """Train with SGD + momentum and a cosine schedule for `cfg["epochs"]` (after a linear warm-up over
    `cfg["warmup_epochs"]` epochs, `with_warmup`); weights and sparsity scores
    train together (scores in their own group at `score_lr`). Deterministic for a given seed.
    Masks evolve by `train.sparse_training` (static / set / rigl / imp, see sparse_training.py);
    `train.mask_baseline: random` first replaces every mask by a random one of equal per-layer count.
    With a `teacher` (kept in eval mode, not trained) the loss is `distillation_loss` at `kd_alpha`,
    `kd_temperature` instead of CE.
    Raises TrialError on a non-finite loss or when training runs past `time_limit_s`."""
    generator = torch.Generator().manual_seed(seed)
    model.to(device)
    x, y = data.train
    steps_per_epoch = math.ceil(len(y) / cfg["batch_size"])
    total = cfg["epochs"] * steps_per_epoch
    apply_mask_baseline(model, cfg.get("mask_baseline", "none"), seed)
    sparse = make_sparse_trainer(model, cfg, total, seed=seed)  # before the optimizer: it may freeze scores
    opt = torch.optim.SGD(_param_groups(model, cfg), momentum=cfg["momentum"])
    sparse.optimizer = opt
    warmup = round(cfg.get("warmup_epochs", 0) * steps_per_epoch)  # train.warmup_epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, with_warmup(sparse.lr_factor, warmup))  # cosine; IMP restarts
    step_index = 0
    start = time.perf_counter()
    loss_value, val_acc = math.nan, None
    for epoch in range(cfg["epochs"]):
        model.train()
        order = torch.randperm(len(y), generator=generator)
        for i in range(0, len(y), cfg["batch_size"]):
            idx = order[i:i + cfg["batch_size"]]
            xb, yb = data.augment(x[idx], generator).to(device), y[idx].to(device)  # data.augment
            if teacher is None:
                loss = F.cross_entropy(model(xb), yb)
            else:
                with torch.no_grad():
                    soft_targets = teacher.eval()(xb)
                loss = distillation_loss(model(xb), soft_targets, yb, kd_alpha, kd_temperature)
            if not torch.isfinite(loss):
                raise TrialError(f"non-finite training loss at epoch {epoch}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.get("grad_clip"):
                nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
            opt.step()
            sparse.step(step_index)
            step_index += 1
            sched.step()
            loss_value = loss.item()
            if time_limit_s is not None and time.perf_counter() - start > time_limit_s:
                raise TrialError(f"trial exceeded its time limit of {time_limit_s:g} s")
        if on_epoch is not None:
            val_acc = accuracy(model, *data.val, device)
            on_epoch(epoch, {"train_loss": loss_value, "val_acc": val_acc})
    return {
        "val_acc": accuracy(model, *data.val, device) if val_acc is None else val_acc,  # the last epoch's
        "test_acc": accuracy(model, *data.test, device),
        "train_loss": loss_value,
        "train_time_s": time.perf_counter() - start,
    }
