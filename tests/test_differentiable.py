import json

import pytest
import torch
import torch.nn.functional as F

from conftest import FAST, cli
from sparsenas.config import CORE
from sparsenas.errors import ConfigError
from sparsenas.evaluation import SupernetJob, TrialTask, derive, run_trial
from sparsenas.objective import Objective
from sparsenas.space import Arch, Categorical, EvalContext, SearchSpace, SuperNet, SupernetSearch
from sparsenas.spaces.dass import DassSpace
from sparsenas.spaces.dass_supernet import EDGES
from sparsenas.strategies.differentiable import DifferentiableSearch

TINY = {"pretrain_epochs": 1, "prune_epochs": 1, "finetune_epochs": 1, "batch_size": 64}


def context(limit=128):
    data = {k: f.default for k, f in CORE["data"].items()} | {"limit": limit}
    return EvalContext(train={k: f.default for k, f in CORE["train"].items()}, data=data)


@pytest.fixture(scope="module")
def search():
    return DassSpace(C=4).supernet_search(context(), 0, {**TINY, "keep": 0.2})


def test_phases_prune_to_the_target_keep_ratio(search):
    assert search.epochs == 3 and [search.phase_of(e) for e in range(3)] == ["pretrain", "prune", "finetune"]
    scalars, text = search.run_epoch(0)
    assert scalars["sparsity"] == 0.0 and "genotype" in text
    scores_before = [s.detach().clone() for s in search.model.scores()]
    weights_before = [w.detach().clone() for w in search.model.weights()]
    search.run_epoch(1)
    assert search.sparsity() == pytest.approx(0.8, abs=0.01)
    assert any(not torch.equal(a, b) for a, b in zip(scores_before, search.model.scores()))
    assert all(torch.equal(a, b) for a, b in zip(weights_before, search.model.weights()))  # frozen in prune
    masks = [layer.mask().clone() for layer in search.model.sparse_layers()]
    search.run_epoch(2)
    assert all(torch.equal(a, layer.mask()) for a, layer in zip(masks, search.model.sparse_layers()))


def test_alpha_learns_from_the_masked_validation_loss(search):
    search._enter("finetune")
    x, y = search.val_split[0][:32], search.val_split[1][:32]
    masked = F.cross_entropy(search.model(x), y)
    for a in search.model.alphas():
        a.grad = None
    masked.backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in search.model.alphas())
    for layer in search.model.sparse_layers():
        layer.keep = 1.0
    with torch.no_grad():
        dense = F.cross_entropy(search.model(x), y)
    search._enter("finetune")
    assert float(dense) != pytest.approx(masked.item())


def test_second_order_reduces_to_first_order_at_zero_step(search):
    search._enter("finetune")
    batch_t = (search.train_split[0][:32], search.train_split[1][:32])
    batch_v = (search.val_split[0][:32], search.val_split[1][:32])
    search.model.eval()  # no BN-statistics drift between the two computations
    alphas = search.model.alphas()
    saved = [a.detach().clone() for a in alphas]
    search.a_opt.zero_grad()
    F.cross_entropy(search.model(batch_v[0]), batch_v[1]).backward()
    first = [a.grad.clone() for a in alphas]
    search.o["second_order"] = True
    try:
        search._unrolled_alpha_step(batch_t, batch_v, lr=0.0)
        assert all(torch.allclose(a.grad, f, atol=1e-6) for a, f in zip(alphas, first))
        with torch.no_grad():
            for a, s in zip(alphas, saved):
                a.copy_(s)
        search._unrolled_alpha_step(batch_t, batch_v, lr=0.5)
        assert any(not torch.allclose(a.grad, f, atol=1e-6) for a, f in zip(alphas, first))
    finally:
        search.o["second_order"] = False
        with torch.no_grad():
            for a, s in zip(alphas, saved):
                a.copy_(s)


def test_derive_picks_the_top2_edges_and_never_none(search):
    ops = search.ops
    with torch.no_grad():
        for kind in ("normal", "reduce"):
            a = torch.zeros(EDGES, 1 + len(ops))
            a[:, 0] = 10.0  # `none` strongest everywhere: must still never be chosen
            # node 3 (edges 9..13): make edges from states 1 and 4 win with sep_conv_5x5 and max_pool_3x3
            a[9 + 1, 1 + ops.index("sep_conv_5x5")] = 5.0
            a[9 + 4, 1 + ops.index("max_pool_3x3")] = 5.0
            search.model.alpha[kind].copy_(a)
    arch = search.derive()
    assert arch["normal.n3.inputs"] == "1-4"
    assert arch["normal.n3.op0"] == "sep_conv_5x5" and arch["normal.n3.op1"] == "max_pool_3x3"
    assert arch["reduce.keep"] == 0.2 and "none" not in arch.values()
    assert DassSpace(C=4).validate(arch) == arch


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="keep_ratios"):
        DassSpace().supernet_search(context(), 0, {"keep": 0.33})
    with pytest.raises(ConfigError, match="unknown config key strategy.options.epochz"):
        DassSpace().supernet_search(context(), 0, {"epochz": 1})


class CountingSearch(SupernetSearch):
    epochs = 4
    defaults = {"a": 0}

    def __init__(self, space=None, context=None, seed=0, options=None):
        self.ran, self.weight, self.threads = [], torch.zeros(1), []

    def run_epoch(self, epoch):
        self.ran.append(epoch)
        self.threads.append(torch.get_num_threads())
        self.weight += 1
        return {"loss": float(epoch)}, {"genotype": str(epoch)}

    def derive(self):
        return Arch({"x": int(self.weight.item())})

    def state_dict(self):
        return {"weight": self.weight.clone()}

    def load_state_dict(self, state):
        self.weight = state["weight"].clone()


class FakeSuperSpace(SearchSpace, SuperNet):
    name = "fake"

    def __init__(self):
        super().__init__()
        self.searches = []

    def dims(self):
        return {"x": Categorical(list(range(10)))}

    def supernet_search_class(self):
        return CountingSearch

    def supernet_search(self, context, seed, options):
        self.searches.append(CountingSearch())
        return self.searches[-1]

    def evaluate(self, arch, seed, context):
        return {"val_acc": arch["x"] / 10}


def test_the_strategy_proposes_one_supernet_job_and_learns_the_derived_arch():
    space = FakeSuperSpace()
    strategy = DifferentiableSearch(space, Objective(), 3, options={"a": 1})
    job = strategy.ask()
    assert job == SupernetJob({"a": 1}, 3) and strategy.ask() is None
    result = run_trial(space, Objective(), context(), TrialTask(0, Arch({}), 7, job))
    assert result.ok and result.arch == Arch({"x": 4}) and result.metrics["val_acc"] == 0.4
    strategy.tell(result)
    resumed = DifferentiableSearch(space, Objective(), 3, options={"a": 1})
    resumed.load_state_dict(json.loads(json.dumps(strategy.state_dict())))
    assert resumed.ask() is None and resumed.derived == Arch({"x": 4})


def test_a_supernet_trial_reports_every_epoch_runs_with_the_trial_threads_and_resumes_from_a_report():
    space, reports = FakeSuperSpace(), []
    task = TrialTask(0, Arch({}), 0, SupernetJob({}, 0))
    torch.set_num_threads(2)
    ctx = context()
    ctx.threads = 1
    result = run_trial(space, Objective(), ctx, task, progress=reports.append)
    assert result.ok and result.arch == Arch({"x": 4})
    assert space.searches[0].ran == [0, 1, 2, 3] and space.searches[0].threads == [1, 1, 1, 1]
    assert [(r.epoch, r.epochs, r.scalars["loss"], r.text["genotype"]) for r in reports] == \
        [(e, 4, float(e), str(e)) for e in range(4)]
    # killed after epoch 2: the loop kept its report's checkpoint (torch.load weights_only=True)
    saved = torch.load(__import__("io").BytesIO(reports[1].checkpoint), weights_only=True)
    assert saved["epoch"] == 2 and saved["trial"] == 0
    assert derive(space, ctx, TrialTask(0, Arch({}), 0, SupernetJob({}, 0), reports[1].checkpoint), None) == \
        Arch({"x": 4})
    assert space.searches[1].ran == [2, 3]


def test_a_failing_supernet_search_is_a_failed_trial():
    space = FakeSuperSpace()
    space.supernet_search = lambda context, seed, options: 1 / 0
    result = run_trial(space, Objective(), context(), TrialTask(0, Arch({}), 0, SupernetJob({}, 0)))
    assert result.status == "failed" and "ZeroDivisionError" in result.error and result.label == "supernet search"


def test_cli_differentiable_search_yields_the_requested_sparsity(runs):
    assert cli("search", "--space", "dass", "--strategy", "differentiable", "--name", "d", "--runs-dir", runs, *FAST,
               "--set", "strategy.options={pretrain_epochs: 1, prune_epochs: 1, finetune_epochs: 1, keep: 0.2}") == 0
    records = [json.loads(line) for line in (runs / "d" / "trials.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["status"] == "ok"
    assert records[0]["metrics"]["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert records[0]["arch"]["normal.keep"] == 0.2 and (runs / "d" / "state" / "supernet.pt").is_file()


def test_cli_supernet_epochs_show_in_the_progress_bar_and_a_killed_search_resumes_from_its_epoch(runs, capsys,
                                                                                                  monkeypatch):
    from sparsenas.spaces.dass_supernet import DassSupernetSearch

    args = ["search", "--space", "dass", "--strategy", "differentiable", "--name", "d", "--runs-dir", runs, *FAST,
            "--set", "strategy.options={pretrain_epochs: 1, prune_epochs: 1, finetune_epochs: 1, keep: 0.2}"]
    real, ran = DassSupernetSearch.run_epoch, []

    def killed_at_epoch_2(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        ran.append(epoch)
        return real(self, epoch)

    monkeypatch.setattr(DassSupernetSearch, "run_epoch", killed_at_epoch_2)
    assert cli(*[a for a in args if a != "--quiet"]) == 130
    assert "trial 0 supernet" in capsys.readouterr().err  # the epoch bar
    assert torch.load(runs / "d" / "state" / "supernet.pt", weights_only=True)["epoch"] == 2
    monkeypatch.setattr(DassSupernetSearch, "run_epoch", lambda self, epoch: ran.append(epoch) or real(self, epoch))
    assert cli("search", "--resume", "--name", "d", "--runs-dir", runs, "--quiet") == 0
    assert ran == [0, 1, 2]
    (record,) = [json.loads(line) for line in (runs / "d" / "trials.jsonl").read_text().splitlines()]
    assert record["status"] == "ok" and record["arch"]["normal.keep"] == 0.2


class OpCostLut:
    """A lookup-table stand-in: convolutions cost 1 ms, pooling and skip nothing."""

    def module_ms(self, module, input_shape):
        return float(sum(isinstance(m, torch.nn.Conv2d) for m in module.modules()))


def test_expected_latency_term_steers_alpha_to_cheap_ops():
    ctx = context()
    with pytest.raises(ConfigError, match="latency.predictor=lut"):
        DassSpace(C=4).supernet_search(ctx, 0, {**TINY, "latency_weight": 1.0})
    ctx.latency = type("LatencyObjective", (), {"predictor": OpCostLut()})()
    search = DassSpace(C=4).supernet_search(ctx, 0, {**TINY, "keep": 0.2, "latency_weight": 5.0, "arch_lr": 0.05})
    table = search.op_ms["normal"]
    assert table[:, 0].sum() == 0 and table[0, 1 + search.ops.index("sep_conv_3x3")] > 0
    assert table[0, 1 + search.ops.index("max_pool_3x3")] == 0
    before = search.expected_latency().item()
    scalars, _ = search.run_epoch(0)
    assert scalars["expected_latency_ms"] < before
    arch = search.derive()
    cheap = {"max_pool_3x3", "avg_pool_3x3", "skip_connect"}
    ops = [v for k, v in arch.items() if ".op" in k]
    assert sum(op in cheap for op in ops) > len(ops) // 2
