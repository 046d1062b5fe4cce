"""TAS supernet and its width/depth search (D-X-Y/AutoDL-Projects: shape_searchs/SearchCifarResNet.py,
SoftSelect.py, procedures/search_main_v2.py).

- Width: every conv keeps its full weight; α_l ∈ R^{|choices_l|} ~ N(0, 0.01). Each forward samples K=2
  distinct candidates from softmax((log_softmax(α_l) + g)/τ), g ~ Gumbel, and mixes them with the softmax
  of their two perturbed logits. A candidate's output is the first c channels of the full conv (input
  zero-padded to the conv's full input width), through its own BatchNorm; both are resized by CWI to the
  wider one and summed. A stride-2 block's shortcut conv uses its block's conv_b sample, as the authors'.
- Depth: β_s over the stage's exits; the stage output is Σ_k q_k·CWI(exit_k) with q the Gumbel-softmax of
  β_s (all exits). Residual sums of unequal widths zero-pad the narrower (the authors' additive_func).
- Expected FLOPs (differentiable): every conv's FLOPs with expected widths E[c] = Σ softmax(α)·choices,
  each block weighted by P(depth ≥ block) under softmax(β). The next stage's expected input width is the
  softmax(β)-weighted width of the exits (the authors carry the last block's; same at convergence).
- FLOP loss: F = exact FLOPs of the argmax arch, R = `flop_ratio`·F_max, t = `flop_tolerance`·F_max:
  −log E if F < R − t, +log E if F > R, else 0; α/β step on CE_val + λ·L_flop (λ = `flop_weight` = 2),
  Adam lr 1e-3, betas (0.5, 0.999), wd 1e-3; weights step on CE_train (SGD lr 0.1 nesterov, wd 5e-4,
  cosine), alternating batch by batch on the two halves of the training split; τ follows a cosine from
  `tau_max` = 10 in the first epoch to `tau_min` = 0.1 in the last (PAPERS.md; the authors' script uses
  5 → 0.1).
- Derived arch (the authors' search-transformable.py): of the argmax archs at the end of each epoch, the
  one with the best supernet validation accuracy among those whose FLOP ratio is within `flop_tolerance`
  of `flop_ratio`; the last epoch's argmax when none is.
Scaled down for the CPU: a few dozen epochs on digits instead of 300–600 on CIFAR, batch 32 instead of
256, no warm-up epochs.
The derived arch is then trained from scratch, with distillation, as an ordinary trial (`TasSpace`).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..data import load_data
from ..errors import ConfigError
from ..schema import Field, count, number
from ..space import Arch, EvalContext, SupernetSearch
from ..training import resolve_device
from .bilevel import batches, split_halves
from .tas_net import STAGES, down

if TYPE_CHECKING:  # tas imports this module
    from .tas import TasSpace


def cwi(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Channel-wise interpolation: adaptive average pooling of (N, C, H, W) over C to `channels`,
    out_j = mean(x[:, ⌊jC/channels⌋ : ⌈(j+1)C/channels⌉])."""
    if x.shape[1] == channels:
        return x
    return F.adaptive_avg_pool3d(x.unsqueeze(1), (channels, *x.shape[2:])).squeeze(1)


def pad_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    return F.pad(x, (0, 0, 0, 0, 0, channels - x.shape[1])) if x.shape[1] < channels else x


def add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b, the narrower zero-padded to the wider's channels."""
    c = max(a.shape[1], b.shape[1])
    return pad_channels(a, c) + pad_channels(b, c)


def gumbel_logits(alpha: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """(log_softmax(α) + g) / τ, g ~ Gumbel(0, 1) drawn from `generator` (on the CPU)."""
    u = torch.empty(alpha.shape).exponential_(generator=generator).clamp_min(1e-20)
    return (F.log_softmax(alpha, dim=-1) - u.log().to(alpha.device)) / tau


def select_k(alpha: torch.Tensor, tau: float, k: int, generator: torch.Generator):
    """K distinct candidates sampled from the Gumbel-softmax of α and their mixing weights."""
    logits = gumbel_logits(alpha, tau, generator)
    probs = F.softmax(logits.detach(), dim=-1).cpu()
    index = torch.multinomial(probs + 1e-7, min(k, len(probs)), replacement=False, generator=generator)
    return index.tolist(), F.softmax(logits[index.to(logits.device)], dim=-1)


class SearchConv(nn.Module):
    """A full-width conv whose output width is a mix of sampled candidates, one BatchNorm per candidate.
    `pool`: a ceil-mode 2×2 average pool first (the stride-2 shortcut)."""

    def __init__(self, c_in, c_out, kernel, stride, choices, pool=False):
        super().__init__()
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if pool else None
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)
        self.choices = tuple(choices)
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for c in self.choices)

    def forward(self, x, selection):
        index, probs = selection
        if self.pool is not None:
            x = self.pool(x)
        out = self.conv(pad_channels(x, self.conv.in_channels))
        outs = [self.bns[i](out[:, :self.choices[i]]) for i in index]
        c = max(o.shape[1] for o in outs)
        return sum(p * cwi(o, c) for p, o in zip(probs, outs))


class SearchBlock(nn.Module):
    def __init__(self, c_in, c_out, stride, choices_a, choices_b):
        super().__init__()
        self.conv_a = SearchConv(c_in, c_out, 3, stride, choices_a)
        self.conv_b = SearchConv(c_out, c_out, 3, 1, choices_b)
        self.shortcut = (SearchConv(c_in, c_out, 1, 1, choices_b, pool=stride == 2)
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x, sel_a, sel_b):
        out = self.conv_b(F.relu(self.conv_a(x, sel_a)), sel_b)
        residual = x if self.shortcut is None else self.shortcut(x, sel_b)
        return F.relu(add_padded(residual, out))


class TasSupernet(nn.Module):
    """The full-width ResNet of a `TasSpace` with α (per conv) and β (per stage)."""

    def __init__(self, space: TasSpace, input_shape, num_classes):
        super().__init__()
        lay = self.layout = space.layout
        self.labels = lay.conv_labels()
        self.choices = [space.widths[label] for label in self.labels]
        self.depths = space.depths
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.stem = SearchConv(input_shape[0], lay.C, 3, 1, self.choices[0])
        self.stages = nn.ModuleList()
        c, k = lay.C, 1
        for s in range(STAGES):
            blocks = nn.ModuleList()
            for j in range(lay.blocks):
                blocks.append(SearchBlock(c, lay.stage_width(s), 2 if s > 0 and j == 0 else 1,
                                          self.choices[k], self.choices[k + 1]))
                c, k = lay.stage_width(s), k + 2
            self.stages.append(blocks)
        self.classifier = nn.Linear(c, num_classes)
        self.alpha = nn.ParameterList(nn.Parameter(0.01 * torch.randn(len(ch))) for ch in self.choices)
        self.beta = nn.Parameter(0.01 * torch.randn(STAGES, len(self.depths)))
        for i, ch in enumerate(self.choices):
            self.register_buffer(f"choices_{i}", torch.tensor(ch, dtype=torch.float32), persistent=False)

    def weights(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith(("alpha", "beta"))]

    def arch_parameters(self) -> list[nn.Parameter]:
        return [*self.alpha, self.beta]

    # -- sampling -------------------------------------------------------------------------------------
    def sample(self, tau: float, generator: torch.Generator):
        """Gumbel K=2 width selections per conv and Gumbel-softmax exit weights per stage."""
        widths = [select_k(a, tau, 2, generator) for a in self.alpha]
        return widths, F.softmax(gumbel_logits(self.beta, tau, generator), dim=-1)

    def argmax_sample(self):
        one = torch.ones(1, device=self.beta.device)
        widths = [([int(a.argmax())], one) for a in self.alpha]
        return widths, F.one_hot(self.beta.argmax(-1), len(self.depths)).float()

    def argmax(self) -> tuple[dict[str, int], list[int]]:
        widths = {label: ch[int(a.argmax())] for label, ch, a in zip(self.labels, self.choices, self.alpha)}
        return widths, [self.depths[int(i)] for i in self.beta.argmax(-1)]

    # -- forward --------------------------------------------------------------------------------------
    def forward(self, x, sample):
        widths, q = sample
        x = F.relu(self.stem(x, widths[0]))
        k = 1
        for s, blocks in enumerate(self.stages):
            used = [i for i in range(len(self.depths)) if float(q[s, i].detach()) != 0.0]
            last = self.depths[used[-1]]  # blocks past the last weighted exit do not matter
            exits = {}
            for j, block in enumerate(blocks[:last]):
                x = block(x, widths[k + 2 * j], widths[k + 2 * j + 1])
                exits[j + 1] = x
            k += 2 * len(blocks)
            c = max(exits[self.depths[i]].shape[1] for i in used)
            x = sum(q[s, i] * cwi(exits[self.depths[i]], c) for i in used)
        features = x.mean(dim=(2, 3))
        return F.linear(features, self.classifier.weight[:, :features.shape[1]], self.classifier.bias)

    def expected_flops(self) -> torch.Tensor:
        """Differentiable expected FLOPs (multiply-accumulates for one sample) under softmax(α), softmax(β)."""
        ew = [(F.softmax(a, -1) * getattr(self, f"choices_{i}")).sum() for i, a in enumerate(self.alpha)]
        pd = F.softmax(self.beta, -1)
        c0, h, w = self.input_shape
        total = h * w * c0 * ew[0] * 9
        e_in, k, full_in = ew[0], 1, self.layout.C
        for s, blocks in enumerate(self.stages):
            exit_widths = []
            for j in range(len(blocks)):
                stride = 2 if s > 0 and j == 0 else 1
                h, w = down(h, stride), down(w, stride)
                ea, eb = ew[k], ew[k + 1]
                flops = e_in * ea * 9 + ea * eb * 9
                if stride != 1 or full_in != self.layout.stage_width(s):
                    flops = flops + e_in * eb
                keep = sum(pd[s, i] for i, d in enumerate(self.depths) if d >= j + 1)  # P(depth >= j + 1)
                total = total + keep * h * w * flops
                if j + 1 in self.depths:
                    exit_widths.append(eb)
                e_in, k, full_in = eb, k + 2, self.layout.stage_width(s)
            e_in = sum(p * c for p, c in zip(pd[s], exit_widths))
        return total + e_in * self.num_classes


def flop_loss(expected: torch.Tensor, current: float, target: float, tolerance: float) -> torch.Tensor:
    """TAS: −log E when the argmax arch is below target − tolerance, +log E when above target, else 0."""
    if current < target - tolerance:
        return -torch.log(expected)
    if current > target:
        return torch.log(expected)
    return expected.new_zeros(())


class TasSupernetSearch(SupernetSearch):
    options_schema = {
        "epochs": count(40), "batch_size": count(32),
        "lr": number(0.1, 0, low_open=True), "lr_min": number(0.0, 0), "momentum": number(0.9, 0),
        "weight_decay": number(5e-4, 0), "nesterov": Field(True, (bool,)),
        "arch_lr": number(1e-3, 0, low_open=True), "arch_weight_decay": number(1e-3, 0),
        "flop_ratio": number(0.5, 0, 1, low_open=True), "flop_weight": number(2.0, 0), "flop_tolerance": number(0.05, 0),
        "tau_max": number(10.0, 0, low_open=True), "tau_min": number(0.1, 0, low_open=True),  # tau_min <= tau_max
    }

    def __init__(self, space: TasSpace, context: EvalContext, seed: int, options: dict):
        o = self.o = self.resolve_options(options)
        if o["tau_min"] > o["tau_max"]:
            raise ConfigError("strategy.options needs 0 < tau_min <= tau_max")
        self.space, self.epochs = space, o["epochs"]
        self.device = resolve_device(context.device)
        data = load_data(context.data)
        self.shape, self.classes = data.input_shape, data.num_classes
        self.generator = torch.Generator().manual_seed(seed)
        self.train_split, self.val_split = split_halves(*data.train, self.generator)
        torch.manual_seed(seed)
        self.model = TasSupernet(space, self.shape, self.classes).to(self.device)
        self.w_opt = torch.optim.SGD(self.model.weights(), lr=o["lr"], momentum=o["momentum"],
                                     weight_decay=o["weight_decay"], nesterov=o["nesterov"] and o["momentum"] > 0)
        self.a_opt = torch.optim.Adam(self.model.arch_parameters(), lr=o["arch_lr"], betas=(0.5, 0.999),
                                      weight_decay=o["arch_weight_decay"])
        self.max_flops = space.flops(space.full_arch(), self.shape, self.classes)
        self.history: list[dict] = []  # per epoch: the argmax arch, its FLOP ratio and supernet val_acc

    def _cosine(self, start: float, end: float, epoch: int) -> float:
        return end + 0.5 * (start - end) * (1 + math.cos(math.pi * epoch / self.epochs))

    def argmax_flops(self) -> int:
        return self.space.flops(self.current(), self.shape, self.classes)

    def run_epoch(self, epoch: int):
        o, m, dev = self.o, self.model, self.device
        t = epoch / max(1, self.epochs - 1)  # τ reaches tau_min in the last epoch
        tau = o["tau_min"] + 0.5 * (o["tau_max"] - o["tau_min"]) * (1 + math.cos(math.pi * t))
        lr = self._cosine(o["lr"], o["lr_min"], epoch)
        for group in self.w_opt.param_groups:
            group["lr"] = lr
        target, tolerance = o["flop_ratio"] * self.max_flops, o["flop_tolerance"] * self.max_flops
        m.train()
        sums = {"train_loss": 0.0, "val_loss": 0.0, "flop_loss": 0.0}
        train = batches(*self.train_split, o["batch_size"], self.generator)
        val = batches(*self.val_split, o["batch_size"], self.generator)
        steps = 0
        for (xt, yt), (xv, yv) in zip(train, val):
            with torch.no_grad():
                sample = m.sample(tau, self.generator)
            loss = F.cross_entropy(m(xt.to(dev), sample), yt.to(dev))
            self.w_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.w_opt.step()
            ce = F.cross_entropy(m(xv.to(dev), m.sample(tau, self.generator)), yv.to(dev))
            fl = flop_loss(m.expected_flops(), self.argmax_flops(), target, tolerance)
            self.a_opt.zero_grad(set_to_none=True)
            (ce + o["flop_weight"] * fl).backward()
            self.a_opt.step()
            if not (torch.isfinite(loss) and torch.isfinite(ce)):
                raise RuntimeError(f"non-finite supernet loss in epoch {epoch}")
            for key, value in (("train_loss", loss), ("val_loss", ce), ("flop_loss", fl)):
                sums[key] += value.item()
            steps += 1
        scalars = {k: v / max(1, steps) for k, v in sums.items()}
        with torch.no_grad():
            scalars.update(tau=tau, lr=lr, flops_ratio=self.argmax_flops() / self.max_flops,
                           expected_flops_ratio=float(m.expected_flops()) / self.max_flops,
                           width_entropy=self._entropy(list(m.alpha)), depth_entropy=self._entropy(list(m.beta)),
                           val_acc=self.val_accuracy())
        self.history.append({"arch": dict(self.current()), "flops_ratio": scalars["flops_ratio"],
                             "val_acc": scalars["val_acc"]})
        return scalars, {"genotype": self.space.label(self.current())}

    @staticmethod
    def _entropy(logits: list[torch.Tensor]) -> float:
        ent = [-(p * p.log()).sum() for p in (F.softmax(a, -1) for a in logits)]
        return float(sum(ent) / len(ent))

    @torch.no_grad()
    def val_accuracy(self) -> float:
        """Accuracy of the argmax arch inside the supernet on the α-validation half, with BatchNorm on the
        statistics of each evaluated batch (512 samples; running statistics left unchanged): the per-width
        running statistics of a weight-sharing supernet lag far behind its weights."""
        bns = [m for m in self.model.modules() if isinstance(m, nn.BatchNorm2d)]
        momenta = [bn.momentum for bn in bns]
        for bn in bns:
            bn.momentum = 0.0
        self.model.train()
        x, y = self.val_split
        sample = self.model.argmax_sample()
        correct = sum(int((self.model(x[i:i + 512].to(self.device), sample).argmax(1).cpu() == y[i:i + 512]).sum())
                      for i in range(0, len(y), 512))
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        return correct / max(1, len(y))

    @torch.no_grad()
    def current(self) -> Arch:
        """The argmax arch of α and β now."""
        widths, depths = self.model.argmax()
        return self.space.validate({**widths, **{f"s{s}.depth": d for s, d in enumerate(depths)}})

    def derive(self) -> Arch:
        ok = [h for h in self.history if abs(h["flops_ratio"] - self.o["flop_ratio"]) <= self.o["flop_tolerance"]]
        if not ok:
            return self.current()
        return self.space.validate(max(reversed(ok), key=lambda h: h["val_acc"])["arch"])

    def state_dict(self):
        return {"model": self.model.state_dict(), "w_opt": self.w_opt.state_dict(),
                "a_opt": self.a_opt.state_dict(), "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(), "history": self.history}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.history = list(state["history"])
