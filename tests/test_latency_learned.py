"""The learned predictor's features of what runs (graph.py), its choice of view and model by cross-validation,
and few-shot transfer with a prior (`sparsenas latency fit --prior`). Latencies here are synthetic: per-op costs
of the edges a graph compiler executes, computed by hand below (independently of graph.py)."""
import csv
import json
import pickle

import numpy as np
import pytest
from scipy.stats import spearmanr

from conftest import cli
from sparsenas.hardware import ModelIO
from sparsenas.hardware.learned import GraphFeatures, LearnedLatency, Prior
from sparsenas.space import Arch
from sparsenas.spaces.nb201 import EDGE_LABELS, NB201Space, arch_str

SPACE = NB201Space(mode="train", C=4, N=1)
IO = ModelIO((3, 8, 8), 10)
COST = {"none": 0.0, "skip_connect": 0.02, "nor_conv_1x1": 0.3, "nor_conv_3x3": 1.0, "avg_pool_3x3": 0.15}
OPS = list(COST)


def edge(arch, i, j):
    return arch[f"edge_{i}_{j}"]


def live_edges(arch) -> list[tuple[int, int]]:
    """The edges of an NB201 cell that run after constant folding and dead-code elimination."""
    nonzero = {0}
    for j in (1, 2, 3):
        if any(i in nonzero and edge(arch, i, j) != "none" for i in range(j)):
            nonzero.add(j)
    if 3 not in nonzero:
        return []  # the cell's output is a constant: the whole network folds away
    reaches = {3}
    for i in (2, 1, 0):
        if any(j in reaches and edge(arch, i, j) != "none" and i in nonzero for j in range(i + 1, 4)):
            reaches.add(i)
    return [(i, j) for j in (1, 2, 3) for i in range(j)
            if edge(arch, i, j) != "none" and i in nonzero and j in reaches]


def compiled_ms(arch) -> float:
    return 1.0 + sum(COST[edge(arch, i, j)] for i, j in live_edges(arch))


def eager_ms(arch) -> float:
    return 1.0 + sum(COST[v] + 0.05 for v in arch.values())  # every edge runs, x·0 included


def sample(n, seed) -> list[Arch]:
    rng = np.random.default_rng(seed)
    p = [0.35, 0.1, 0.2, 0.2, 0.15]  # many `none` edges: many dead branches
    return [SPACE.validate({e: str(rng.choice(OPS, p=p)) for e in EDGE_LABELS}) for _ in range(n)]


def dead_twins(archs) -> list[tuple[Arch, Arch]]:
    """Pairs (arch, the arch with every dead edge's op changed): they differ only in work that never runs."""
    pairs = []
    for a in archs:
        live = {f"edge_{i}_{j}" for i, j in live_edges(a)}
        dead = [e for e in EDGE_LABELS if e not in live and a[e] != "none"]
        if dead and 3 in {j for _, j in live_edges(a)}:
            other = "skip_connect" if any(a[e] == "nor_conv_3x3" for e in dead) else "nor_conv_3x3"
            b = {**a, **{e: other for e in dead}}
            pairs.append((a, SPACE.validate(b)))
    return pairs


@pytest.fixture(scope="module")
def compiled():
    train, test = sample(80, 0), sample(60, 1)
    return train, test, LearnedLatency(SPACE, train, [compiled_ms(a) for a in train], io=IO)


def test_archs_differing_only_in_dead_edges_are_predicted_equal(compiled):
    train, test, p = compiled
    assert p.view == "live"
    pairs = dead_twins(test)
    assert len(pairs) >= 5
    features = GraphFeatures(SPACE, IO)
    for a, b in pairs:
        assert compiled_ms(a) == compiled_ms(b)
        fa, fb = features(a), features(b)
        assert {k: v for k, v in fa.items() if k.startswith("all:")} != {k: v for k, v in fb.items()
                                                                          if k.startswith("all:")}
        assert p.predict(a) == pytest.approx(p.predict(b), rel=1e-9)
    truth = [compiled_ms(a) for a in test]
    assert spearmanr(p.predict_many(test), truth)[0] > 0.97


def test_cross_validation_keeps_every_call_when_dead_work_costs(tmp_path):
    train, test = sample(60, 2), sample(40, 3)
    p = LearnedLatency(SPACE, train, [eager_ms(a) for a in train], io=IO)
    assert p.view == "all"
    assert spearmanr(p.predict_many(test), [eager_ms(a) for a in test])[0] > 0.97
    p.save(tmp_path / "p.json")
    loaded = LearnedLatency.load(tmp_path / "p.json")
    assert (loaded.view, loaded.model) == (p.view, p.model)
    assert loaded.predict_many(test[:5]) == pytest.approx(p.predict_many(test[:5]), rel=1e-9)
    assert pickle.loads(pickle.dumps(p)).predict(test[0]) == pytest.approx(p.predict(test[0]))  # Ray workers


def device_ms(arch) -> float:
    """Another device: compiled, with other per-op ratios and a nonlinear clock (a slower big kernel)."""
    cost = {"none": 0.0, "skip_connect": 0.05, "nor_conv_1x1": 0.5, "nor_conv_3x3": 1.3, "avg_pool_3x3": 0.4}
    return 2.0 * (0.5 + sum(cost[edge(arch, i, j)] for i, j in live_edges(arch))) ** 1.2


def test_prior_transfers_to_a_new_device_from_20_samples(compiled, tmp_path):
    train, test, reference = compiled
    few = sample(20, 4)
    prior = Prior("learned", reference.to_dict(), reference)
    p = LearnedLatency(SPACE, few, [device_ms(a) for a in few], io=IO, prior=prior)
    truth = [device_ms(a) for a in test]
    assert spearmanr(p.predict_many(test), truth)[0] > 0.95
    p.save(tmp_path / "p.json")
    loaded = LearnedLatency.load(tmp_path / "p.json")
    assert loaded.prior.kind == "learned" and loaded.model == p.model
    assert loaded.predict_many(test[:5]) == pytest.approx(p.predict_many(test[:5]), rel=1e-9)


def write_table(path, archs, fn):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "ms"])
        w.writerows([arch_str(a), f"{fn(a):.6f}"] for a in archs)


def test_fit_cli_with_a_prior(tmp_path, capsys):
    space = ["--space", "nb201", "--set", "space.C=4", "--set", "space.N=1"]
    write_table(tmp_path / "ref.csv", sample(40, 5), compiled_ms)
    write_table(tmp_path / "new.csv", sample(12, 6), device_ms)
    assert cli("latency", "fit", *space, "--table", tmp_path / "ref.csv", "--arch-column", "arch",
               "--latency-column", "ms", "--out", tmp_path / "ref.json") == 0
    assert cli("latency", "fit", *space, "--table", tmp_path / "new.csv", "--arch-column", "arch",
               "--latency-column", "ms", "--prior", tmp_path / "ref.json", "--out", tmp_path / "new.json") == 0
    assert "prior" in capsys.readouterr().out
    saved = json.loads((tmp_path / "new.json").read_text())
    assert saved["prior"]["kind"] == "learned" and len(saved["samples"]) == 12
    (tmp_path / "junk.json").write_text("[1, 2]")
    assert cli("latency", "fit", *space, "--table", tmp_path / "new.csv", "--arch-column", "arch",
               "--latency-column", "ms", "--prior", tmp_path / "junk.json", "--out", tmp_path / "x.json") == 2
    err = capsys.readouterr().err.strip()
    assert "neither a learned predictor nor a lut table" in err and "\n" not in err
    assert not (tmp_path / "x.json").exists()


def test_a_lut_table_of_this_cpu_can_be_the_prior(tmp_path):
    from sparsenas.hardware import Target
    from sparsenas.hardware.lut import profile

    table = profile(SPACE, Target(), IO, archs=2, calibration=0, warmup=0, repeats=1, log=lambda m: None)
    table.save(tmp_path / "lut.json")
    prior = Prior.load(tmp_path / "lut.json", SPACE)
    few = sample(12, 7)
    p = LearnedLatency(SPACE, few, [device_ms(a) for a in few], io=IO, prior=prior)
    assert p.prior.kind == "lut" and p.matrix([p.rows[0]], few[:1])[0, 0] == pytest.approx(
        prior.predictor.predict(few[0]))
    p.save(tmp_path / "p.json")
    assert LearnedLatency.load(tmp_path / "p.json").predict(few[0]) == pytest.approx(p.predict(few[0]), rel=1e-9)
    with pytest.raises(Exception, match="not 'tas'|of space 'tas'"):
        from sparsenas.spaces.tas import TasSpace

        Prior.load(tmp_path / "lut.json", TasSpace(C=4, depth=8))
