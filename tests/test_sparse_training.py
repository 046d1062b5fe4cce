"""SET / RigL keep nnz constant and really move masks; IMP prunes and rewinds; random baseline."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsenas.errors import ConfigError
from sparsenas.ops import SparseConv2d, SparseLinear
from sparsenas.sparse_training import SPARSE_TRAINING, make_sparse_trainer, randomize_masks, sparse_layers


def _net(mode="random", keep=0.2):
    torch.manual_seed(0)
    return nn.Sequential(SparseConv2d(1, 4, 3, padding=1, keep=keep, mask_mode=mode), nn.ReLU(), nn.Flatten(),
                         SparseLinear(4 * 6 * 6, 32, keep=keep, mask_mode=mode), nn.ReLU(), nn.Linear(32, 3))


def _train(model, trainer_name, steps=40, run=None, **options):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    trainer = SPARSE_TRAINING.get(trainer_name)(model, steps, optimizer=opt, **options)
    g = torch.Generator().manual_seed(0)
    history = []
    for step in range(steps if run is None else run):
        x = torch.randn(16, 1, 6, 6, generator=g)
        y = torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        trainer.step(step)
        history.append([layer.mask().clone() for layer in sparse_layers(model)])
    return trainer, history


@pytest.mark.parametrize("method", ["set", "rigl"])
@pytest.mark.parametrize("mode", ["random", "scores", "magnitude"])
def test_drop_grow_keeps_nnz_and_changes_masks(method, mode):
    model = _net(mode)
    before = [int(layer.mask().sum()) for layer in sparse_layers(model)]
    start = [layer.mask().clone() for layer in sparse_layers(model)]
    trainer, history = _train(model, method, steps=40, update_interval=5)
    assert trainer.updates == 5  # updates after steps 5, 10, ..., 25 (stop at 0.75 · 40 = 30)
    for masks in history:
        assert [int(m.sum()) for m in masks] == before
    assert all(not torch.equal(a, b) for a, b in zip(start, history[-1]))
    assert torch.equal(history[29][0], history[-1][0])  # no update after the stop step
    for layer in sparse_layers(model):
        assert int(torch.count_nonzero(layer.effective_weight())) <= int(layer.mask().sum())


def test_drop_fraction_is_cosine_annealed():
    trainer = SPARSE_TRAINING.get("set")(_net(), 100, update_interval=10, drop_fraction=0.3, stop_fraction=0.8)
    assert trainer.fraction(0) == pytest.approx(0.3)
    assert trainer.fraction(40) == pytest.approx(0.15)
    assert trainer.fraction(80) == pytest.approx(0.0)
    assert [s for s in range(100) if trainer.is_update(s)] == [9, 19, 29, 39, 49, 59, 69]


def test_rigl_grows_where_the_dense_gradient_is_largest():
    layer = SparseLinear(4, 1, bias=False, keep=0.5, mask_mode="random")
    model = nn.Sequential(layer)
    layer.set_mask(torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.1, 3.0, 1.0, 1.0]]))
    trainer = SPARSE_TRAINING.get("rigl")(model, 100, update_interval=1, drop_fraction=0.9)
    x = torch.tensor([[1.0, 1.0, 1.0, 5.0]])
    layer(x).sum().backward()  # dense grad = x: the inactive weight 3 has the larger |grad|
    trainer.step(0)  # f ≈ 0.9 → drop int(1.8) = 1 of 2 active (|w| = 0.1), grow 1
    assert layer.mask().tolist() == [[0.0, 1.0, 0.0, 1.0]]
    assert layer.weight[0, 3] == 0.0  # a grown weight starts at zero


def test_imp_prunes_geometrically_and_rewinds():
    model = _net("magnitude", keep=0.25)
    trainer, history = _train(model, "imp", steps=30, imp_rounds=3, rewind_fraction=0.0)
    assert trainer.cycle_steps == 10
    assert [trainer.lr_factor(s) for s in (0, 5, 10, 20, 25)] == pytest.approx([1, 0.5, 1, 1, 0.5])
    counts = [[int(m.sum()) for m in masks] for masks in history]
    sizes = [layer.weight.numel() for layer in sparse_layers(model)]
    assert counts[0] == sizes  # first cycle dense
    assert counts[10] == [round(0.5 * n) for n in sizes]  # 0.25 ** (1/2)
    assert counts[-1] == [round(0.25 * n) for n in sizes]


def test_imp_rewind_restores_init_values():
    model = _net("magnitude", keep=0.25)
    init = [layer.weight.detach().clone() for layer in sparse_layers(model)]
    _train(model, "imp", steps=10, run=5, imp_rounds=2)  # stop right after the prune at step 5
    for layer, w0 in zip(sparse_layers(model), init):
        kept = layer.mask().bool()
        assert torch.equal(layer.weight.detach()[kept], w0[kept])


def test_nm_and_channel_layers_are_refused_by_dynamic_training():
    model = nn.Sequential(SparseLinear(8, 4, mask_mode="2:4"))
    with pytest.raises(ConfigError, match="unstructured"):
        SPARSE_TRAINING.get("rigl")(model, 10)
    with pytest.raises(ConfigError, match="unknown sparse training method"):
        make_sparse_trainer(model, {"sparse_training": "nope"}, 10)


def test_random_baseline_equal_per_layer_counts_paired_by_seed():
    searched = nn.Sequential(SparseLinear(16, 8, keep=0.3), SparseLinear(8, 8, mask_mode="2:4"),
                             SparseConv2d(4, 10, 3, keep=0.4, mask_mode="channel"))
    counts = [layer.k for layer in searched]
    a, b = _clone(searched), _clone(searched)
    randomize_masks(a, seed=3)
    randomize_masks(b, seed=3)
    assert [int(m.mask().sum()) for m in a] == counts
    assert all(torch.equal(x.mask(), y.mask()) for x, y in zip(a, b))
    assert not torch.equal(a[0].mask(), searched[0].mask().detach())
    assert not a[0].scores.requires_grad
    assert (a[1].mask().view(8, 2, 4).sum(-1) == 2).all()
    assert set(a[2].mask().flatten(1).sum(1).tolist()) == {0.0, 36.0}


def _clone(model):
    import copy
    return copy.deepcopy(model)


def _splits():
    from sparsenas.data import Splits

    g = torch.Generator().manual_seed(0)
    part = lambda n: (torch.randn(n, 1, 6, 6, generator=g), torch.randint(0, 3, (n,), generator=g))  # noqa: E731
    return Splits(part(96), part(32), part(32), 3)


TRAIN = {"epochs": 2, "batch_size": 16, "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "score_lr": 0.1,
         "grad_clip": 5.0, "update_interval": 2, "drop_fraction": 0.3, "stop_fraction": 0.75, "imp_rounds": 2,
         "rewind_fraction": 0.0, "mask_baseline": "none"}


@pytest.mark.parametrize("method", ["static", "set", "rigl", "imp"])
def test_train_and_evaluate_runs_each_method(method):
    from sparsenas.training import train_and_evaluate

    model = _net("magnitude", keep=0.25)
    start = [layer.mask().clone() for layer in sparse_layers(model)]
    metrics = train_and_evaluate(model, _splits(), {**TRAIN, "sparse_training": method}, seed=0, device="cpu")
    assert 0 <= metrics["val_acc"] <= 1 and math.isfinite(metrics["train_loss"])
    end = [layer.mask() for layer in sparse_layers(model)]
    assert [int(m.sum()) for m in end] == [int(m.sum()) for m in start]
    assert all(torch.equal(a, b) for a, b in zip(start, end)) == (method == "static")


def test_mask_baseline_random_in_training_is_paired_by_seed():
    from sparsenas.training import train_and_evaluate

    runs = []
    for baseline in ("none", "random", "random"):
        model = _net("scores", keep=0.25)
        train_and_evaluate(model, _splits(), {**TRAIN, "epochs": 1, "sparse_training": "static",
                                              "mask_baseline": baseline}, seed=5, device="cpu")
        runs.append([layer.mask().detach().clone() for layer in sparse_layers(model)])
    searched, rnd_a, rnd_b = runs
    assert [int(m.sum()) for m in rnd_a] == [int(m.sum()) for m in searched]
    assert all(torch.equal(a, b) for a, b in zip(rnd_a, rnd_b))
    assert not torch.equal(rnd_a[1], searched[1])


def test_hydra_pretrains_dense_then_trains_only_scores_then_finetunes_a_fixed_mask():
    model = _net("scores", keep=0.2)
    layers = sparse_layers(model)
    targets = [layer.k for layer in layers]
    trainer, history = _train(model, "hydra", steps=12, hydra_phases=[1, 1, 1])
    assert trainer.starts == [0, 4, 8]
    assert all(int(m.sum()) == m.numel() for m in history[2])          # after step 2: still dense
    assert [int(m.sum()) for m in history[4]] == targets                # pruning to the target keep ratio
    assert not all(torch.equal(a, b) for a, b in zip(history[4], history[7]))  # scores moved the mask
    assert all(torch.equal(a, b) for a, b in zip(history[8], history[-1]))  # finetune: the mask is fixed
    assert all(layer.mask_mode == "fixed" for layer in layers)
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.endswith("scores"))


def test_hydra_freezes_the_weights_while_the_scores_train():
    model = _net("scores", keep=0.2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer = SPARSE_TRAINING.get("hydra")(model, 6, optimizer=opt, hydra_phases=[1, 1, 1])
    g = torch.Generator().manual_seed(0)
    for step in range(6):
        if step == 2:
            weights = {n: p.detach().clone() for n, p in model.named_parameters() if not n.endswith("scores")}
            scores = [layer.scores.detach().clone() for layer in sparse_layers(model)]
        if step == 4:
            assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters() if n in weights)
            assert all(not torch.equal(layer.scores, s) for layer, s in zip(sparse_layers(model), scores))
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(torch.randn(8, 1, 6, 6, generator=g)), torch.randint(0, 3, (8,), generator=g)).backward()
        opt.step()
        trainer.step(step)
    assert trainer.phase == 2
    assert [trainer.lr_factor(s) for s in (0, 2, 4)] == [1.0, 1.0, 1.0]  # one cosine decay per phase
    assert trainer.lr_factor(1) == pytest.approx(0.5)


def test_hydra_on_a_dense_model_trains_it_as_usual():
    model = _net("scores", keep=1.0)
    trainer, _ = _train(model, "hydra", steps=6)
    assert trainer.starts == [0, 6, 6] and all(p.requires_grad for p in model.parameters() if p.dim() > 1)


def test_hydra_keeps_masks_that_are_not_learned_and_trains_them_as_static():
    model = _net("random")
    trainer, history = _train(model, "hydra", steps=6)
    assert trainer.starts == [0, 6, 6]
    assert all(torch.equal(a, b) for a, b in zip(history[0], history[-1]))
