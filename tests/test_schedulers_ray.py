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
from test_schedulers import check_curves, check_stopped, records, search_config  # noqa: E402

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


def test_tune_logs_each_trials_curve_and_the_stopped_count(local_ray, tmp_path):
    """Tune's per-epoch reports reach TensorBoard through the loop's tracking, as on local: one curve run per
    trial with every epoch it trained (the last one too), and search/stopped_early."""
    config = search_config(budget=6, epochs=4, scheduler={"name": "asha", "reduction_factor": 2})
    Search({**config, "execution": {**config["execution"], "executor": "tune", "workers": 1}}, tmp_path / "run",
           progress=False).run()
    recs = records(tmp_path / "run")
    assert 0 < len(check_stopped(recs, epochs=4)) < len(recs)
    check_curves(tmp_path / "run", recs, epochs=4)


def test_tune_stops_every_trial_after_max_epochs_also_with_the_median_rule(local_ray):
    """Tune's MedianStoppingRule has no max_t: scheduler.max_epochs < train.epochs still ends each trial there."""
    config = search_config(budget=3, epochs=4, scheduler={"name": "median", "max_epochs": 2})
    recs = run({**config, "execution": {**config["execution"], "executor": "tune", "workers": 1}})
    assert [r["metrics"]["epochs"] for r in recs] == [2.0] * 3  # median needs three others before it stops one
    check_stopped(recs, epochs=4)


@pytest.mark.parametrize("metric", ["cost", "train_loss"])
def test_tune_judges_a_scheduler_metric_other_than_the_first_objective(local_ray, metric):
    """Every report of a trial carries the scheduler's metric, the final one too (Tune refuses a result without),
    an objective (cost) or a training metric that is none (train_loss)."""
    config = search_config(budget=4, epochs=2, objective={"maximize": ["val_acc"], "minimize": ["cost"]},
                           scheduler={"name": "asha", "metrics": [metric], "reduction_factor": 2})
    recs = run({**config, "execution": {**config["execution"], "executor": "tune", "workers": 1}})
    assert sorted(r["trial"] for r in recs) == list(range(4))
    check_stopped(recs, epochs=2)
