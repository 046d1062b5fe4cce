"""TAS: space (widths, depths, exact FLOPs, discrete build), supernet pieces (CWI, Gumbel K=2, expected
FLOPs, FLOP loss), the search reaching its FLOP target, resume, distillation, and end-to-end CLI runs."""
import io
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import cli
from sparsenas.errors import ConfigError
from sparsenas.ops import count_model
from sparsenas.evaluation import SupernetJob, TrialTask, derive
from sparsenas.space import Arch, EvalContext
from sparsenas.spaces.tas import RATIOS, TasSpace, depth_choices, width_choices
from sparsenas.spaces.tas_supernet import TasSupernet, TasSupernetSearch, cwi, flop_loss, select_k
from sparsenas.training import distillation_loss, train_and_evaluate

DIGITS = (1, 8, 8)
TRAIN = {"epochs": 1, "batch_size": 64, "lr": 0.05, "momentum": 0.9, "weight_decay": 3e-4, "score_lr": 0.1,
         "grad_clip": 5.0}


def context(limit=256):
    return EvalContext(train=dict(TRAIN), device="cpu",
                       data={"name": "digits", "val_fraction": 0.25, "test_fraction": 0.25, "limit": limit})


def cwi_by_definition(x, channels):
    c = x.shape[1]
    return torch.stack([x[:, math.floor(j * c / channels):math.ceil((j + 1) * c / channels)].mean(1)
                        for j in range(channels)], dim=1)


@pytest.mark.parametrize("c,out", [(3, 8), (8, 3), (5, 7), (7, 5), (16, 6), (4, 4), (1, 5)])
def test_cwi_equals_the_floor_ceil_channel_mean(c, out):
    x = torch.randn(2, c, 3, 4)
    assert torch.allclose(cwi(x, out), cwi_by_definition(x, out), atol=1e-6)


def test_width_candidates_are_int_c_r_deduplicated():
    assert RATIOS == (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    assert width_choices(16) == (4, 6, 8, 9, 11, 12, 14, 16)  # hand-checked
    assert width_choices(4) == (1, 2, 3, 4)
    for c in range(1, 80):
        assert width_choices(c) == tuple(sorted({int(c * r) for r in RATIOS} - {0}))
    space = TasSpace(C=16, depth=32)
    dims = space.dims()
    assert len(dims) == 1 + 2 * 3 * 5 + 3
    assert dims["stem.w"].choices == width_choices(16) and dims["s1.b3.a"].choices == width_choices(32)
    assert dims["s2.b0.b"].choices == width_choices(64) and dims["s0.depth"].choices == (1, 3, 5)
    assert depth_choices(9) == (1, 3, 5, 7, 9) and depth_choices(4) == (1, 3, 4) and depth_choices(3) == (1, 2, 3)


def test_bad_options_are_config_errors():
    for bad in ({"depth": 21}, {"C": 0}, {"ratios": []}, {"ratios": [1.5]}, {"kd_alpha": 2.0},
                {"C": 1, "ratios": [0.3]}):
        with pytest.raises(ConfigError):
            TasSpace(**bad)


def test_flops_and_params_exact_on_a_hand_checked_network():
    space = TasSpace(C=4, depth=8)  # one block per stage
    full = space.full_arch()
    net = space.build(full, DIGITS, 10)
    m = count_model(net, DIGITS)
    # stem 8·8·1·4·9; s0 8·8·(4·4·9 + 4·4·9); s1 (4×4, stride 2) 16·(4·8·9 + 8·8·9 + 4·8 shortcut);
    # s2 (2×2) 4·(8·16·9 + 16·16·9 + 8·16); classifier 16·10
    assert m["flops"] == 2304 + 18432 + 14336 + 14336 + 160 == space.flops(full, DIGITS, 10)
    conv = 36 + 2 * 144 + (288 + 576 + 32) + (1152 + 2304 + 128)
    bn = 2 * (4 + 4 + 4 + 8 + 8 + 8 + 16 + 16 + 16)
    assert m["params"] == conv + bn + 16 * 10 + 10 and m["sparsity"] == 0.0
    # a width change inside stage 0 adds a 1×1 projection shortcut (4 → 3 channels at 8×8)
    small = full.replace(**{"s0.b0.b": 3})
    assert space.flops(small, DIGITS, 10) == count_model(space.build(small, DIGITS, 10), DIGITS)["flops"]
    assert space.flops(small, DIGITS, 10) == 2304 + 64 * (144 + 108 + 12) + 16 * (3 * 8 * 9 + 576 + 24) + 14336 + 160


def test_every_sampled_arch_builds_a_smaller_dense_net_with_exact_flops():
    space = TasSpace(C=4)
    rng = np.random.default_rng(0)
    full = count_model(space.build(space.full_arch(), DIGITS, 10), DIGITS)
    for _ in range(15):
        arch = space.sample(rng)
        net = space.build(arch, DIGITS, 10)
        m = count_model(net, DIGITS)
        assert m["flops"] == space.flops(arch, DIGITS, 10) and m["flops"] <= full["flops"]
        assert net.stem[0].out_channels == arch["stem.w"] and len(net.blocks) == sum(
            arch[f"s{s}.depth"] for s in range(3))
        out = net(torch.randn(5, *DIGITS))
        out.sum().backward()
        assert out.shape == (5, 10)


def test_gumbel_selects_two_distinct_candidates_with_differentiable_weights():
    g = torch.Generator().manual_seed(0)
    alpha = torch.zeros(6, requires_grad=True)
    seen = set()
    for _ in range(50):
        index, probs = select_k(alpha, 1.0, 2, g)
        assert len(set(index)) == 2 and abs(float(probs.detach().sum()) - 1) < 1e-6
        seen.update(index)
    (probs[0] * 3).backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0 and seen == set(range(6))
    index, probs = select_k(torch.zeros(1), 1.0, 2, g)
    assert index == [0] and probs.tolist() == [1.0]
    peaked = torch.tensor([0.0, 0.0, 50.0, 0.0])
    assert all(2 in select_k(peaked, 1.0, 2, g)[0] for _ in range(20))


def test_expected_flops_equal_the_exact_flops_of_a_one_hot_arch():
    space = TasSpace(C=4)
    net = TasSupernet(space, DIGITS, 10)
    rng = np.random.default_rng(3)
    for _ in range(5):
        arch = space.sample(rng)
        # block outputs as wide as their inputs: no stride-1 projection shortcut (not in E, as in TAS)
        arch = arch.replace(**{f"s0.b{j}.b": arch["stem.w"] for j in range(3)},
                            **{f"s{s}.b{j}.b": arch[f"s{s}.b0.b"] for s in (1, 2) for j in (1, 2)})
        with torch.no_grad():
            for label, a, choices in zip(net.labels, net.alpha, net.choices):
                a.fill_(0).data[choices.index(arch[label])] = 60.0
            net.beta.fill_(0)
            for s in range(3):
                net.beta[s, space.depths.index(arch[f"s{s}.depth"])] = 60.0
        exact = space.flops(arch, DIGITS, 10)
        assert abs(float(net.expected_flops().detach()) - exact) < 1e-3 * exact
    with torch.no_grad():
        for a in net.alpha:
            a.fill_(0)
        net.beta.fill_(0)
    e = net.expected_flops()
    e.backward()
    assert all(a.grad.abs().sum() > 0 for a in net.alpha) and net.beta.grad.abs().sum() > 0
    # deeper is costlier: raising P(depth = N) of stage 0 raises E
    assert net.beta.grad[0, -1] > 0 > net.beta.grad[0, 0]


def test_flop_loss_follows_the_tas_rule():
    e = torch.tensor(100.0)
    assert float(flop_loss(e, 40, 50, 5)) == pytest.approx(-math.log(100))   # too small: raise E
    assert float(flop_loss(e, 51, 50, 5)) == pytest.approx(math.log(100))    # too large: lower E
    assert float(flop_loss(e, 47, 50, 5)) == 0.0 and float(flop_loss(e, 45, 50, 5)) == 0.0


def test_supernet_forward_mixes_widths_and_exits():
    space = TasSpace(C=4)
    net = TasSupernet(space, DIGITS, 10)
    g = torch.Generator().manual_seed(0)
    out = net(torch.randn(4, *DIGITS), net.sample(5.0, g))
    out.sum().backward()
    assert out.shape == (4, 10) and net.stem.conv.weight.grad is not None
    net = TasSupernet(space, DIGITS, 10)  # fresh BatchNorm statistics
    # with the full widths and depths selected, the supernet is a plain ResNet: BN of the widest choice only
    one = torch.ones(1)
    full = ([([len(c) - 1], one) for c in net.choices], F.one_hot(torch.tensor([2, 2, 2]), 3).float())
    net.eval()
    ref = space.build(space.full_arch(), DIGITS, 10).eval()
    ref.stem[0].weight.data.copy_(net.stem.conv.weight)
    for block, sb in zip(ref.blocks, [b for stage in net.stages for b in stage]):
        block.conv_a[0].weight.data.copy_(sb.conv_a.conv.weight)
        block.conv_b[0].weight.data.copy_(sb.conv_b.conv.weight)
        if sb.shortcut is not None:
            block.shortcut[-2].weight.data.copy_(sb.shortcut.conv.weight)
    ref.classifier.load_state_dict(net.classifier.state_dict())
    x = torch.randn(3, *DIGITS)
    assert torch.allclose(net(x, full), ref(x), atol=1e-5)


def run_search(space, options, epochs_first=None, seed=0, ctx=None):
    search = TasSupernetSearch(space, ctx or context(), seed, options)
    results = [search.run_epoch(e) for e in range(search.epochs if epochs_first is None else epochs_first)]
    return search, results


@pytest.mark.parametrize("target,tolerance", [(0.5, 0.05), (0.3, 0.05), (0.5, 0.025)])
def test_search_reaches_the_flop_target_on_resnet20(target, tolerance):
    """TAS's tolerance is 0.05·F_max (ratio points); with 0.025 the found net is within 5% of the target."""
    space = TasSpace(C=4, depth=20)
    search, results = run_search(space, {"epochs": 12, "flop_ratio": target, "flop_tolerance": tolerance})
    full = count_model(space.build(space.full_arch(), DIGITS, 10), DIGITS)["flops"]
    derived = count_model(space.build(search.derive(), DIGITS, 10), DIGITS)["flops"]
    assert abs(derived / full - target) <= tolerance, (derived / full, [r[0]["flops_ratio"] for r in results])
    assert results[-1][0]["flops_ratio"] == pytest.approx(space.flops(search.current(), DIGITS, 10) / full)
    assert set(results[0][0]) >= {"train_loss", "val_loss", "flop_loss", "tau", "flops_ratio", "val_acc"}
    assert results[0][0]["tau"] == 10.0 and results[-1][0]["tau"] < 0.2


def test_search_state_round_trips_through_torch_load_weights_only():
    space = TasSpace(C=4, depth=8)
    opts = {"epochs": 3, "flop_ratio": 0.4}
    straight, results = run_search(space, opts)
    first, _ = run_search(space, opts, epochs_first=2)
    buf = io.BytesIO()
    torch.save({"epoch": 2, "search": first.state_dict()}, buf)
    buf.seek(0)
    resumed = TasSupernetSearch(space, context(), 0, opts)
    resumed.load_state_dict(torch.load(buf, weights_only=True)["search"])
    assert resumed.run_epoch(2)[0] == results[2][0]
    assert resumed.derive() == straight.derive()
    before = {k: v.clone() for k, v in straight.model.state_dict().items()}
    assert 0 <= straight.val_accuracy() <= 1  # evaluation leaves the BatchNorm running statistics alone
    assert all(torch.equal(before[k], v) for k, v in straight.model.state_dict().items() if "num_batches" not in k)
    with pytest.raises(ConfigError):
        TasSupernetSearch(space, context(), 0, {"flop_ratio": 0.0})
    with pytest.raises(ConfigError):
        TasSupernetSearch(space, context(), 0, {"bogus": 1})


def test_distillation_loss_is_the_tas_formula():
    s, t, y = torch.randn(6, 10), torch.randn(6, 10), torch.randint(0, 10, (6,))
    assert torch.allclose(distillation_loss(s, t, y, 0.0, 4.0), F.cross_entropy(s, y))
    p = F.softmax(t / 4, 1)
    kl = (p * (p.log() - F.log_softmax(s / 4, 1))).sum(1).mean()
    assert torch.allclose(distillation_loss(s, t, y, 0.9, 4.0), 0.1 * F.cross_entropy(s, y) + 0.9 * 16 * kl)


def test_training_with_a_teacher_leaves_the_teacher_untouched_and_follows_it():
    from sparsenas.data import load_data

    data = load_data(context().data)
    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))  # a random, confident labeller
    teacher[1].weight.data.mul_(20)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    space = TasSpace(C=4, depth=8)
    student = space.build(space.full_arch(), DIGITS, 10)
    m = train_and_evaluate(student, data, dict(TRAIN, epochs=6), 0, "cpu", teacher=teacher, kd_alpha=1.0)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    with torch.no_grad():
        x, y = data.val
        agree = float((student.eval()(x).argmax(1) == teacher(x).argmax(1)).float().mean())
        teacher_acc = float((teacher(x).argmax(1) == y).float().mean())
    # a=1: the student learns the teacher's labelling, not the true labels
    assert agree > 0.5 and agree > m["val_acc"] + 0.2 and teacher_acc < 0.3, (agree, m["val_acc"], teacher_acc)


def test_distill_trial_reports_teacher_metrics_and_trains_the_teacher_once(monkeypatch):
    import sparsenas.spaces.tas as tas

    space = TasSpace(C=4, depth=8)
    ctx = context(128)
    calls = []
    real = tas.train_and_evaluate
    monkeypatch.setattr(tas, "train_and_evaluate", lambda *a, **k: calls.append(k.get("teacher")) or real(*a, **k))
    monkeypatch.setattr(tas, "_TEACHERS", {})
    rng = np.random.default_rng(0)
    for _ in range(2):
        m = space.evaluate(space.sample(rng), 1, ctx)
        assert {"val_acc", "test_acc", "flops", "params", "teacher_val_acc", "teacher_test_acc"} <= set(m)
    assert [c is None for c in calls] == [True, False, False]  # teacher (no teacher), then two students
    plain = TasSpace(C=4, depth=8, distill=False).evaluate(space.full_arch(), 1, ctx)
    assert "teacher_val_acc" not in plain


FAST = ["--set", "train.epochs=1", "--set", "data.limit=128", "--set", "space.C=4", "--quiet"]


def records(run):
    return [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]


def test_cli_random_search_on_tas_writes_the_run_contract(runs):
    assert cli("search", "--space", "tas", "--strategy", "random", "--budget", 2, "--name", "r", "--runs-dir", runs,
               *FAST) == 0
    run = runs / "r"
    recs = records(run)
    assert [r["status"] for r in recs] == ["ok", "ok"] and len({r["arch_id"] for r in recs}) == 2
    for r in recs:
        assert {"val_acc", "test_acc", "flops", "params", "teacher_val_acc"} <= set(r["metrics"])
        assert r["label"].startswith("stem")
    for name in ("config.yaml", "best.json", "pareto.csv", "state/checkpoint.json"):
        assert (run / name).is_file()


def test_cli_differentiable_search_on_tas_trains_the_derived_arch(runs):
    assert cli("search", "--space", "tas", "--strategy", "differentiable", "--name", "d", "--runs-dir", runs, *FAST,
               "--set", "strategy.options.epochs=2") == 0
    run = runs / "d"
    (rec,) = records(run)
    assert rec["status"] == "ok" and "teacher_val_acc" in rec["metrics"]
    saved = torch.load(run / "state" / "supernet.pt", weights_only=True)
    assert saved["epoch"] == 2 and len(saved["search"]["history"]) == 2
    assert rec["arch"] in [h["arch"] for h in saved["search"]["history"]]


def test_killed_supernet_search_resumes_from_its_last_epoch(monkeypatch):
    """A supernet job's per-epoch checkpoint (torch.load weights_only) carries the TAS state."""
    space = TasSpace(C=4, depth=8)
    task = TrialTask(0, Arch({}), 0, SupernetJob({"epochs": 3, "flop_ratio": 0.4}, 0))
    clean = derive(space, context(), task, None)
    real, ran, reports = TasSupernetSearch.run_epoch, [], []

    def dies_at_epoch_2(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(TasSupernetSearch, "run_epoch", dies_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        derive(space, context(), task, reports.append)
    monkeypatch.setattr(TasSupernetSearch, "run_epoch", lambda self, epoch: ran.append(epoch) or real(self, epoch))
    resumed = derive(space, context(), TrialTask(0, Arch({}), 0, task.supernet, reports[-1].checkpoint), None)
    assert resumed == clean and ran == [2]
