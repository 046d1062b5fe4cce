"""Tests that fail when search or optimisation logic is made worse: each kills one deliberate bug (a mutation)
that once survived the whole suite (issue #22, part 1). The mutation each one kills is named in its docstring."""
import json

import numpy as np
import optuna
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsenas.integrations.optuna import StrategySampler
from sparsenas.journal import Journal, TrialResult
from sparsenas.objective import Objective, dominates
from sparsenas.ops import SparseLinear
from sparsenas.space import Arch, Categorical, SearchSpace
from sparsenas.sparse_training import SPARSE_TRAINING
from sparsenas.strategies import Unique
from sparsenas.strategies.evolution import RegularizedEvolution
from sparsenas.strategies.opgfn import OPGFN, ordering_loss, pareto_mask
from sparsenas.strategies.tpe import TPE

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Grid(SearchSpace):
    """Four dims of four values; `score` is additive (value i of dim d is worth weight[d, i])."""

    name = "grid4"
    weight = np.array([[0.0, 1.3, 2.9, 0.4], [2.2, 0.1, 1.1, 3.7], [0.6, 3.1, 1.9, 0.2], [1.7, 0.3, 2.6, 3.3]])

    def dims(self):
        return {f"d{i}": Categorical((0, 1, 2, 3)) for i in range(4)}

    def score(self, arch):
        return float(sum(self.weight[i, arch[f"d{i}"]] for i in range(4)))


def ok(trial, arch, **metrics):
    return TrialResult(trial, arch, "", "ok", {k: float(v) for k, v in metrics.items()})


# -- OP-GFN ---------------------------------------------------------------------------------------------------
def test_ordering_loss_scores_a_tie_one_half():
    """Kills: ties scored 0 instead of ½ in the OP-TB pairwise target. A tie is symmetric: its loss is the same
    whichever trajectory is predicted higher, and smallest (zero gradient) when both are predicted equal."""
    reward = torch.tensor([0.5, 0.5])
    one_pair = torch.tensor([1, 1])  # only the pair (0, 1): perm[1] == 1 is skipped
    loss = {d: float(ordering_loss(torch.tensor([d, 0.0]), reward, one_pair)) for d in (-2.0, -1.0, 0.0, 1.0, 2.0)}
    assert loss[1.0] == pytest.approx(loss[-1.0]) and loss[2.0] == pytest.approx(loss[-2.0])
    assert loss[0.0] == pytest.approx(np.log(2)) and loss[0.0] < loss[1.0] < loss[2.0]
    pred = torch.tensor([0.3, 0.3], requires_grad=True)
    ordering_loss(pred, reward, one_pair).backward()
    assert torch.allclose(pred.grad, torch.zeros(2))
    # a strict order: the target is 1 for the better one
    better = torch.tensor([1.0, 0.0])
    assert float(ordering_loss(torch.tensor([3.0, 0.0]), better, one_pair)) < 0.05
    assert float(ordering_loss(torch.tensor([0.0, 3.0]), better, one_pair)) > 3.0


def test_pareto_mask_keeps_exactly_the_non_dominated_rows():
    """Kills: dominance reversed in `pareto_mask` (OP-GFN's multi-objective target)."""
    values = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.2], [0.5, 0.4], [np.nan, 5.0], [1.0, 0.0]])
    assert pareto_mask(values).tolist() == [True, True, True, False, False, False, True]
    rng = np.random.default_rng(0)
    for _ in range(20):
        points = rng.integers(0, 4, size=(12, 3)).astype(float)
        expected = [not any(dominates(q, p) for q in points) for p in points]
        assert pareto_mask(points).tolist() == expected


def test_opgfn_proposes_the_candidates_with_the_highest_predicted_reward():
    """Kills: proxy sampling keeps the lowest predicted rewards instead of the highest. The proposals of a round
    are the top `batch_size` (by the model's own predicted log-reward) of the `proxy_factor · batch_size`
    candidates it sampled, and the model (trained on an additive score) ranks them well above the rest."""
    space = Grid()
    strategy = OPGFN(space, Objective(["val_acc"]), 0, init_samples=20, batch_size=5, proxy_factor=8,
                     train_steps_init=60, replay_steps=0, hidden=32)
    for trial in range(20):
        arch = strategy.ask()
        strategy.tell(ok(trial, arch, val_acc=space.score(arch)))
    sampled = []
    original = strategy._sample_forward
    strategy._sample_forward = lambda n: sampled.append(original(n)) or sampled[-1]
    chosen = [strategy.ask() for _ in range(5)]
    assert len(sampled) == 1 and len(sampled[0][0]) == 40
    values, orders = sampled[0]
    with torch.no_grad():
        pred = strategy._trajectory_terms(values, orders)[0].numpy()
    archs = [strategy.enc.arch(v) for v in values]
    told = {strategy.enc.arch(v).arch_id for v in strategy.hist_values}
    best_pred = {}  # each new arch's highest prediction over its sampled trajectories
    for p, arch in zip(pred, archs):
        if arch.arch_id not in told:
            best_pred[arch.arch_id] = max(p, best_pred.get(arch.arch_id, -np.inf))
    top = sorted(best_pred, key=best_pred.get, reverse=True)[:5]
    assert [a.arch_id for a in chosen] == top
    truth = {a.arch_id: space.score(a) for a in archs}
    assert np.mean([truth[a.arch_id] for a in chosen]) > np.mean(list(truth.values()))


# -- regularized evolution ------------------------------------------------------------------------------------
def test_evolution_mutates_the_best_of_the_tournament():
    """Kills: the worst member of the tournament mutated instead of the best. With the tournament as large as the
    population, every child is the best member with one dim changed."""
    space = Grid()
    strategy = RegularizedEvolution(space, Objective(["val_acc"]), 0, population=4, sample_size=4)
    members = [Arch({f"d{i}": v for i in range(4)}) for v in range(4)]  # pairwise different in every dim
    scores = [0.2, 0.9, None, 0.5]  # member 2 failed
    for trial, (arch, score) in enumerate(zip(members, scores)):
        assert strategy.ask() is not None
        strategy.tell(ok(trial, arch, val_acc=score) if score is not None
                      else TrialResult(trial, arch, "", "failed", {}, error="boom"))
    for _ in range(20):
        child = strategy.ask()
        assert sum(child[k] != members[1][k] for k in child) == 1, child


# -- TPE ------------------------------------------------------------------------------------------------------
def test_tpe_tells_each_direction_and_an_infeasible_trial_as_the_worst():
    """Kills: every direction told to Optuna as "maximize"; an infeasible trial told +inf (the best) instead of
    the worst value of each direction."""
    space = Grid()
    objective = Objective(["val_acc"], ["cost"], {"cost": [None, 5.0]})
    strategy = TPE(space, objective, 0, n_startup_trials=2)
    assert [d.name for d in strategy.study.directions] == ["MAXIMIZE", "MINIMIZE"]
    arch = strategy.ask()
    strategy.tell(TrialResult(0, arch, "", "infeasible", {"cost": 9.0}, error="cost"))
    arch = strategy.ask()
    strategy.tell(ok(1, arch, val_acc=0.3, cost=1.0))
    infeasible, feasible = strategy.study.trials
    assert infeasible.values == [-np.inf, np.inf] and feasible.values == [0.3, 1.0]
    assert [t.number for t in strategy.study.best_trials] == [1]
    single = TPE(space, Objective([], ["cost"]), 0)
    assert [d.name for d in single.study.directions] == ["MINIMIZE"]
    single.tell(TrialResult(0, single.ask(), "", "infeasible", {}, error="cost"))
    assert single.study.trials[0].values == [np.inf]


# -- StrategySampler ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["set_constraint", "constraints_list"])
def test_strategy_sampler_tells_a_trial_that_breaks_an_optuna_constraint_infeasible(form, monkeypatch):
    """Kills: `StrategySampler` ignoring Optuna constraints (a violating trial told as ok)."""
    told = []
    original = Unique.tell
    monkeypatch.setattr(Unique, "tell", lambda self, result: (told.append(result), original(self, result)))

    def objective(trial):
        x = trial.suggest_int("x", 0, 9)
        trial.suggest_categorical("c", ["a", "b"])
        if form == "set_constraint":
            trial.set_constraint("x<=4", x - 4)
        else:  # the key Optuna's samplers' constraints_func writes
            trial.storage.set_trial_system_attr(trial._trial_id, "constraints", [x - 4.0, -1.0])
        return float(x)

    study = optuna.create_study(direction="maximize", sampler=StrategySampler("evolution", seed=0, population=4))
    study.optimize(objective, n_trials=12)
    assert len(told) >= 10
    for result in told:
        assert result.status == ("infeasible" if result.arch["x"] > 4 else "ok"), result
    assert {r.status for r in told} == {"ok", "infeasible"}


# -- RigL -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_rigl_zeroes_the_optimizer_state_of_regrown_weights_only(optimizer):
    """Kills: the regrown weights' optimizer momentum not reset (they would start with the momentum of
    their old, dropped value)."""
    layer = SparseLinear(4, 1, bias=False, keep=0.5, mask_mode="random")
    layer.set_mask(torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.1, 3.0, 1.0, 1.0]]))
    model = nn.Sequential(layer)
    opt = (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=0.1))
    trainer = SPARSE_TRAINING.get("rigl")(model, 100, optimizer=opt, update_interval=1, drop_fraction=0.9)
    F.mse_loss(layer(torch.tensor([[1.0, 1.0, 1.0, 5.0]])), torch.ones(1, 1)).backward()
    opt.step()
    keys = ["momentum_buffer"] if optimizer == "sgd" else ["exp_avg", "exp_avg_sq"]
    for key in keys:
        opt.state[layer.weight][key].fill_(1.0)  # as after a long training with these weights active
    trainer.step(0)  # drops weight 0 (smallest |w|), regrows weight 3 (largest dense |grad|)
    assert layer.mask().tolist() == [[0.0, 1.0, 0.0, 1.0]]
    for key in keys:
        assert opt.state[layer.weight][key].tolist() == [[1.0, 1.0, 1.0, 0.0]], key


# -- journal --------------------------------------------------------------------------------------------------
def test_a_valid_unterminated_last_line_is_completed_so_the_next_append_starts_a_new_line(tmp_path):
    """Kills: an unterminated but valid last line left as it is on load (the next append would join it to the new
    record, and both would be lost)."""
    path = tmp_path / "trials.jsonl"
    records = [json.dumps(ok(t, Arch({"x": t}), val_acc=t / 10).to_record()) for t in range(2)]
    path.write_text(records[0] + "\n" + records[1])  # a crash after the record, before its newline
    assert [r.trial for r in Journal(path).load()] == [0, 1]
    assert path.read_text() == records[0] + "\n" + records[1] + "\n"
    journal = Journal(path)
    journal.append(ok(2, Arch({"x": 2}), val_acc=0.2))
    assert [r.trial for r in journal.read()] == [0, 1, 2]
    assert [r.trial for r in Journal(path).load()] == [0, 1, 2]
    assert not journal.corrupt_path.exists()
