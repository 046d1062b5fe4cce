"""DASS supernet and its sparsity-aware bi-level search (HERO-MDH/DASS: train_search.py, architect.py).

Mixed ops on the 14 edges of each cell type, α ∈ R^{14×8} (init 1e-3·N(0,1)) mixed by softmax, and
every conv/linear a sparse layer. Three phases over `epochs`:
  1. pretrain — keep ratio 1, weights and α train, scores frozen;
  2. prune    — scores re-initialised from the trained weights (scaled init) and trained to the target keep
                ratio (SGD lr 0.1, wd 1e-3); weights and α frozen;
  3. finetune — weights and α train with the mask fixed.
α always steps on the validation loss of the *masked* network (the sparsity-aware objective); first-order
by default, DARTS second-order (finite differences, r = 1e-2) with `second_order: true`. As in the authors'
search network, the BNs of the cells are not affine and pooling ops are followed by one (the stem's BN is affine).

Differences from the authors' code (PRDARTS/train_search.py, pruning.py; their phases run 100/50/100 epochs):
  - optimisers: theirs are three plain SGDs without momentum, weight decay 1e-3 (lr 0.025 pretrain, 0.1 prune,
    0.025 finetune); their `--momentum 0.9` / `--weight_decay 3e-4` reach only the architect's unrolled step.
    Here the weights' SGD has `momentum` 0.9 and `weight_decay` 3e-4, the scores' SGD `score_momentum` 0.9,
    wd 1e-3.
  - lr schedule: theirs restarts a cosine in each phase (T = 100 epochs, to 0.001): pretrain and finetune decay
    fully, prune runs 50 epochs of it (0.1 → ~0.05). Here one cosine `lr` → `lr_min` spans the pretrain and
    finetune epochs together (finetune continues where pretrain stopped) and the score lr is constant;
    `lr_restarts: true` is theirs. `--strategy dass_authors` sets all of theirs above (and their 2:1:2 phases).
  - prune: theirs freezes the conv/linear weights and α but not BN (`freeze_bn` false), so the stem's affine BN
    trains with the scores; here every parameter but the scores is frozen (running statistics update in both).
  - α steps in pretrain and finetune only, as their default trainer (`smooth`, whose extra loss is discarded);
    their `base` trainer also steps α during prune. They draw a random α batch per step; here one pass of each half.
Scaled down for small inputs and the CPU: C and depth come from the space (C=8, 3 cells by default
rather than 16 and 8), and a few epochs per phase; the search uses the training split, halved into
weight-train and α-val (50/50, as DASS). α's Adam lr is 3e-3 rather than DASS's 3e-4: this search makes
~100× fewer α steps than DARTS's 50 epochs on CIFAR, and at 3e-4 α stays at its initial noise.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..data import load_data
from ..errors import ConfigError
from ..ops.masks import scores_from_weights
from ..ops.sparse import SparseMixin
from ..schema import OPT_NUM, Field, count, number
from ..space import Arch, EvalContext, SupernetSearch
from ..training import resolve_device
from .bilevel import batches, split_halves
from .dass_net import CELL_TYPES, NODES, OPS, DassNetwork, FactorizedReduce, ReLUConvBN, Sparse, reallocate

EDGES = sum(n + 2 for n in range(NODES))  # 14
PHASES = ("pretrain", "prune", "finetune")


class MixedOp(nn.Module):
    """Σ_o w_o · o(x) over the ops of one edge; `none` (index 0) contributes zero and is not computed. A pooling
    op is followed by a BN without affine parameters, as in the DARTS / DASS search network."""

    def __init__(self, sp: Sparse, c: int, stride: int, ops: list[str]):
        super().__init__()
        self.stride = stride
        self.ops = nn.ModuleList(nn.Sequential(OPS[name](sp, c, stride), sp.norm(c)) if "pool" in name
                                 else OPS[name](sp, c, stride) for name in ops)

    def forward(self, x, weights):
        return sum(w * op(x) for w, op in zip(weights[1:], self.ops))


class SearchCell(nn.Module):
    def __init__(self, kind, mixing, sp: Sparse, ops, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__()
        self.kind = kind
        self.mixing = mixing  # () -> (14, 1 + len(ops)) softmax weights of this cell type
        self.pre0 = FactorizedReduce(sp, c_pp, c) if reduction_prev else ReLUConvBN(sp, c_pp, c, 1, 1, 0)
        self.pre1 = ReLUConvBN(sp, c_p, c, 1, 1, 0)
        self.edges = nn.ModuleList(MixedOp(sp, c, 2 if reduction and j < 2 else 1, ops)
                                   for n in range(NODES) for j in range(n + 2))

    def forward(self, s0, s1):
        weights = self.mixing()
        states, offset = [self.pre0(s0), self.pre1(s1)], 0
        for _ in range(NODES):
            states.append(sum(self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states)))
            offset += len(states) - 1
        return torch.cat(states[2:], dim=1)


class DassSupernet(nn.Module):
    def __init__(self, input_shape, num_classes, C, layers, stem_multiplier, ops):
        super().__init__()
        self.alpha = nn.ParameterDict({k: nn.Parameter(1e-3 * torch.randn(EDGES, 1 + len(ops))) for k in CELL_TYPES})
        sp = Sparse(1.0, "scores", affine=False)  # the stem's BN (not made by `sp`) keeps its affine parameters

        def make_cell(kind, *shape):
            return SearchCell(kind, lambda: F.softmax(self.alpha[kind], dim=-1), sp, ops, *shape)

        self.net = DassNetwork(input_shape, num_classes, C, layers, stem_multiplier, sp, make_cell)

    def forward(self, x):
        return self.net(x)

    def sparse_layers(self) -> list[SparseMixin]:
        return [m for m in self.net.modules() if isinstance(m, SparseMixin)]

    def weights(self) -> list[nn.Parameter]:
        return [p for n, p in self.net.named_parameters() if not n.endswith("scores")]

    def scores(self) -> list[nn.Parameter]:
        return [m.scores for m in self.sparse_layers()]

    def alphas(self) -> list[nn.Parameter]:
        return list(self.alpha.values())


def cosine(top: float, bottom: float, t: float) -> float:
    """Cosine decay from `top` (t = 0) to `bottom` (t = 1)."""
    return bottom + 0.5 * (top - bottom) * (1 + math.cos(math.pi * t))


def _set_requires_grad(params, flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)


class DassSupernetSearch(SupernetSearch):
    options_schema = {
        "pretrain_epochs": count(5, 0), "prune_epochs": count(5, 0), "finetune_epochs": count(5, 0),
        "keep": Field(None, OPT_NUM),  # target keep ratio, one of space.keep_ratios; null = the smallest
        "batch_size": count(32), "lr": number(0.025, 0, low_open=True), "lr_min": number(0.001, 0),
        "momentum": number(0.9, 0), "weight_decay": number(3e-4, 0),
        "arch_lr": number(3e-3, 0, low_open=True), "arch_weight_decay": number(1e-3, 0),
        "score_lr": number(0.1, 0, low_open=True), "score_weight_decay": number(1e-3, 0),
        "score_momentum": number(0.9, 0), "lr_restarts": Field(False, (bool,)),
        "grad_clip": number(5.0, 0),  # 0: no clipping
        "second_order": Field(False, (bool,)), "unroll_r": number(1e-2, 0, low_open=True),
        "latency_weight": number(0.0, 0),  # λ of the expected-latency term in α's loss (needs latency.predictor=lut)
    }

    def __init__(self, space, context: EvalContext, seed: int, options: dict):
        o = self.o = self.resolve_options(options)
        ratios = space.options["keep_ratios"]
        self.keep = min(ratios) if o["keep"] is None else o["keep"]
        if self.keep not in ratios:
            raise ConfigError(f"strategy.options.keep={self.keep} is not one of space.keep_ratios {ratios}")
        self.space = space
        self.ops = list(space.options["ops"])
        self.device = resolve_device(context.device)
        data = load_data(context.data)
        self.generator = torch.Generator().manual_seed(seed)
        self.train_split, self.val_split = split_halves(*data.train, self.generator)
        torch.manual_seed(seed)
        s = space.options
        self.model = DassSupernet(data.input_shape, data.num_classes, s["C"], s["layers"], s["stem_multiplier"],
                                  self.ops).to(self.device)
        self.w_opt = torch.optim.SGD(self.model.weights(), lr=o["lr"], momentum=o["momentum"],
                                     weight_decay=o["weight_decay"])
        self.a_opt = torch.optim.Adam(self.model.alphas(), lr=o["arch_lr"], betas=(0.5, 0.999),
                                      weight_decay=o["arch_weight_decay"])
        self.s_opt = torch.optim.SGD(self.model.scores(), lr=o["score_lr"], momentum=o["score_momentum"],
                                     weight_decay=o["score_weight_decay"])
        self.bounds = (o["pretrain_epochs"], o["pretrain_epochs"] + o["prune_epochs"])
        self.epochs = self.bounds[1] + o["finetune_epochs"]
        self.phase = "pretrain"
        self._enter("pretrain")
        self.op_ms = self._op_latencies(context, data.input_shape) if o["latency_weight"] > 0 else None

    # -- phases ---------------------------------------------------------------------------------------
    def phase_of(self, epoch: int) -> str:
        return PHASES[sum(epoch >= b for b in self.bounds)]

    def _enter(self, phase: str) -> None:
        m = self.model
        if phase == "prune" and self.phase == "pretrain":  # HYDRA: scores start from the trained weights
            with torch.no_grad():
                for layer in m.sparse_layers():
                    layer.scores.copy_(scores_from_weights(layer.weight))
        self.phase = phase
        for layer in m.sparse_layers():
            layer.keep = 1.0 if phase == "pretrain" else self.keep
        reallocate(m.net, self.space.options["allocation"])  # the space's allocation, as the derived net's
        _set_requires_grad(m.scores(), phase == "prune")
        _set_requires_grad(m.weights(), phase != "prune")
        _set_requires_grad(m.alphas(), phase != "prune")

    def lr_at(self, epoch: int) -> float:
        """The epoch's lr — the weights' in pretrain and finetune, the scores' in prune. Default: one cosine
        `lr` → `lr_min` over the pretrain and finetune epochs together, the score lr constant. `lr_restarts`
        (the authors'): a cosine restarted in every phase, from its lr to `lr_min` over T epochs — the phase's
        length for pretrain and finetune, the pretrain length for prune (their T = 100 in each phase, so their
        50 prune epochs end halfway down)."""
        o, phase = self.o, self.phase_of(epoch)
        if not o["lr_restarts"]:
            if phase == "prune":
                return o["score_lr"]
            trained = [e for e in range(self.epochs) if self.phase_of(e) != "prune"]
            return cosine(o["lr"], o["lr_min"], trained.index(epoch) / max(1, len(trained)))
        starts = (0, *self.bounds, self.epochs)
        k = PHASES.index(phase)
        length = starts[k + 1] - starts[k]
        T = max(length, o["pretrain_epochs"]) if phase == "prune" else length
        return cosine(o["score_lr"] if phase == "prune" else o["lr"], o["lr_min"], (epoch - starts[k]) / T)

    # -- expected latency -----------------------------------------------------------------------------
    def _op_latencies(self, context: EvalContext, input_shape) -> dict[str, torch.Tensor]:
        """Per cell type, a (14, 1 + ops) table: the LUT's ms of each candidate op on each edge, summed over
        the cells of that type (each op priced at its edge's input shape and at the target keep ratio)."""
        lut = getattr(getattr(context, "latency", None), "predictor", None)
        if not hasattr(lut, "module_ms"):
            raise ConfigError("strategy.options.latency_weight needs a lookup-table predictor (latency.predictor=lut)")
        shapes: list[tuple] = []
        hooks = [m.register_forward_hook(lambda mod, inp, out: shapes.append((mod, tuple(inp[0].shape[1:]))))
                 for m in self.model.modules() if isinstance(m, MixedOp)]
        with torch.no_grad():
            self.model.eval()(torch.zeros(1, *input_shape, device=self.device))
        for h in hooks:
            h.remove()
        table = {k: torch.zeros(EDGES, 1 + len(self.ops)) for k in CELL_TYPES}
        cache: dict[tuple, float] = {}
        sp = Sparse(self.keep, "scores")
        for cell in self.model.net.cells:
            for e, edge in enumerate(cell.edges):
                shape = next(s for m, s in shapes if m is edge)
                for o, op in enumerate(self.ops):
                    key = (op, shape, edge.stride)
                    if key not in cache:
                        cache[key] = lut.module_ms(OPS[op](sp, shape[0], edge.stride), shape)
                    table[cell.kind][e, 1 + o] += cache[key]
        return table

    def expected_latency(self) -> torch.Tensor:
        """Σ over cell types, edges and ops of softmax(α) · the op's LUT latency (differentiable in α)."""
        return sum((F.softmax(self.model.alpha[k], dim=-1) * self.op_ms[k].to(self.device)).sum()
                   for k in CELL_TYPES)

    # -- steps ----------------------------------------------------------------------------------------
    def _loss(self, batch):
        x, y = batch
        return F.cross_entropy(self.model(x.to(self.device)), y.to(self.device))

    def _step(self, opt, params, loss):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.o["grad_clip"]:
            nn.utils.clip_grad_norm_(params, self.o["grad_clip"])
        opt.step()

    def _alpha_step(self, train_batch, val_batch, lr):
        if not self.o["second_order"]:
            self.a_opt.zero_grad(set_to_none=True)
            loss = self._loss(val_batch)
            (loss + self._latency_term()).backward()
            self.a_opt.step()
            return loss.item()
        return self._unrolled_alpha_step(train_batch, val_batch, lr)

    def _latency_term(self):
        return self.o["latency_weight"] * self.expected_latency() if self.op_ms is not None else 0.0

    def _unrolled_alpha_step(self, train_batch, val_batch, lr):
        """DARTS second order: ∇α L_val(w', α) − ξ·(∇α L_train(w⁺) − ∇α L_train(w⁻)) / 2ε, w' = w − ξ∇w L_train."""
        w, alphas = self.model.weights(), self.model.alphas()
        saved = [p.detach().clone() for p in w]

        def grads(loss, params):
            return [g if g is not None else torch.zeros_like(p)
                    for g, p in zip(torch.autograd.grad(loss, params, allow_unused=True), params)]

        g_train = grads(self._loss(train_batch), w)
        with torch.no_grad():
            for p, g in zip(w, g_train):
                p.sub_(lr * (g + self.o["weight_decay"] * p))
        val_loss = self._loss(val_batch)
        g_all = grads(val_loss, alphas + w)
        g_alpha, g_w = g_all[:len(alphas)], g_all[len(alphas):]
        eps = self.o["unroll_r"] / torch.cat([g.flatten() for g in g_w]).norm().clamp_min(1e-12)
        hessian = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for p, s, g in zip(w, saved, g_w):
                    p.copy_(s + sign * eps * g)
            hessian.append(grads(self._loss(train_batch), alphas))
        with torch.no_grad():
            for p, s in zip(w, saved):
                p.copy_(s)
        g_latency = (torch.autograd.grad(self._latency_term(), alphas) if self.op_ms is not None
                     else [torch.zeros_like(a) for a in alphas])
        for a, ga, gl, hp, hn in zip(alphas, g_alpha, g_latency, *hessian):
            a.grad = ga + gl - lr * (hp - hn) / (2 * eps)
        self.a_opt.step()
        return val_loss.item()

    def run_epoch(self, epoch: int):
        phase = self.phase_of(epoch)
        self._enter(phase)
        self.model.train()
        lr = self.lr_at(epoch)
        for group in (self.s_opt if phase == "prune" else self.w_opt).param_groups:
            group["lr"] = lr
        train = batches(*self.train_split, self.o["batch_size"], self.generator)
        val = batches(*self.val_split, self.o["batch_size"], self.generator)
        train_losses, val_losses = [], []
        for train_batch, val_batch in zip(train, val):
            if phase == "prune":
                loss = self._loss(train_batch)
                self._step(self.s_opt, self.model.scores(), loss)
            else:
                val_losses.append(self._alpha_step(train_batch, val_batch, lr))
                loss = self._loss(train_batch)
                self._step(self.w_opt, self.model.weights(), loss)
            if not torch.isfinite(loss):
                raise RuntimeError(f"non-finite supernet loss in epoch {epoch} ({phase})")
            train_losses.append(loss.item())
        scalars = {"phase": float(PHASES.index(phase)), "train_loss": sum(train_losses) / len(train_losses),
                   "alpha_entropy": self.alpha_entropy(), "sparsity": self.sparsity(),
                   "val_acc": self.val_accuracy(), "lr": lr}
        if val_losses:
            scalars["val_loss"] = sum(val_losses) / len(val_losses)
        if self.op_ms is not None:
            scalars["expected_latency_ms"] = self.expected_latency().item()
        return scalars, {"genotype": self.space.label(self.derive())}

    # -- read-outs ------------------------------------------------------------------------------------
    @torch.no_grad()
    def alpha_entropy(self) -> float:
        ent = [-(p * p.log()).sum(-1).mean() for p in (F.softmax(a, -1) for a in self.model.alphas())]
        return float(sum(ent) / len(ent))

    @torch.no_grad()
    def sparsity(self) -> float:
        layers = self.model.sparse_layers()
        nnz = sum(int(torch.count_nonzero(m.effective_weight())) for m in layers)
        return 1.0 - nnz / sum(m.weight.numel() for m in layers)

    @torch.no_grad()
    def val_accuracy(self) -> float:
        """Accuracy on the α half in eval mode (BN running statistics); the model is left in train mode."""
        self.model.eval()
        x, y = self.val_split
        correct = sum(int((self.model(x[i:i + 512].to(self.device)).argmax(1).cpu() == y[i:i + 512]).sum())
                      for i in range(0, len(y), 512))
        self.model.train()
        return correct / max(1, len(y))

    @torch.no_grad()
    def derive(self) -> Arch:
        """DARTS genotype: per node the 2 incoming edges with the strongest non-`none` op, and that op."""
        values: dict = {}
        for kind in CELL_TYPES:
            w = F.softmax(self.model.alpha[kind], dim=-1)[:, 1:]
            offset = 0
            for n in range(NODES):
                rows = w[offset:offset + n + 2]
                a, b = sorted(torch.topk(rows.max(dim=1).values, 2).indices.tolist())
                values[f"{kind}.n{n}.inputs"] = f"{a}-{b}"
                values[f"{kind}.n{n}.op0"] = self.ops[int(rows[a].argmax())]
                values[f"{kind}.n{n}.op1"] = self.ops[int(rows[b].argmax())]
                offset += n + 2
            values[f"{kind}.keep"] = self.keep
        return self.space.validate(values)

    # -- checkpoint -----------------------------------------------------------------------------------
    def state_dict(self):
        return {"model": self.model.state_dict(), "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict(),
                "s_opt": self.s_opt.state_dict(), "phase": self.phase, "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.s_opt.load_state_dict(state["s_opt"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.phase = state["phase"]
        self._enter(self.phase)
