"""Early stopping on the ray and tune executors, with the same `scheduler` keys as on local (one private Ray,
started in a temp dir of its own for the module)."""
import shutil
import tempfile

import pytest

ray = pytest.importorskip("ray")
from ray import cloudpickle  # noqa: E402

import scheduler_plugin  # noqa: E402
from sparsenas.errors import ConfigError  # noqa: E402
from sparsenas.search import Search  # noqa: E402
from test_schedulers import check_stopped, search_config  # noqa: E402

cloudpickle.register_pickle_by_value(scheduler_plugin)  # workers cannot import the tests' plug-in


@pytest.fixture(scope="module")
def local_ray():
    temp = tempfile.mkdtemp(prefix="sn-sched-")
    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=temp, logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def run(config):
    return [r.to_record() for r in Search(config, None, progress=False).run()]


def metrics(recs):
    return {r["trial"]: (r["arch_id"], r["metrics"]) for r in recs}


def test_ray_with_one_worker_stops_exactly_as_local(local_ray):
    """One actor runs trials in the local order; each waits for the driver's decision after every epoch, so
    the same epochs are trained and journalled as on the local executor."""
    config = search_config(budget=8, scheduler={"name": "asha", "reduction_factor": 2})
    local = run(config)
    remote = run({**config, "execution": {**config["execution"], "executor": "ray", "workers": 1}})
    assert metrics(remote) == metrics(local)
    assert check_stopped(remote) and all(r["worker"] != "local" for r in remote)


@pytest.mark.parametrize("name", ["median", "hyperband"])
def test_ray_workers_stop_on_several_objectives(local_ray, name):
    config = search_config(budget=10, objective={"maximize": ["val_acc"], "minimize": ["cost"]},
                           scheduler={"name": name, "grace_period": 2}, space={"name": "curves", "sleep_s": 0.02})
    recs = run({**config, "execution": {**config["execution"], "executor": "ray", "workers": 2}})
    assert sorted(r["trial"] for r in recs) == list(range(10))
    check_stopped(recs)


def test_tune_takes_the_same_keys_and_one_metric(local_ray):
    config = search_config(budget=8, scheduler={"name": "asha", "reduction_factor": 2})
    recs = run({**config, "execution": {**config["execution"], "executor": "tune", "workers": 1}})
    stopped = check_stopped(recs)
    assert stopped and max(recs, key=lambda r: r["arch"]["x"]) not in stopped
    several = search_config(objective={"maximize": ["val_acc"], "minimize": ["cost"]})
    with pytest.raises(ConfigError, match="Ray Tune's schedulers judge one metric"):
        run({**several, "execution": {**several["execution"], "executor": "tune"}})
