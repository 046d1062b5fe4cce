"""NB201 space: arch strings, the table form, exact FLOPs/params, the trainable network."""
import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, cli
from sparsenas.errors import ConfigError
from sparsenas.ops import count_model
from sparsenas.space import Arch
from sparsenas.spaces.nb201 import EDGE_LABELS, NB201Network, NB201Space, arch_str, nb201_counts, parse_arch_str

TABLE = SHARED_DATA / "nb201" / "nb201_cifar.csv"
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
needs_table = pytest.mark.skipif(not TABLE.is_file(), reason=f"{TABLE} not present")


def test_arch_string_round_trip_and_edge_order():
    arch = parse_arch_str(BEST)
    assert arch["edge_0_1"] == "nor_conv_3x3" and arch["edge_0_3"] == "skip_connect" and arch["edge_2_3"] == "nor_conv_1x1"
    assert arch_str(arch) == BEST == NB201Space().label(arch)
    for bad in ("|nor_conv_3x3~0|", BEST.replace("~2|", "~3|"), BEST.replace("skip_connect", "conv")):
        with pytest.raises(ConfigError):
            parse_arch_str(bad)


@needs_table
def test_index_6111_returns_its_published_accuracy():
    space = NB201Space(benchmark_file=str(TABLE))
    space.prepare(None)
    metrics = space.evaluate(parse_arch_str(BEST), 0, None)
    assert metrics["test_acc"] == pytest.approx(94.3733) and metrics["val_acc"] == pytest.approx(84.384)
    assert space.cheap_metrics(parse_arch_str(BEST), None) == {"flops": 153272960.0, "params": 1073466.0}
    other = NB201Space(benchmark_file=str(TABLE), signal="c100_val_12", final="c100_test_200")
    assert other.evaluate(parse_arch_str(BEST), 0, None)["test_acc"] != metrics["test_acc"]


def test_flops_and_params_hand_checked_and_equal_to_the_built_network():
    # all-3x3 CIFAR-10 network: the NB201 paper's largest cell, 220.1 MFLOPs and 1.53 M params
    big = Arch({e: "nor_conv_3x3" for e in EDGE_LABELS})
    assert nb201_counts(big) == {"flops": 220119680.0, "params": 1531546.0}
    # no conv in the cells: stem 32*32*27*16 + two reduction blocks + classifier
    bare = Arch({e: "skip_connect" for e in EDGE_LABELS})
    flops = 32 * 32 * 27 * 16 + 16 * 16 * (9 * 16 * 32 + 9 * 32 * 32 + 16 * 32) \
        + 8 * 8 * (9 * 32 * 64 + 9 * 64 * 64 + 32 * 64) + 640
    assert nb201_counts(bare)["flops"] == flops
    rng = np.random.default_rng(0)
    space = NB201Space()
    for shape, C, N in (((3, 32, 32), 16, 1), ((1, 8, 8), 4, 2), ((3, 7, 9), 2, 1)):
        arch = space.sample(rng)
        counted = count_model(NB201Network(arch, C, N, shape, 10), shape)
        assert {k: counted[k] for k in ("flops", "params")} == nb201_counts(arch, C, N, shape, 10)


def test_network_trains_a_step():
    arch = parse_arch_str(BEST)
    net = NB201Network(arch, C=4, N=1, input_shape=(1, 8, 8), num_classes=10)
    loss = torch.nn.functional.cross_entropy(net(torch.randn(6, 1, 8, 8)), torch.arange(6))
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="benchmark_file"):
        NB201Space().prepare(None)
    with pytest.raises(ConfigError, match="cannot read"):
        NB201Space(benchmark_file=str(tmp_path / "missing.csv")).prepare(None)
    (tmp_path / "t.csv").write_text(f"arch_str,c10valid_val_12\n{BEST},80\n")
    with pytest.raises(ConfigError, match="c10_test_200"):
        NB201Space(benchmark_file=str(tmp_path / "t.csv")).prepare(None)
    (tmp_path / "u.csv").write_text(f"arch_str,c10valid_val_12,c10_test_200\n{BEST},80,90\n")
    space = NB201Space(benchmark_file=str(tmp_path / "u.csv"))
    space.prepare(None)
    with pytest.raises(ConfigError, match="not in the NB201 table"):
        space.evaluate(Arch({e: "none" for e in EDGE_LABELS}), 0, None)
    (tmp_path / "v.csv").write_text(f"arch_str,c10valid_val_12,c10_test_200\n{BEST},80,90\n|bogus~0|,1,2\n")
    with pytest.raises(ConfigError, match="line 3"):
        NB201Space(benchmark_file=str(tmp_path / "v.csv")).prepare(None)
    with pytest.raises(ConfigError, match="mode"):
        NB201Space(mode="tabel")


@needs_table
def test_cli_search_on_the_table(runs):
    assert cli("search", "--space", "nb201", "--strategy", "random", "--budget", 5, "--name", "n", "--runs-dir", runs,
               "--set", f"space.benchmark_file={TABLE}", "--quiet") == 0
    import json
    recs = [json.loads(line) for line in (runs / "n" / "trials.jsonl").read_text().splitlines()]
    assert len(recs) == 5 and all(r["status"] == "ok" for r in recs)
    for r in recs:
        assert r["label"] == arch_str(r["arch"]) and {"val_acc", "test_acc", "flops", "params"} <= set(r["metrics"])
    assert cli("search", "--space", "nb201", "--strategy", "random", "--name", "m", "--runs-dir", runs, "--quiet") == 2


def test_train_mode_runs_a_trial(runs):
    assert cli("search", "--space", "nb201", "--strategy", "random", "--budget", 1, "--name", "t", "--runs-dir", runs,
               "--set", "space.mode=train", "--set", "space.C=4", "--set", "space.N=1", "--set", "train.epochs=1",
               "--set", "data.limit=128", "--quiet") == 0
    import json
    rec = json.loads((runs / "t" / "trials.jsonl").read_text())
    assert rec["status"] == "ok" and 0 <= rec["metrics"]["val_acc"] <= 1
