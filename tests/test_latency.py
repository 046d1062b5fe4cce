"""Latency predictors (sparsenas/hardware): structure, caching, the constraint path, the CLI. No timing accuracy
is asserted — tables are profiled with 1 repeat so that tests stay fast."""
import csv
import json
import math
import pickle

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, cli
from sparsenas.assemble import resolve
from sparsenas.errors import ConfigError
from sparsenas.hardware import ModelIO, Target, make_predictor
from sparsenas.hardware.base import build_model
from sparsenas.hardware.kernels import trace
from sparsenas.hardware.learned import LearnedLatency, parse_arch
from sparsenas.hardware.lut import LatencyTable, LutLatency, profile, table_path, traced_kernels
from sparsenas.hardware.measured import MeasuredLatency
from sparsenas.ops.deploy import CSRLinear
from sparsenas.ops.sparse import SparseMixin
from sparsenas.spaces.dass import DassSpace
from sparsenas.spaces.nb201 import NB201Space, arch_str
from sparsenas.spaces.tas import TasSpace

IO = ModelIO((1, 8, 8), 10)
TAS = {"C": 4, "depth": 8}  # a tiny TAS (one block per stage)


def quiet(*_):
    pass


def zeros(calls):
    return [0.0] * len(calls)


def model(space, arch):
    return build_model(space, arch, IO)


@pytest.fixture(scope="module")
def tas_table(tmp_path_factory):
    """A tiny profiled table of the small TAS space (2 archs, 1 repeat, no calibration), in a cache dir."""
    cache = tmp_path_factory.mktemp("cache")
    space = TasSpace(**TAS)
    table = profile(space, Target(), IO, archs=2, calibration=0, warmup=0, repeats=1, log=quiet)
    path = table_path(space, Target(), IO, cache)
    table.save(path)
    return space, table, cache, path


# -- target and config --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, words", [({"device": "tpu"}, "unknown latency device 'tpu'"),
                                        ({"mode": "sparse"}, "unknown latency mode"),
                                        ({"dtype": "float16"}, "float16 needs device cuda"),
                                        ({"threads": 0}, "threads must be")])
def test_target_rejects_bad_values(bad, words):
    with pytest.raises(ConfigError, match=words):
        Target(**bad)


def base_config(**latency):
    return [{"space": {"name": "tas", **TAS}, "strategy": {"name": "random"}, "latency": latency}]


def test_config_records_predictor_version_and_refuses_another():
    config = resolve(base_config(predictor="measured"))
    assert config["latency"]["version"] == MeasuredLatency.version
    with pytest.raises(ConfigError, match="not the version of predictor 'measured'"):
        resolve(base_config(predictor="measured", version="0.9"))
    with pytest.raises(ConfigError, match="unknown latency predictor 'nnmeter'"):
        resolve(base_config(predictor="nnmeter"))
    with pytest.raises(ConfigError, match="unknown latency device"):
        resolve(base_config(device="gpu"))
    with pytest.raises(ConfigError, match="reward_target_ms needs latency.predictor"):
        resolve(base_config(reward_target_ms=1.0))
    assert resolve(base_config())["latency"]["predictor"] is None


# -- lut ----------------------------------------------------------------------------------------------------
def test_lut_prediction_is_the_calibrated_sum_of_its_kernels(tas_table):
    space, table, _, _ = tas_table
    lut = LutLatency(space, Target(), IO, table)
    rng = np.random.default_rng(3)
    for _ in range(3):
        arch = space.sample(rng)
        b = lut.breakdown(arch)
        assert b.kernels and all(ms > 0 and math.isfinite(ms) for _, ms in b.kernels)
        assert lut.predict(arch) == pytest.approx(sum(ms for _, ms in b.kernels))  # calibration (1, 0, 0)
        assert b.module_calls > 0
    table.calibration = (2.0, 0.001, 0.5)
    try:
        b = lut.breakdown(arch)
        assert lut.predict(arch) == pytest.approx(2.0 * b.kernel_sum + 0.001 * b.module_calls + 0.5)
    finally:
        table.calibration = (1.0, 0.0, 0.0)


def test_lut_looks_up_profiled_kernels_and_regresses_the_others(tas_table):
    space, table, _, _ = tas_table
    arch = space.sample(np.random.default_rng(0))  # the first arch profile() sampled (seed 0)
    calls, ms, _, _ = traced_kernels(model(space, arch), IO.input_shape, Target(), table.kernel_ms)
    assert all(c.signature in table.kernels for c in calls)
    assert ms == [table.kernels[c.signature]["ms"] for c in calls]
    # a network the table never saw (another width): its convs are predicted by the per-op regressor
    wide = TasSpace(C=6, depth=8)
    other = wide.sample(np.random.default_rng(1))
    calls, ms, _, _ = traced_kernels(model(wide, other), IO.input_shape, Target(), table.kernel_ms)
    unseen = [m for c, m in zip(calls, ms) if c.signature not in table.kernels and c.op == "conv2d"]
    assert unseen and all(m > 0 and math.isfinite(m) for m in unseen)


def test_lut_table_cached_found_by_config_and_pickles(tas_table, tmp_path):
    space, table, cache, path = tas_table
    assert path.is_file() and path.parent.name == "latency"
    loaded = LatencyTable.load(path)
    assert loaded.kernels == json.loads(json.dumps(table.kernels)) and loaded.meta["space"] == "tas"
    config = resolve(base_config(predictor="lut", cache_dir=str(cache)))
    objective = make_predictor(config["latency"], space, config["data"])
    arch = space.sample(np.random.default_rng(7))
    value = objective.cheap_metrics(arch)["latency_ms"]
    assert value == pytest.approx(LutLatency(space, Target(), IO, table).predict(arch))
    again = pickle.loads(pickle.dumps(objective))  # Ray workers receive the context pickled
    assert again.cheap_metrics(arch)["latency_ms"] == pytest.approx(value)
    config = resolve(base_config(predictor="lut", cache_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="sparsenas latency profile --space tas"):
        make_predictor(config["latency"], space, config["data"])


def test_exported_pricing_takes_csr_only_where_it_is_cheaper():
    space = DassSpace(C=4, layers=2, ops=["sep_conv_3x3", "skip_connect"])
    arch = space.sample(np.random.default_rng(0))
    linear_only = lambda calls: [1.0 if c.op == "linear" else 0.0 for c in calls]  # noqa: E731
    calls, _, _, plan = traced_kernels(model(space, arch), IO.input_shape, Target(), linear_only)
    assert plan["classifier"] == "csr" and all(v == "dense" for k, v in plan.items() if k != "classifier")
    assert any(c.op == "matmul" and c.features[3] > 0 for c in calls) and not any(c.op == "linear" for c in calls)
    ones = lambda cs: [1.0] * len(cs)  # noqa: E731 — the CSR layer has more calls than the dense one
    calls, _, _, plan = traced_kernels(model(space, arch), IO.input_shape, Target(), ones)
    assert "classifier" in plan and set(plan.values()) == {"dense"} and sum(c.op == "linear" for c in calls) == 1
    masked, _, _, plan = traced_kernels(model(space, arch), IO.input_shape, Target(mode="masked"), zeros)
    assert plan == {} and not any(c.features[3] for c in masked)  # masked dense = dense: no sparse kernel


def test_module_ms_prices_parts_that_add_up(tas_table):
    """The API a differentiable search can use for an expected-latency term: any module priced by the table."""
    space, table, _, _ = tas_table
    table.calibration = (1.5, 0.002, 0.4)
    try:
        lut = LutLatency(space, Target(), IO, table)
        net = model(space, space.sample(np.random.default_rng(0)))
        part = net.blocks[0]
        b = lut.module_breakdown(part, (net.stem[0].out_channels, 8, 8), whole=False)
        assert lut.module_ms(part, (net.stem[0].out_channels, 8, 8)) == pytest.approx(
            1.5 * b.kernel_sum + 0.002 * b.module_calls)
        assert 0 < b.total < lut.module_breakdown(net, IO.input_shape).total
    finally:
        table.calibration = (1.0, 0.0, 0.0)


def test_channel_pruning_is_priced_as_the_smaller_dense_layer():
    space = DassSpace(C=4, layers=2, mask="channel", keep_ratios=[0.5], ops=["sep_conv_3x3"])
    arch = space.sample(np.random.default_rng(0))
    macs = {}
    for mode in ("masked", "exported"):
        calls, _, _, _ = traced_kernels(model(space, arch), IO.input_shape, Target(mode=mode), zeros)
        macs[mode] = sum(c.features[2] for c in calls if c.op == "conv2d")
    assert 0 < macs["exported"] < 0.75 * macs["masked"]


# -- measured -----------------------------------------------------------------------------------------------
def test_measured_times_the_exported_module():
    space = DassSpace(C=4, layers=2, ops=["sep_conv_3x3", "max_pool_3x3"])
    arch = space.sample(np.random.default_rng(0))
    m = MeasuredLatency(space, Target(), IO, warmup=1, repeats=3)
    module, plan = m.module(arch)
    assert plan["classifier"]["action"] in ("csr", "dense") and "note" in plan["classifier"]  # timed decision
    assert not any(isinstance(x, SparseMixin) for x in module.modules())
    assert isinstance(module.classifier, CSRLinear) == (plan["classifier"]["action"] == "csr")
    before = torch.get_num_threads()
    ms = m.predict(arch)
    assert ms > 0 and math.isfinite(ms)
    assert torch.get_num_threads() == before  # timed at target.threads, then restored


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_measuring_on_cuda_without_a_gpu_is_a_config_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        MeasuredLatency(DassSpace(), Target(device="cuda"), IO)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        profile(TasSpace(**TAS), Target(device="cuda"), IO, archs=1, calibration=0, log=quiet)


def test_trace_tags_kernels_of_named_layers():
    space = DassSpace(C=4, layers=2, ops=["skip_connect"])
    model = space.build(space.sample(np.random.default_rng(0)), IO.input_shape, IO.num_classes).eval()
    t = trace(model, torch.zeros(1, 1, 8, 8), layers=("classifier",))
    tagged = [c for c in t.calls if c.layer == "classifier"]
    assert tagged and all(c.layer is None for c in t.calls[:-len(tagged)])
    seq = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    t = trace(seq, torch.zeros(2, 3))
    assert t.module_calls == 4 and [c.op for c in t.calls] == ["linear", "relu", "linear"]
    assert t.calls[0].features[2] == 2 * 4 * 3  # MACs


# -- constraint in a search ---------------------------------------------------------------------------------
def test_over_budget_archs_are_infeasible_and_never_trained(tas_table, runs, monkeypatch):
    space, table, cache, _ = tas_table
    trained = []

    def fake_evaluate(self, arch, seed, context, on_epoch=None):
        trained.append(arch.arch_id)
        return {"val_acc": 0.5, "test_acc": 0.5}

    monkeypatch.setattr(TasSpace, "evaluate", fake_evaluate)
    lut = LutLatency(space, Target(), IO, table)
    latencies = sorted(lut.predict(space.sample(np.random.default_rng(s))) for s in range(8))
    budget = latencies[len(latencies) // 2]
    assert cli("search", "--space", "tas", "--strategy", "random", "--budget", 8, "--name", "c", "--runs-dir", runs,
               "--quiet", "--set", "space.C=4", "--set", "space.depth=8", "--set", "latency.predictor=lut",
               "--set", f"latency.cache_dir={cache}", "--set", f"objective.constraints.latency_ms=[null,{budget}]",
               "--set", "objective.minimize=[latency_ms]", "--set", "latency.reward_target_ms=0.5") == 0
    records = [json.loads(line) for line in (runs / "c" / "trials.jsonl").read_text().splitlines()]
    assert len(records) == 8
    for r in records:
        over = r["metrics"]["latency_ms"] > budget
        assert r["status"] == ("infeasible" if over else "ok")
        assert (r["arch_id"] in trained) == (not over)
        if not over:  # the MnasNet reward, computed after training
            assert r["metrics"]["latency_reward"] == pytest.approx(0.5 * (r["metrics"]["latency_ms"] / 0.5) ** -0.07)
    assert {r["status"] for r in records} == {"ok", "infeasible"}
    import yaml  # the predictor's name and version travel with the run's latencies

    saved = yaml.safe_load((runs / "c" / "config.yaml").read_text())["latency"]
    assert (saved["predictor"], saved["version"]) == ("lut", LutLatency.version)
    assert "val_acc" not in next(r for r in records if r["status"] == "infeasible")["metrics"]


def test_latency_reward_is_mnasnet_soft_constraint(tas_table, monkeypatch):
    space, _, cache, _ = tas_table
    config = resolve(base_config(predictor="lut", cache_dir=str(cache), reward_target_ms=2.0))
    objective = make_predictor(config["latency"], space, config["data"])
    assert objective.derived_metrics({"val_acc": 0.8, "latency_ms": 4.0}) == {
        "latency_reward": pytest.approx(0.8 * 2.0 ** -0.07)}
    assert objective.derived_metrics({"latency_ms": 4.0}) == {}


# -- learned and the CLI ------------------------------------------------------------------------------------
OP_COST = {"none": 0.0, "skip_connect": 0.05, "nor_conv_1x1": 0.4, "nor_conv_3x3": 1.1, "avg_pool_3x3": 0.2}


def nb201_csv(path, n, seed, with_latency=True):
    """A synthetic NB201 latency table: 1 ms + the cost of each edge's op (additive, as cell latencies are)."""
    space = NB201Space()
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(n)]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "lat_ms", "note"] if with_latency else ["arch", "note"])
        for i, a in enumerate(archs):
            lat = 1.0 + sum(OP_COST[v] for v in a.values())
            w.writerow([arch_str(a), f"{lat:.4f}", f"n{i}"] if with_latency else [arch_str(a), f"n{i}"])
    return archs


def test_learned_fit_and_predict_cli(tmp_path):
    from scipy.stats import spearmanr

    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    nb201_csv(train, 60, 0)
    archs = nb201_csv(test, 40, 1, with_latency=False)
    p, out = tmp_path / "p.json", tmp_path / "out.csv"
    assert cli("latency", "fit", "--space", "nb201", "--table", train, "--arch-column", "arch",
               "--latency-column", "lat_ms", "--out", p) == 0
    assert cli("latency", "predict", "--predictor", p, "--table", test, "--arch-column", "arch", "--out", out) == 0
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["arch", "note", "predicted_ms"] and len(rows) == 40
    truth = [1.0 + sum(OP_COST[v] for v in a.values()) for a in archs]
    predicted = [float(r["predicted_ms"]) for r in rows]
    assert spearmanr(truth, predicted)[0] > 0.95
    loaded = LearnedLatency.load(p)
    assert loaded.predict(archs[0]) == pytest.approx(predicted[0], rel=1e-4)


def test_learned_predictor_in_a_search(tmp_path, runs):
    table = SHARED_DATA / "nb201" / "nb201_cifar.csv"
    if not table.is_file():
        pytest.skip("shared NB201 table not available")
    nb201_csv(tmp_path / "t.csv", 30, 0)
    assert cli("latency", "fit", "--space", "nb201", "--table", tmp_path / "t.csv", "--arch-column", "arch",
               "--latency-column", "lat_ms", "--out", tmp_path / "p.json") == 0
    assert cli("search", "--space", "nb201", "--strategy", "random", "--budget", 6, "--name", "l", "--runs-dir", runs,
               "--quiet", "--set", f"space.benchmark_file={table}", "--set", "latency.predictor=learned",
               "--set", f"latency.file={tmp_path / 'p.json'}", "--set", "objective.minimize=[latency_ms]") == 0
    records = [json.loads(line) for line in (runs / "l" / "trials.jsonl").read_text().splitlines()]
    assert all(r["status"] == "ok" and r["metrics"]["latency_ms"] > 0 for r in records)


def test_parse_arch_json_and_labels():
    space = NB201Space()
    a = space.sample(np.random.default_rng(0))
    assert parse_arch(space, arch_str(a)) == a == parse_arch(space, json.dumps(dict(a)))
    with pytest.raises(ConfigError, match="not an NB201 arch string"):
        parse_arch(space, "|conv~0|+")
    with pytest.raises(ConfigError, match="not a JSON object of space 'tas'"):
        parse_arch(TasSpace(), "stem4 s0[1/2]")


@pytest.mark.parametrize("case, words", [
    ("missing column", "has no column 'lat_ms'"),
    ("bad arch", "line 3: not an NB201 arch string"),
    ("bad latency", "line 2: lat_ms='fast' is not a latency"),
    ("device", "unknown latency device 'tpu'"),
    ("missing file", "cannot read"),
    ("bad predictor", "is not a learned latency predictor"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, case, words):
    bad = tmp_path / "bad.csv"
    rows = {"missing column": "arch,ms\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1\n",
            "bad arch": "arch,lat_ms\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1\n|conv~0|,2\n",
            "bad latency": "arch,lat_ms\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,fast\n"}
    bad.write_text(rows.get(case, "arch,lat_ms\n"))
    if case == "device":
        argv = ["latency", "profile", "--space", "tas", "--device", "tpu", "--cache-dir", tmp_path]
    elif case == "bad predictor":
        argv = ["latency", "predict", "--predictor", bad, "--table", bad, "--arch-column", "arch",
                "--out", tmp_path / "p.json"]
    else:
        table = tmp_path / "nope.csv" if case == "missing file" else bad
        argv = ["latency", "fit", "--space", "nb201", "--table", table, "--arch-column", "arch",
                "--latency-column", "lat_ms", "--out", tmp_path / "p.json"]
    assert cli(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "p.json").exists()


def test_cli_profile_writes_the_table_into_the_cache_dir(tmp_path, capsys):
    assert cli("latency", "profile", "--space", "tas", "--set", "space.C=4", "--set", "space.depth=8",
               "--archs", 1, "--calibration", 0, "--cache-dir", tmp_path, "--quiet") == 0
    files = list((tmp_path / "latency").glob("lut-tas-*.json"))
    assert len(files) == 1 and str(files[0]) in capsys.readouterr().out
    assert LatencyTable.load(files[0]).kernels
    assert cli("latency", "profile", "--space", "tas", "--set", "train.epochs=1") == 2


def test_bfloat16_target_runs_dense_where_csr_has_no_kernel():
    space = DassSpace(C=4, layers=2, ops=["skip_connect", "sep_conv_3x3"])
    arch = space.sample(np.random.default_rng(0))
    target = Target(dtype="bfloat16")
    module, plan = MeasuredLatency(space, target, IO, warmup=0, repeats=1).module(arch)
    assert plan["classifier"]["action"] == "dense" and next(module.parameters()).dtype == torch.bfloat16
    table = profile(space, target, IO, archs=1, calibration=0, warmup=0, repeats=1, log=quiet)
    assert all(":bfloat16" in k or "float32" not in k for k in table.kernels)
    assert set(LutLatency(space, target, IO, table).breakdown(arch).plan.values()) == {"dense"}
