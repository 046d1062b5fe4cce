"""Order-Preserving GFlowNet (OP-GFN; Chen & Mauch, "Order-Preserving GFlowNets", ICLR 2024), plain PyTorch.

Environment (any space; NB201 is the paper's): a state assigns some of the space's D dims, -1 = unset. A forward
action sets one unset dim to one of its values (the exit action, forced once every dim is set, has
probability 1 and is left implicit); a backward action unsets one set dim. Categorical dims keep their
choices; Int dims with more than `max_values` values and Float dims are discretised to `max_values` evenly
spaced (log-spaced for log floats) grid values — a simplification: the strategy never proposes off-grid values.

Model: one MLP torso on the one-hot state with a forward head (P_F over set-dim-to-value actions), a
backward head (P_B over set dims) and a scalar log Z. The predicted log-reward of a terminal x along a
trajectory τ is log Z + Σ log P_F(τ) − Σ log P_B(τ). OP-TB loss (trained on the ordering only, never on reward
values): pair every trajectory with a random other one, target [1{r_i>r_j}, 1{r_j>r_i}] (ties ½), cross-entropy
against the softmax of the two predicted log-rewards; plus λ_KL·KL(uniform ‖ P_B) over the visited states.
Multi-objective: in random subsets of `mo_subset` trajectories, cross-entropy between the softmax of the
predicted log-rewards and the uniform distribution on the subset's Pareto-non-dominated members (failed and
infeasible trials are dominated by every ok one and ranked below them in the single-objective case).

Loop: `init_samples` first queries (uniform; the authors draw them from the untrained policy), then rounds of
`batch_size` queries. Each round trains `train_steps` Adam steps (lr 1e-3, log Z lr 0.1) on the trajectories of
the whole history (a random `train_batch` of them per step once it is larger; `train_steps_init` right after a
(re-)initialisation, every `reinit_every` rounds), then — backward augmentation — `replay_steps` steps on
backward trajectories drawn from P_B for a prioritised replay of `replay_size` terminals (half from the top 10%),
`replay_per_terminal` trajectories each, then — proxy sampling — samples `proxy_factor × batch_size` candidates
from P_F and queries the `batch_size` with the highest predicted log-reward. No arch is queried twice:
candidates already queried (told, or proposed and still running) are dropped before the top-k; any other repeat
(a uniform sample) is caught by the loop's de-duplication (`Unique`). Fidelity: only full-fidelity results are
trained on; a trial a scheduler stopped early is recorded as queried (never proposed again), not as history.

Defaults: ours, tuned on small budgets (the same for every space), not the authors'. Proxy sampling (10×) and
backward augmentation are on here; in the authors' code both are opt-in flags (`--proxy`, `--backward_augment`):
no command of their README uses `--proxy`, only the OP-GFN-KL-AUG one `--backward_augment` (20 trajectories per
terminal, 20 steps). We also use fewer initial samples and steps and a smaller MLP (they: 64 samples, 2000 / 200
steps on the whole history, 2 × 256 units for a ~564-query run; here 30, 200 / 50 steps on batches of at most
`train_batch`, 2 × 64). `--strategy opgfn_authors` (strategies/opgfn_authors.yaml) runs their defaults: proxy and
augmentation off (`proxy_factor: 1`, `replay_steps: 0`), their samples, steps, sizes, λ_KL = 0.1 (OP-GFN-KL).

Deterministic given the seed (own torch.Generator and numpy Generator; network init under a forked global
RNG); `state_dict` carries the networks, the optimizer, both RNG states, the history, stopped trials and queue.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..schema import count, number
from ..space import Arch, Categorical, Float, Int
from .base import Strategy, full_fidelity, register_strategy
from .dedupe import dedupe_fields


def grid(dim, max_values: int) -> list:
    """The values of a dim the GFlowNet chooses from."""
    if isinstance(dim, Categorical):
        return list(dim.choices)
    if isinstance(dim, Int):
        n = int(dim.size())
        if n <= max_values:
            return [dim.low + dim.step * i for i in range(n)]
        idx = np.unique(np.round(np.linspace(0, n - 1, max_values)).astype(int))
        return [dim.low + dim.step * int(i) for i in idx]
    if isinstance(dim, Float):
        if dim.log:
            values = np.exp(np.linspace(math.log(dim.low), math.log(dim.high), max_values))
        else:
            values = np.linspace(dim.low, dim.high, max_values)
        values[0], values[-1] = dim.low, dim.high  # exact ends (exp∘log is not the identity in floats)
        return sorted({float(v) for v in np.clip(values, dim.low, dim.high)})
    raise ConfigError(f"opgfn cannot construct a dim of type {type(dim).__name__}")


class Encoding:
    """Dims ↔ integer vectors; one-hot features (unset = slot 0 of each dim) and the flat action table."""

    def __init__(self, space, max_values: int):
        dims = space.dims()
        self.labels = list(dims)
        self.values = [grid(dims[k], max_values) for k in self.labels]
        self.D = len(self.labels)
        self.sizes = torch.tensor([len(v) for v in self.values])
        self.in_offsets = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), self.sizes[:-1] + 1]), 0)
        self.n_in = int((self.sizes + 1).sum())
        self.act_offsets = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), self.sizes[:-1]]), 0)
        self.n_act = int(self.sizes.sum())
        self.act_dim = torch.repeat_interleave(torch.arange(self.D), self.sizes)  # dim of each action

    def features(self, states: torch.Tensor) -> torch.Tensor:
        x = torch.zeros(*states.shape[:-1], self.n_in)
        return x.scatter_(-1, self.in_offsets + states + 1, 1.0)

    def arch(self, values: np.ndarray | torch.Tensor) -> Arch:
        return Arch({k: self.values[d][int(values[d])] for d, k in enumerate(self.labels)})

    def index(self, arch: Arch) -> list[int] | None:
        """Grid indices of an arch, or None when a value is off the grid."""
        out = []
        for d, k in enumerate(self.labels):
            match = [i for i, v in enumerate(self.values[d]) if type(v) is type(arch[k]) and v == arch[k]]
            if not match:
                return None
            out.append(match[0])
        return out


class GFlowNet(nn.Module):
    def __init__(self, n_in: int, n_act: int, D: int, hidden: int, layers: int):
        super().__init__()
        mods, width = [], n_in
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.torso = nn.Sequential(*mods)
        self.pf = nn.Linear(width, n_act)
        self.pb = nn.Linear(width, D)
        self.log_z = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        h = self.torso(x)
        return self.pf(h), self.pb(h)


def _masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.masked_fill(~mask, -1e9), dim=-1)


def ordering_loss(pred: torch.Tensor, reward: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Pairwise OP loss: CE between [1{r_i>r_j}, 1{r_j>r_i}] (ties ½) and softmax(pred_i, pred_j)."""
    keep = perm != torch.arange(len(perm))
    i, j = torch.arange(len(perm))[keep], perm[keep]
    if len(i) == 0:
        return pred.sum() * 0.0
    target = (reward[i] > reward[j]).float() + 0.5 * (reward[i] == reward[j]).float()
    diff = pred[i] - pred[j]
    return -(target * nn.functional.logsigmoid(diff) + (1 - target) * nn.functional.logsigmoid(-diff)).mean()


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Non-dominated rows of `values` (higher is better; rows with a nan are dominated by all finite rows)."""
    ok = np.all(np.isfinite(values), axis=1)
    out = np.zeros(len(values), dtype=bool)
    for i in np.flatnonzero(ok):
        others = values[ok]
        dominated = np.any(np.all(others >= values[i], axis=1) & np.any(others > values[i], axis=1))
        out[i] = not dominated
    return out


@register_strategy("opgfn")
class OPGFN(Strategy):
    # every count >= 1 but replay_steps (0: no replay); max_retries: proposal batches redrawn when every candidate
    # was queried, also read by the loop's de-duplication (`Unique`)
    options_schema = {
        "init_samples": count(30), "batch_size": count(10), "train_steps": count(50), "train_steps_init": count(200),
        "reinit_every": count(10), "replay_size": count(20), "replay_per_terminal": count(4),
        "replay_steps": count(10, 0), "proxy_factor": count(10), "kl_weight": number(0.1, 0),
        "lr": number(1e-3, 0, low_open=True), "log_z_lr": number(0.1, 0, low_open=True), "hidden": count(64),
        "train_batch": count(128), "layers": count(2), "mo_subset": count(16), "max_values": count(32),
        **dedupe_fields(max_retries=20, dedupe=None, min_retries=1), "epsilon": number(0.0, 0, 1)}

    def __init__(self, space, objective, seed, **options):
        super().__init__(space, objective, seed, **options)
        self.enc = Encoding(space, self.options["max_values"])
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 7]).generate_state(1)[0]))
        # history: per told trial, grid values, construction order (None: draw one) and objective values
        self.hist_values: list[list[int]] = []
        self.hist_orders: list[list[int] | None] = []
        self.hist_scores: list[list[float]] = []
        self.orders: dict[str, list[int]] = {}  # arch_id → order it was constructed in (our proposals)
        self.partial: list[str] = []  # arch ids of trials stopped early: queried, not in the history
        self.queue: list[tuple[list[int], list[int]]] = []
        self.asked = 0
        self.rounds = 0
        self.net: GFlowNet | None = None
        self.opt: torch.optim.Optimizer | None = None
        self._new_order: str | None = None  # arch id whose order the last ask recorded (undone by `duplicate`)

    # -- model ----------------------------------------------------------------------------------------------
    def _reinit(self) -> None:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.gen))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = GFlowNet(self.enc.n_in, self.enc.n_act, self.enc.D, self.options["hidden"],
                                self.options["layers"])
        self.opt = self._optimizer(self.net)

    def _optimizer(self, net: GFlowNet) -> torch.optim.Optimizer:
        rest = [p for n, p in net.named_parameters() if n != "log_z"]
        return torch.optim.Adam([{"params": rest, "lr": self.options["lr"]},
                                 {"params": [net.log_z], "lr": self.options["log_z_lr"]}])

    def _trajectory_terms(self, values: torch.Tensor, orders: torch.Tensor):
        """For n complete trajectories (terminal grid values, order of the dims set): predicted log R (n,) and
        the mean KL(uniform ‖ P_B) over their non-initial states."""
        n, D = values.shape
        rank = torch.empty_like(orders).scatter_(1, orders, torch.arange(D).expand(n, D))
        steps = torch.arange(D + 1).view(1, D + 1, 1)
        states = torch.where(rank.unsqueeze(1) < steps, values.unsqueeze(1), torch.full_like(values.unsqueeze(1), -1))
        pf_logits, pb_logits = self.net(self.enc.features(states))               # (n, D+1, A), (n, D+1, D)
        unset = states == -1
        pf_logp = _masked_log_softmax(pf_logits[:, :-1], unset[:, :-1][..., self.enc.act_dim])
        actions = self.enc.act_offsets[orders] + values.gather(1, orders)        # (n, D) action at step t
        log_pf = pf_logp.gather(2, actions.unsqueeze(-1)).squeeze(-1).sum(1)
        set_mask = ~unset[:, 1:]
        pb_logp = _masked_log_softmax(pb_logits[:, 1:], set_mask)
        log_pb = pb_logp.gather(2, orders.unsqueeze(-1)).squeeze(-1).sum(1)
        uniform = set_mask.float() / set_mask.sum(-1, keepdim=True)
        kl = (uniform * (torch.log(uniform.clamp_min(1e-12)) - pb_logp)).masked_fill(~set_mask, 0).sum(-1).mean()
        return self.net.log_z + log_pf - log_pb, kl

    def _loss(self, values, orders, scores: np.ndarray) -> torch.Tensor:
        pred, kl = self._trajectory_terms(values, orders)
        if scores.shape[1] == 1:
            reward = torch.as_tensor(np.nan_to_num(scores[:, 0], nan=-np.inf))
            loss = ordering_loss(pred, reward, torch.randperm(len(pred), generator=self.gen))
        else:
            loss, k = pred.sum() * 0.0, min(self.options["mo_subset"], len(pred))
            for _ in range(max(1, len(pred) // k)):
                idx = torch.randperm(len(pred), generator=self.gen)[:k]
                front = torch.as_tensor(pareto_mask(scores[idx.numpy()]))
                if front.any():
                    target = front.float() / front.sum()
                    loss = loss - (target * torch.log_softmax(pred[idx], 0)).sum()
        return loss + self.options["kl_weight"] * kl

    def _train(self, values, orders, scores, steps: int) -> None:
        """`steps` Adam steps, each on the whole set or, beyond `train_batch` trajectories, a random batch of it."""
        n, batch = len(values), self.options["train_batch"]
        for _ in range(steps):
            idx = torch.randperm(n, generator=self.gen)[:batch] if n > batch else torch.arange(n)
            self.opt.zero_grad()
            self._loss(values[idx], orders[idx], scores[idx.numpy()]).backward()
            self.opt.step()

    @torch.no_grad()
    def _sample_forward(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        D = self.enc.D
        states = torch.full((n, D), -1, dtype=torch.long)
        orders = torch.zeros((n, D), dtype=torch.long)
        for t in range(D):
            logits, _ = self.net(self.enc.features(states))
            allowed = (states == -1)[:, self.enc.act_dim]
            probs = _masked_log_softmax(logits, allowed).exp()
            if self.options["epsilon"]:  # the authors' forward_epsilon: mix in uniform over allowed actions
                uniform = allowed.float() / allowed.sum(-1, keepdim=True)
                probs = (1 - self.options["epsilon"]) * probs + self.options["epsilon"] * uniform
            a = torch.multinomial(probs, 1, generator=self.gen).squeeze(1)
            d = self.enc.act_dim[a]
            states[torch.arange(n), d] = a - self.enc.act_offsets[d]
            orders[:, t] = d
        return states, orders

    @torch.no_grad()
    def _sample_backward(self, values: torch.Tensor) -> torch.Tensor:
        n, D = values.shape
        states, orders = values.clone(), torch.zeros((n, D), dtype=torch.long)
        for t in reversed(range(D)):
            _, logits = self.net(self.enc.features(states))
            probs = _masked_log_softmax(logits, states != -1).exp()
            d = torch.multinomial(probs, 1, generator=self.gen).squeeze(1)
            states[torch.arange(n), d] = -1
            orders[:, t] = d
        return orders

    @torch.no_grad()
    def predicted_log_reward(self, archs: list[Arch], samples: int = 8) -> np.ndarray:
        """Mean predicted log R over `samples` backward trajectories per arch (for diagnostics and tests)."""
        values = torch.tensor([self.enc.index(a) for a in archs])
        total = torch.zeros(len(archs))
        for _ in range(samples):
            total += self._trajectory_terms(values, self._sample_backward(values))[0]
        return (total / samples).numpy()

    # -- round ----------------------------------------------------------------------------------------------
    def _history_tensors(self):
        values = torch.tensor(self.hist_values, dtype=torch.long)
        orders = []
        for i, order in enumerate(self.hist_orders):
            if order is None:  # told without a construction order (not proposed by us): a uniform one
                order = self.rng.permutation(self.enc.D).tolist()
                self.hist_orders[i] = order
            orders.append(order)
        return values, torch.tensor(orders, dtype=torch.long), np.array(self.hist_scores, dtype=float)

    def _replay(self, scores: np.ndarray) -> np.ndarray:
        """Prioritised replay: `replay_size` history indices, half from the top 10% (first objective)."""
        n = len(scores)
        size = min(n, self.options["replay_size"])
        order = np.argsort(-np.nan_to_num(scores[:, 0], nan=-np.inf), kind="stable")
        top_pool = max(1, int(0.1 * n))
        n_top = min(size // 2, top_pool)
        top = self.rng.choice(top_pool, n_top, replace=False)
        rest = self.rng.choice(np.arange(top_pool, n), min(size - n_top, n - top_pool), replace=False)
        return order[np.concatenate([top, rest]).astype(int)]

    def _round(self) -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small MLPs: threads only add overhead (restored below)
        try:
            self._train_and_propose()
        finally:
            torch.set_num_threads(threads)

    def _train_and_propose(self) -> None:
        first = self.net is None or self.rounds % self.options["reinit_every"] == 0
        if first:
            self._reinit()
        values, orders, scores = self._history_tensors()
        self.net.train()
        self._train(values, orders, scores, self.options["train_steps_init" if first else "train_steps"])
        if self.options["replay_steps"] and len(scores) > 1:
            idx = torch.as_tensor(self._replay(scores)).repeat(self.options["replay_per_terminal"])
            r_values = values[idx]
            self._train(r_values, self._sample_backward(r_values), scores[idx.numpy()], self.options["replay_steps"])
        self.rounds += 1
        self.queue = self._propose(self.options["batch_size"])

    @torch.no_grad()
    def _propose(self, k: int) -> list[tuple[list[int], list[int]]]:
        """Top-k not yet queried of proxy_factor·k forward samples by predicted log-reward."""
        queried = {self.enc.arch(v).arch_id for v in self.hist_values} | set(self.orders) | set(self.partial)
        for _ in range(self.options["max_retries"]):
            values, orders = self._sample_forward(self.options["proxy_factor"] * k)
            pred, _ = self._trajectory_terms(values, orders)
            chosen, ids = [], set()
            for i in torch.argsort(pred, descending=True, stable=True).tolist():
                arch_id = self.enc.arch(values[i]).arch_id
                if arch_id not in queried and arch_id not in ids:
                    chosen.append((values[i].tolist(), orders[i].tolist()))
                    ids.add(arch_id)
                if len(chosen) == k:
                    break
            if chosen:
                return chosen
        return []

    # -- ask / tell -----------------------------------------------------------------------------------------
    def _uniform(self) -> tuple[list[int], list[int]]:
        return [int(self.rng.integers(len(v))) for v in self.enc.values], self.rng.permutation(self.enc.D).tolist()

    def ask(self) -> Arch:
        warm = self.asked < self.options["init_samples"] or not self.hist_values  # uniform until trained on a result
        if not warm and not self.queue:
            self._round()
        pick = self.queue.pop(0) if not warm and self.queue else self._uniform()
        arch = self.enc.arch(pick[0])
        self._new_order = None if arch.arch_id in self.orders else arch.arch_id
        self.orders.setdefault(arch.arch_id, pick[1])  # a repeat of a running arch keeps that arch's order
        self.asked += 1
        return arch

    def duplicate(self, arch, known) -> None:
        self.asked -= 1  # init_samples counts the proposals the loop runs
        if self._new_order == arch.arch_id:
            del self.orders[arch.arch_id]

    def warmup(self):
        return "init_samples", self.options["init_samples"]

    def tell(self, result) -> None:
        values = self.enc.index(result.arch)
        if values is None:  # off our grid (not proposed by us): nothing to learn from
            return
        order = self.orders.pop(result.arch_id, None)
        if not full_fidelity(result):
            self.partial.append(result.arch_id)
            return
        scores = self.objective.values(result)
        self.hist_values.append(values)
        self.hist_orders.append(order)
        self.hist_scores.append([math.nan] * len(self.objective.names) if scores is None else list(scores))

    # -- state ----------------------------------------------------------------------------------------------
    def state_dict(self):
        return copy.deepcopy({
            "rng": self.rng.bit_generator.state, "gen": self.gen.get_state(), "queue": self.queue,
            "hist_values": self.hist_values, "hist_orders": self.hist_orders, "hist_scores": self.hist_scores,
            "orders": self.orders, "partial": self.partial, "asked": self.asked, "rounds": self.rounds,
            "net": None if self.net is None else self.net.state_dict(),
            "opt": None if self.opt is None else self.opt.state_dict()})

    def load_state_dict(self, state):
        state = copy.deepcopy(state)
        self.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"])
        self.hist_values, self.hist_orders, self.hist_scores = state["hist_values"], state["hist_orders"], state["hist_scores"]
        self.orders, self.queue, self.partial = state["orders"], [tuple(q) for q in state["queue"]], state["partial"]
        self.asked, self.rounds = state["asked"], state["rounds"]
        self.net = self.opt = None
        if state["net"] is not None:
            with torch.random.fork_rng(devices=[]):
                self.net = GFlowNet(self.enc.n_in, self.enc.n_act, self.enc.D, self.options["hidden"],
                                    self.options["layers"])
            self.net.load_state_dict(state["net"])
            self.opt = self._optimizer(self.net)
            self.opt.load_state_dict(state["opt"])
