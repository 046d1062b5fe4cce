"""train.warmup_epochs: a linear LR warm-up per step, then the cosine schedule; bad values fail with one line."""
import math

import pytest
import torch
from torch import nn

from conftest import cli
from sparsenas.data import Splits
from sparsenas.training import train_and_evaluate

SGD_STEP = torch.optim.SGD.step
TRAIN = {"epochs": 4, "batch_size": 16, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "score_lr": 0.1,
         "grad_clip": None, "sparse_training": "static", "mask_baseline": "none"}


def _lrs_seen(monkeypatch, **train) -> list[float]:
    """The weights' LR at every optimizer step of a small training (6 steps per epoch)."""
    seen = []

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return SGD_STEP(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    g = torch.Generator().manual_seed(0)
    part = lambda n: (torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g))  # noqa: E731
    train_and_evaluate(nn.Linear(8, 3), Splits(part(96), part(16), part(16), 3), {**TRAIN, **train}, seed=0,
                       device="cpu")
    return seen


def test_warmup_rises_linearly_then_follows_the_cosine(monkeypatch):
    lrs = _lrs_seen(monkeypatch, warmup_epochs=1.5)  # 9 of 24 steps
    total, warm = 24, 9
    assert len(lrs) == total
    assert lrs[:warm] == pytest.approx([0.1 * (s + 1) / warm for s in range(warm)])
    cosine = [0.1 * 0.5 * (1 + math.cos(math.pi * s / total)) for s in range(total)]
    assert lrs[warm:] == pytest.approx(cosine[warm:])


def test_no_warmup_is_the_cosine_from_the_first_step(monkeypatch):
    assert _lrs_seen(monkeypatch) == _lrs_seen(monkeypatch, warmup_epochs=0)
    assert _lrs_seen(monkeypatch)[0] == pytest.approx(0.1)


@pytest.mark.parametrize("value,message", [("-1", "train.warmup_epochs must be >= 0"),
                                           ("2", "train.warmup_epochs=2 must be < train.epochs (2)")])
def test_bad_warmup_exits_2_with_one_line(value, message, runs, capsys):
    assert cli("search", "--space", "dass", "--strategy", "random", "--runs-dir", runs, "--set", "train.epochs=2",
               "--set", f"train.warmup_epochs={value}") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not runs.exists() or not any(runs.iterdir())
