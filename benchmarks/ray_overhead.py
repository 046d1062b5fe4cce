"""Per-trial overhead of the executors on a trivial trial (a space whose evaluate returns at once).

For local, ray and tune a full sparsenas search runs (random strategy, journal, checkpoint, TensorBoard,
`--workers 1` so that trials run one after another); for bare Ray Tune, `Tuner` with `OptunaSearch()` and
every other setting at its default. Overhead per trial = time from the first finished trial to the last
/ (trials - 1), i.e. with warm workers (each trial stamped by a `Search.callbacks` hook once it is journaled);
the total (start-up included) / trials is shown too. Ray is started once, before the runs, as a search without
`--address` starts it (`LocalRay`: loopback only, token auth); local runs before and after ray/tune and is
averaged (the loop's fsyncs dominate it and drift with the disk), and "warm - local" is what the executor adds.
`--trained N` first times N DASS trials with local (torch's threads, then 1 thread) and with ray.

    nice -n 10 python benchmarks/ray_overhead.py [--trials 200] [--skip-bare] [--trained 8]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from sparsenas.assemble import resolve
from sparsenas.search import Search
from sparsenas.space import Int, SearchSpace, register_space


@register_space("noop")
class NoopSpace(SearchSpace):
    """A trivial trial: one integer dim; evaluate returns immediately."""

    def dims(self):
        return {"x": Int(0, 10**9)}

    def evaluate(self, arch, seed, context):
        return {"val_acc": arch["x"] / 1e9}


def run_search(executor: str, trials: int, root: Path) -> tuple[float, float]:
    """(warm seconds per trial, total seconds per trial) of a sparsenas search."""
    config = resolve([{"space": {"name": "noop"}, "strategy": {"name": "random"}, "search": {"budget": trials},
                       "execution": {"executor": executor, "workers": 1}}])
    search = Search(config, root / f"{executor}-{time.monotonic_ns()}", progress=False)
    stamps: list[float] = []
    search.callbacks.append(lambda result: stamps.append(time.perf_counter()))  # after each trial is journaled
    start = time.perf_counter()
    results = search.run()
    assert len(results) == trials and all(r.ok for r in results), "a trivial trial failed"
    return (stamps[-1] - stamps[0]) / (trials - 1), (stamps[-1] - start) / trials


def run_bare_tune(trials: int, root: Path) -> tuple[float, float]:
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    stamps: list[float] = []

    class Stamp(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            stamps.append(time.perf_counter())

    def trivial(config):
        tune.report({"val_acc": config["x"] / 1e9})

    tuner = tune.Tuner(trivial, param_space={"x": tune.randint(0, 10**9)},
                       tune_config=tune.TuneConfig(search_alg=OptunaSearch(), metric="val_acc", mode="max",
                                                   num_samples=trials),
                       run_config=tune.RunConfig(storage_path=str(root / "bare"), verbose=0, callbacks=[Stamp()]))
    start = time.perf_counter()
    grid = tuner.fit()
    assert len(grid) == trials and not grid.errors
    return (stamps[-1] - stamps[0]) / (trials - 1), (stamps[-1] - start) / trials


def run_trained(executor: str, trials: int, workers: int, root: Path) -> float:
    """Wall seconds of a small DASS search (digits, 2 epochs), start-up included: what a user waits."""
    root = root / f"trained-{executor}-{time.monotonic_ns()}"
    config = resolve([{"space": {"name": "dass"}, "strategy": {"name": "random"}, "search": {"budget": trials},
                       "train": {"epochs": 2}, "execution": {"executor": executor, "workers": workers}}])
    start = time.perf_counter()
    results = Search(config, root, progress=False).run()
    assert len(results) == trials and all(r.ok for r in results)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--skip-bare", action="store_true", help="skip bare Ray Tune (slow: about 1-2 s a trial)")
    parser.add_argument("--trained", type=int, default=0, metavar="N",
                        help="also time N DASS trials with local vs ray (--workers = CPU count), Ray start-up included")
    args = parser.parse_args()
    trained = {}
    if args.trained:
        with tempfile.TemporaryDirectory() as tmp:
            workers = os.cpu_count() or 1
            trained["local"] = run_trained("local", args.trained, 1, Path(tmp))
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # what each Ray worker gets (OMP_NUM_THREADS = its CPUs)
            trained["local_1thread"] = run_trained("local", args.trained, 1, Path(tmp))
            torch.set_num_threads(threads)
            trained["ray"] = run_trained("ray", args.trained, workers, Path(tmp))
        print(f"\n{args.trained} DASS trials (digits, 2 epochs), wall seconds with start-up")
        for name, seconds in trained.items():
            print(f"{name:<14}{seconds:>10.1f} s" + (f"  ({workers} workers)" if name == "ray" else ""))
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from sparsenas.execution.ray_cluster import LocalRay

    rows = {}
    t = time.perf_counter()
    cluster = LocalRay(num_cpus=2)  # what a search without --address starts: loopback only, token auth
    ray_start = time.perf_counter() - t
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            # local before and after the others (averaged): the loop's fsyncs dominate and drift with the disk
            first_local = run_search("local", args.trials, root / "a")
            rows["ray"] = run_search("ray", args.trials, root)
            rows["tune"] = run_search("tune", args.trials, root)
            second_local = run_search("local", args.trials, root / "b")
            rows = {"local": tuple((a + b) / 2 for a, b in zip(first_local, second_local)), **rows}
            if not args.skip_bare:
                rows["bare_tune"] = run_bare_tune(args.trials, root)
    finally:
        cluster.stop()
    print(f"\n{args.trials} trivial trials per executor (ray.init: {ray_start:.1f} s, not counted)")
    print(f"{'executor':<12}{'warm ms/trial':>15}{'total ms/trial':>16}{'warm - local':>14}")
    for name, (warm, total) in rows.items():
        print(f"{name:<12}{warm * 1000:>15.1f}{total * 1000:>16.1f}{(warm - rows['local'][0]) * 1000:>14.1f}")
    print("RESULT " + " ".join([*(f"overhead_ms_{name}={warm * 1000:.1f}" for name, (warm, _) in rows.items()),
                                *(f"trained_s_{name}={seconds:.1f}" for name, seconds in trained.items())]))


if __name__ == "__main__":
    main()
