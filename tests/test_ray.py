"""The ray and tune executors on a real 2-node Ray cluster on loopback (one cluster for the module)."""
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")
from ray import cloudpickle  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from sparsenas.assemble import resolve  # noqa: E402
from sparsenas.config import CORE  # noqa: E402
from sparsenas.execution import EXECUTORS  # noqa: E402
from sparsenas.search import Search  # noqa: E402
from sparsenas.space import SPACES, Arch, Categorical, SearchSpace, SuperNet, SupernetSearch  # noqa: E402
from sparsenas.testing import check_executor  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module

LOOPBACK = "127.0.0.2"  # Ray replaces 127.0.0.1 with the host's address; other 127.x stay on loopback


class ProbeSpace(SearchSpace):
    """x in 0..7, val_acc = x/8 after `epochs` epochs of `sleep_s` each (reported through `on_epoch`); a marker
    file `<marker_dir>/<x>-<pid>` when a trial starts; x in `die` kills its worker, x in `hang` never ends,
    x in `slow` sleeps 3 s more."""

    defaults = {"sleep_s": 0.1, "marker_dir": "", "die": [], "hang": [], "slow": []}

    def dims(self):
        return {"x": Categorical(tuple(range(8)))}

    def cheap_metrics(self, arch, context):
        return {"cost": float(arch["x"])}

    def evaluate(self, arch, seed, context, on_epoch=None):
        x = arch["x"]
        if self.options["marker_dir"]:
            Path(self.options["marker_dir"], f"{x}-{os.getpid()}").touch()
        if x in self.options["die"]:
            os.kill(os.getpid(), signal.SIGKILL)
        if x in self.options["hang"]:
            time.sleep(3600)
        if x in self.options["slow"]:
            time.sleep(3)
        epochs = context.train["epochs"]
        for epoch in range(epochs):
            time.sleep(self.options["sleep_s"])
            if on_epoch is not None:
                on_epoch(epoch, {"val_acc": x / 8 * (epoch + 1) / epochs})
        return {"val_acc": x / 8, "test_acc": x / 8}


@pytest.fixture(scope="module")
def cluster():
    SPACES.register("probe")(ProbeSpace)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False,
                                                      "node_ip_address": LOOPBACK})
    try:
        c.add_node(num_cpus=2, node_ip_address=LOOPBACK)
        ray.init(address=c.address, _node_ip_address=LOOPBACK, logging_level="WARNING")
        c.wait_for_nodes()
        yield {n["NodeID"][:12] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
        c.shutdown()
        SPACES._items.pop("probe", None)


def search(tmp_path, budget=8, space=None, execution=None, train=None, name="run"):
    config = resolve([{"space": {"name": "probe", **(space or {})}, "strategy": {"name": "random"},
                       "search": {"budget": budget, "seed": 3}, "train": {"epochs": 1, **(train or {})},
                       "execution": {"executor": "ray", "workers": 4, **(execution or {})}}])
    run_dir = tmp_path / name
    Search(config, run_dir, progress=False).run()
    return [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines()]


def node(worker):
    from sparsenas.execution.ray import node_of

    return node_of(worker)


def pid(worker):
    return int(worker.rsplit(":", 1)[1])


def check_complete(recs, budget=8):
    assert sorted(r["trial"] for r in recs) == list(range(budget))
    assert len({r["arch"]["x"] for r in recs}) == budget


def test_ray_trials_land_on_both_nodes_and_stream_in(cluster, tmp_path):
    recs = search(tmp_path, space={"sleep_s": 0.3, "slow": [0]})
    check_complete(recs)
    slow = next(i for i, r in enumerate(recs) if r["arch"]["x"] == 0)
    assert any(r["trial"] > recs[slow]["trial"] for r in recs[:slow])  # later trials were journalled first
    assert all(r["status"] == "ok" and r["metrics"]["val_acc"] == r["arch"]["x"] / 8 for r in recs)
    assert {node(r["worker"]) for r in recs} == cluster
    assert len({r["worker"] for r in recs}) >= 3  # several warm workers, each running several trials


def test_worker_killed_mid_trial_is_retried_on_another_worker(cluster, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    killed = {}

    def kill_first_trial():
        while not killed:
            for m in markers.iterdir():
                x, victim = map(int, m.name.split("-"))
                os.kill(victim, signal.SIGKILL)
                killed.update(x=x, pid=victim)
                return
            time.sleep(0.02)

    threading.Thread(target=kill_first_trial, daemon=True).start()
    recs = search(tmp_path, space={"sleep_s": 1.0, "marker_dir": str(markers)}, execution={"workers": 2})
    check_complete(recs)
    assert killed and all(r["status"] == "ok" for r in recs)
    (victim_rec,) = [r for r in recs if r["arch"]["x"] == killed["x"]]
    assert pid(victim_rec["worker"]) != killed["pid"]
    assert len(list(markers.glob(f"{killed['x']}-*"))) == 2  # started twice: killed, then retried


def test_worker_dying_on_every_attempt_is_recorded_failed(cluster, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    recs = search(tmp_path, space={"die": [3], "marker_dir": str(markers)}, execution={"retries": 1})
    check_complete(recs)
    (dead,) = [r for r in recs if r["arch"]["x"] == 3]
    assert dead["status"] == "failed" and "died" in dead["error"] and "attempt 2 of 2" in dead["error"]
    assert len(list(markers.glob("3-*"))) == 2
    assert all(r["status"] == "ok" for r in recs if r is not dead)


def test_hung_trial_is_killed_after_the_timeout(cluster, tmp_path):
    recs = search(tmp_path, space={"hang": [5]}, execution={"retries": 0, "kill_timeout_s": 2, "workers": 2})
    check_complete(recs)
    (hung,) = [r for r in recs if r["arch"]["x"] == 5]
    assert hung["status"] == "failed" and "kill_timeout_s=2" in hung["error"] and hung["duration_s"] >= 2
    assert all(r["status"] == "ok" for r in recs if r is not hung)


def test_trial_larger_than_any_node_is_a_config_error(cluster, tmp_path):
    from sparsenas.errors import ConfigError

    with pytest.raises(ConfigError, match="cpus_per_trial=3 but the largest Ray node has 2 CPU"):
        search(tmp_path, execution={"cpus_per_trial": 3})


def test_default_workers_fill_the_cluster(cluster):
    from sparsenas.execution.ray import workers

    def default(cpus, gpus=0):
        return workers({"workers": None, "cpus_per_trial": cpus, "gpus_per_trial": gpus})

    assert (default(1), default(0.5), default(2), default(1.5), default(3)) == (4, 8, 2, 2, 1)  # 2 nodes x 2 CPU
    assert default(1, gpus=1) == 1  # no GPU anywhere: at least one (check_resources refuses it before)
    assert workers({"workers": 3, "cpus_per_trial": 1, "gpus_per_trial": 0}) == 3  # an explicit --workers wins


def test_tune_executor_journals_every_trial_and_survives_a_dying_worker(cluster, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    recs = search(tmp_path, space={"die": [2], "marker_dir": str(markers)},
                  execution={"executor": "tune", "workers": 3, "retries": 1})
    check_complete(recs)
    (dead,) = [r for r in recs if r["arch"]["x"] == 2]
    assert dead["status"] == "failed" and "failed on every attempt" in dead["error"]
    assert len(list(markers.glob("2-*"))) == 2  # Tune ran it again after its worker died
    ok = [r for r in recs if r is not dead]
    assert all(r["status"] == "ok" and r["metrics"]["val_acc"] == r["arch"]["x"] / 8 for r in ok)
    assert {node(r["worker"]) for r in ok} <= cluster


def test_tune_hung_trial_stops_the_search_instead_of_hanging_it(cluster, tmp_path):
    with pytest.raises(RuntimeError, match="kill_timeout_s=3"):
        search(tmp_path, space={"hang": [5]}, execution={"executor": "tune", "workers": 2, "kill_timeout_s": 3})
    recs = [json.loads(line) for line in (tmp_path / "run" / "trials.jsonl").read_text().splitlines()]
    assert 5 not in {r["arch"]["x"] for r in recs}


def test_tune_asha_stops_weak_trials_after_their_epochs(cluster, tmp_path):
    recs = search(tmp_path, execution={"executor": "tune", "workers": 1, "scheduler": "asha",
                                       "asha_reduction_factor": 2},
                  train={"epochs": 4}, space={"sleep_s": 0.05})
    check_complete(recs)
    stopped = [r for r in recs if r["metrics"].get("stopped_early")]
    assert stopped and len(stopped) < len(recs)
    for r in stopped:  # the last per-epoch report, with the cheap metrics merged in
        m = r["metrics"]
        assert r["status"] == "ok" and m["epochs"] in (1, 2) and m["cost"] == r["arch"]["x"]
        assert m["val_acc"] == pytest.approx(r["arch"]["x"] / 8 * m["epochs"] / 4)
    for r in recs:
        if r not in stopped:
            assert r["metrics"]["test_acc"] == r["arch"]["x"] / 8
    best = max(recs, key=lambda r: r["arch"]["x"])
    assert best not in stopped


def test_strategy_searcher_drives_a_plain_tune_experiment(cluster, tmp_path):
    from ray import tune

    from sparsenas.execution.tune import StrategySearcher
    from sparsenas.objective import Objective
    from sparsenas.strategies import STRATEGIES

    strategy = STRATEGIES.get("random")(ProbeSpace(), Objective(), seed=1)
    told = []
    tell = strategy.tell
    strategy.tell = lambda result: (told.append(result), tell(result))

    def trainable(config):
        tune.report({"val_acc": config["arch"]["x"] / 8})

    tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(
        search_alg=StrategySearcher.from_strategy(strategy, budget=5), num_samples=-1, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    assert len(tuner.fit()) == 5
    assert sorted(r.trial for r in told) == [0, 1, 2, 3, 4]
    assert all(r.status == "ok" and r.metrics["val_acc"] == r.arch["x"] / 8 for r in told)
    assert len({r.arch_id for r in told}) == 5


@pytest.mark.parametrize("name", [n for n in EXECUTORS.names() if n != "local"])
def test_ray_executors_pass_the_conformance_suite(cluster, name):
    """sparsenas.testing.check_executor on the cluster (the local executor runs it in test_conformance.py)."""

    execution = {**{k: f.default for k, f in CORE["execution"].items()}, "executor": name, "workers": 3}
    results = check_executor(lambda *args: EXECUTORS.get(name)(*args, execution))
    assert {node(r.worker) for r in results} <= cluster


class ProbeSupernetSearch(SupernetSearch):
    """4 epochs of 0.3 s; a marker `<marker_dir>/epoch<e>-<pid>` per epoch; the worker dies at epoch `die_at`
    the first time (no marker of that epoch yet)."""

    epochs = 4
    defaults = {"marker_dir": "", "die_at": -1}

    def __init__(self, space, context, seed, options):
        self.o, self.done = self.resolve_options(options), 0

    def run_epoch(self, epoch):
        marker = Path(self.o["marker_dir"])
        if epoch == self.o["die_at"] and not list(marker.glob(f"epoch{epoch}-*")):
            (marker / f"epoch{epoch}-{os.getpid()}-died").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.3)
        (marker / f"epoch{epoch}-{os.getpid()}").touch()
        self.done += 1
        return {"loss": float(epoch)}, {}

    def derive(self):
        return Arch({"x": self.done})

    def state_dict(self):
        return {"done": self.done}

    def load_state_dict(self, state):
        self.done = state["done"]


class ProbeSuperSpace(ProbeSpace, SuperNet):
    def supernet_search_class(self):
        return ProbeSupernetSearch


def test_a_supernet_job_runs_on_a_worker_reports_its_epochs_and_a_retry_continues_from_the_last(cluster, tmp_path):
    SPACES.register("probe_super")(ProbeSuperSpace)
    markers = tmp_path / "markers"
    markers.mkdir()
    try:
        config = resolve([{"space": {"name": "probe_super"}, "strategy": {
            "name": "differentiable", "options": {"marker_dir": str(markers), "die_at": 2}},
            "search": {"budget": 1, "seed": 3}, "train": {"epochs": 1},
            "execution": {"executor": "ray", "workers": 2, "retries": 1}}])
        search = Search(config, tmp_path / "run", progress=False)
        reports = []
        on_epoch = search._on_epoch
        search._on_epoch = lambda report: reports.append(report.epoch) or on_epoch(report)
        (result,) = search.run()
    finally:
        SPACES._items.pop("probe_super", None)
    assert result.ok and result.arch["x"] == 4 and result.worker != "local"
    assert reports == [0, 1, 2, 3]  # streamed to the driver while the worker trained
    ran = sorted(m.name for m in markers.iterdir())
    assert [m for m in ran if m.endswith("died")] and len([m for m in ran if m.startswith("epoch0")]) == 1
    saved = torch.load(tmp_path / "run" / "state" / "supernet.pt", weights_only=True)
    assert saved == {"trial": 0, "epoch": 4, "search": {"done": 4}}
