"""One code path for the `lut` predictor and export: the lut prices every candidate kernel the deploy planner may
choose and lets the planner pick, so its per-layer choice is export's. Timings are faked (a deterministic cost
of each traced torch call, with a set noise), never wall clock."""
import json

import numpy as np
import pytest
import torch

from conftest import cli
from sparsenas import spaces  # noqa: F401
from sparsenas.assemble import build_space, resolve
from sparsenas.config import dump
from sparsenas.hardware import ModelIO, Target, model_io
from sparsenas.hardware import kernels
from sparsenas.hardware.lut import LatencyTable, LutLatency, profile, profile_module
from sparsenas.ops import SparseLinear
from sparsenas.ops import planner
from sparsenas.ops.deploy import to_deployable
from sparsenas.ops.timing import Timing

SPARSE_FACTOR = 4.0  # a multiply-add of a sparse matmul costs 4 dense ones: CSR wins below keep 0.25


def cost_ms(call) -> float:
    in_elems, out_elems, macs, nnz = call.features[:4]
    return 1e-6 * (macs * (SPARSE_FACTOR if nnz else 1.0) + 0.1 * out_elems) + 1e-7


def fake_timer(noise: float):
    """A stand-in for `ops.timing.robust_ms`: each callable's ms is the summed cost of the torch calls it makes."""
    def robust_ms(fns, device="cpu", warmup=3, repeats=15, **_):
        out = []
        for fn in fns:
            tracer = kernels._Tracer(keep=False)
            with torch.no_grad(), tracer:
                fn()
            ms = sum(cost_ms(c) for c in tracer.calls)
            out.append(Timing(ms, ms, 0.0, noise, repeats))
        return out
    return robust_ms


@pytest.fixture
def fake_timing(monkeypatch):
    def use(noise):
        monkeypatch.setattr(planner, "robust_ms", fake_timer(noise))  # export's timing of candidates
        monkeypatch.setattr(kernels, "robust_ms", fake_timer(noise))  # the lut's profiling of kernels
    return use


def _run(tmp_path):
    config = resolve([{"space": {"name": "dass", "C": 16, "layers": 1, "stem_multiplier": 1, "mask": "random",
                                 "keep_ratios": [0.1, 0.3]},
                       "strategy": {"name": "random"}, "train": {"epochs": 1}, "data": {"limit": 64}}])
    space = build_space(config)
    arch = space.sample(np.random.default_rng(0))  # the first arch `profile` samples (seed 0)
    # seed 0: export builds the masks `build_model` does (random masks: fixed at init, training keeps them)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump(config))
    record = {"trial": 0, "arch": dict(arch), "arch_id": arch.arch_id, "label": "x", "status": "ok",
              "metrics": {"val_acc": 0.5}, "seed": 0, "duration_s": 1.0, "worker": "local", "error": None}
    (run / "trials.jsonl").write_text(json.dumps(record) + "\n")
    (run / "best.json").write_text(json.dumps({"trial": 0, "arch": dict(arch), "arch_id": arch.arch_id,
                                               "metrics": record["metrics"]}))
    return space, arch, run, model_io(space, config["data"])


def test_lut_chooses_the_kernel_export_deploys_for_every_layer(tmp_path, fake_timing):
    fake_timing(0.01)
    space, arch, run, io = _run(tmp_path)
    target = Target(batch_size=1)  # export's default target
    table = profile(space, target, io, archs=1, calibration=0, warmup=0, repeats=1, log=lambda *_: None)
    lut = LutLatency(space, target, io, table).breakdown(arch)
    assert cli("export", run, "--out", tmp_path / "exp") == 0
    plan = json.loads((tmp_path / "exp" / "export.json").read_text())["plan"]
    exported = {name: e["action"] for name, e in plan.items() if e["action"] != "slice"}
    assert lut.plan == exported
    # dense and a sparse kernel (CSR, or the direct one where numba is installed) chosen: the agreement is not trivial
    assert "dense" in exported.values() and {"csr", "direct"} & set(exported.values())
    timed = [e for e in plan.values() if "times_ms" in e]
    assert timed and any(e["action"] == "dense" and e["sparsity"] >= planner.MIN_SPARSITY for e in timed)
    # what the lut prices is what export runs: every kernel of the deployed network was profiled (no regression)
    assert all(c.signature in table.kernels for c, _ in lut.kernels)


def _layer(keep):
    torch.manual_seed(0)
    return SparseLinear(256, 256, keep=keep, mask_mode="magnitude").eval()


@pytest.mark.parametrize("keep, noise, kernel", [
    (0.1, 0.01, "csr"),     # 0.4× dense's cost: clearly faster
    (0.22, 0.01, "csr"),    # ~0.9×: faster by more than the 5% floor of the margin
    (0.24, 0.01, "dense"),  # ~0.97×: inside the 5% floor
    (0.22, 0.1, "dense"),   # ~0.9×, but a 10% noise asks for 20%
])
def test_planner_keeps_dense_unless_faster_by_a_margin_above_the_noise(fake_timing, keep, noise, kernel):
    fake_timing(noise)
    layer, x = _layer(keep), torch.randn(8, 256)
    _, plan = to_deployable(layer, x)
    assert plan[""]["action"] == kernel
    # the lut, profiled by the same (fake) timer, plans the same way: its table carries the noise
    target = Target(batch_size=8)
    table = LatencyTable({"space": "-"}, {})
    profile_module(table, layer, (256,), target, warmup=0, repeats=1)
    assert LutLatency(None, target, ModelIO((256,), 0), table).module_breakdown(layer, (256,)).plan == {"": kernel}


def test_a_trial_records_the_latency_of_its_trained_network_as_export_deploys_it(tmp_path, fake_timing, monkeypatch):
    """`latency_ms` is predicted for the arch before training (constraints, early stopping) and again for the
    trained network: a learned mask that emptied whole filters makes export remove them, so the trained net is
    faster than the arch's seed-0 masks (structure_search's fronts ran 11-18% faster than the arch's price)."""
    from sparsenas.evaluation import TrialTask, run_trial
    from sparsenas.hardware.lut import table_path
    from sparsenas.ops import SparseConv2d
    from sparsenas.search import Search
    from sparsenas.spaces import trained as trained_space

    fake_timing(0.01)
    space, arch, run, io = _run(tmp_path)
    table = profile(space, Target(), io, archs=1, calibration=0, warmup=0, repeats=1, log=lambda *_: None)
    table.save(table_path(space, Target(), io, tmp_path / "cache"))
    config = resolve([{"space": {"name": "dass", "C": 16, "layers": 1, "stem_multiplier": 1, "mask": "random",
                                 "keep_ratios": [0.1, 0.3]}, "strategy": {"name": "random"}, "train": {"epochs": 1},
                       "data": {"limit": 64}, "latency": {"predictor": "lut", "cache_dir": str(tmp_path / "cache")}}])
    search, models = Search(config, None), []

    def train_emptying_filters(model, *args, **kwargs):  # a training whose masks emptied half of each conv's filters
        for m in model.modules():
            if isinstance(m, SparseConv2d) and not m.dense:
                mask = m.mask().clone()
                mask[: m.out_channels // 2] = 0
                m.set_mask(mask)
        models.append(model)
        return {"val_acc": 0.5, "test_acc": 0.5, "train_loss": 0.1, "train_time_s": 0.0}

    monkeypatch.setattr(trained_space, "train_and_evaluate", train_emptying_filters)
    result = run_trial(search.space, search.objective, search.context, TrialTask(0, arch, 0))
    assert result.ok, result.error
    before = search.context.latency.cheap_metrics(arch)["latency_ms"]
    lut = search.context.latency.predictor
    assert result.metrics["latency_ms"] == pytest.approx(lut.predict_trained(models[0]))
    assert result.metrics["latency_ms"] < 0.9 * before
