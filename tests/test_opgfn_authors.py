"""`--strategy opgfn_authors`: OP-GFN with the defaults of the authors' code (proxy sampling and backward
augmentation off, their initial samples, steps and network sizes), against our tuned `opgfn` preset."""
import pytest

from sparsenas.assemble import resolve
from sparsenas.config import load_preset, parse_override
from sparsenas.space import SPACES
from sparsenas.spaces.nb201 import NB201Space
from sparsenas.strategies import STRATEGIES
from sparsenas.strategies.opgfn import OPGFN
from sparsenas.testing import OBJECTIVE, drive

AUTHORS = {"init_samples": 64, "batch_size": 10, "train_steps": 200, "train_steps_init": 2000, "reinit_every": 10,
           "proxy_factor": 1, "replay_steps": 0, "epsilon": 0.0, "kl_weight": 0.1, "lr": 0.001, "log_z_lr": 0.1,
           "hidden": 256, "layers": 2}


def strategy_section(preset, *overrides):
    fragments = [load_preset("space", "nb201", SPACES), load_preset("strategy", preset, STRATEGIES)]
    return resolve(fragments + [parse_override(o) for o in overrides])["strategy"]


def test_the_preset_is_opgfn_with_the_authors_defaults():
    authors, ours = strategy_section("opgfn_authors"), strategy_section("opgfn")
    assert authors["name"] == ours["name"] == "opgfn"
    assert {k: authors[k] for k in AUTHORS} == AUTHORS
    assert ours["proxy_factor"] == 10 and ours["replay_steps"] > 0  # ours: both on


def test_authors_preset_samples_the_policy_as_it_is(monkeypatch):
    """No proxy: each round draws exactly batch_size forward samples; no backward augmentation: P_B is never
    sampled. (Fewer training steps than the preset, to stay quick; the switches are the preset's.)"""
    options = {k: v for k, v in strategy_section("opgfn_authors", "strategy.init_samples=6",
                                                 "strategy.train_steps_init=3", "strategy.train_steps=2",
                                                 "strategy.batch_size=4").items() if k != "name"}
    space = NB201Space()
    strategy = OPGFN(space, OBJECTIVE, 0, **options)
    drawn = []
    forward = strategy._sample_forward
    monkeypatch.setattr(strategy, "_sample_forward", lambda n: drawn.append(n) or forward(n))
    monkeypatch.setattr(strategy, "_sample_backward", lambda values: pytest.fail("backward augmentation ran"))
    archs = drive(strategy, space, 14)
    assert strategy.rounds == 2 and set(drawn) == {4} and len(set(archs)) == 14
    assert strategy.net.pf.in_features == 256 and len(strategy.net.torso) == 4
