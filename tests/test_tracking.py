"""TensorBoard logs (read back with EventAccumulator), hypervolume, `sparsenas report` and its figures."""
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from matplotlib.image import imread
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

from conftest import FAST, ROOT, cli, cli_subprocess_cmd
from sparsenas.errors import ConfigError
from sparsenas.journal import TrialResult
from sparsenas.objective import Objective, hypervolume
from sparsenas.space import Arch
from sparsenas.tensorboard_server import background
from sparsenas.tracking import TensorBoardLogger

CHROMIUM = "/usr/bin/chromium"


def accumulator(path):
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalars(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def sessions(tb):
    """{run name: (hparams, end status)} of every HParams session under tb/."""
    out = {}
    for run in sorted(p for p in tb.iterdir() if p.is_dir()):
        content = accumulator(run).PluginTagToContent(metadata.PLUGIN_NAME)
        if metadata.SESSION_START_INFO_TAG in content:
            start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
            end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
            hparams = {k: v.string_value or v.number_value for k, v in start.hparams.items()}
            out[run.name] = (start.group_name, hparams, api_pb2.Status.Name(end.status))
    return out


# -- hypervolume ------------------------------------------------------------------------------------------

def brute_force_hypervolume(points, ref):
    """Count unit cells of an integer grid dominated by some point (all coordinates maximised)."""
    ranges = [range(r, max(p[i] for p in points)) for i, r in enumerate(ref)]
    return sum(any(all(c + 1 <= p[i] for i, c in enumerate(cell)) for p in points)
               for cell in itertools.product(*ranges))


@pytest.mark.parametrize("dims", [1, 2, 3, 4])
def test_hypervolume_is_exact_on_integer_grids(dims):
    rng = random.Random(dims)
    for _ in range(15):
        points = [[rng.randint(1, 5) for _ in range(dims)] for _ in range(rng.randint(1, 7))]
        assert hypervolume(points, [0] * dims) == brute_force_hypervolume(points, [0] * dims)


def test_hypervolume_matches_optuna_and_ignores_points_beyond_the_reference():
    compute = pytest.importorskip("optuna._hypervolume").compute_hypervolume
    rng = np.random.default_rng(0)
    for dims in (2, 3):
        pts = rng.random((20, dims))
        assert hypervolume(pts, [0.1] * dims) == pytest.approx(
            compute(-pts[(pts > 0.1).all(axis=1)], -np.full(dims, 0.1)))
    assert hypervolume([[0.5, 0.5], [2.0, -1.0]], [0.0, 0.0]) == 0.25
    assert hypervolume([], [0.0, 0.0]) == 0.0


def result(trial, status="ok", **metrics):
    arch = Arch({"width": [8, 16, 32][trial % 3], "op": ["conv", "pool"][trial % 2], "keep": 0.1 * (trial + 1)})
    return TrialResult(trial, arch, f"arch{trial}", status, metrics, duration_s=1.0,
                       error="boom" if status == "failed" else None)


def test_reference_point_rules():
    results = [result(0, val_acc=0.5, flops=100.0, latency_ms=4.0), result(1, val_acc=0.7, flops=300.0, latency_ms=2.0)]
    obj = Objective(["val_acc"], ["flops", "latency_ms"], constraints={"latency_ms": [None, 5.0]})
    # val_acc: a fraction, 0; flops: 10% beyond the worst seen (300); latency_ms: the constraint's high bound
    assert obj.reference_point(results) == pytest.approx([0.0, -330.0, -5.0])
    obj = Objective(["val_acc"], ["flops"], reference={"flops": 1000, "val_acc": 0.2})
    assert obj.reference_point([]) == [0.2, -1000.0]
    assert obj.hypervolume(results) == pytest.approx((0.7 - 0.2) * (1000 - 300) + (0.5 - 0.2) * (300 - 100))
    assert Objective(["val_acc"], ["flops"]).reference_point([]) is None
    with pytest.raises(ConfigError, match="objective.reference.params: not an objective"):
        Objective(["val_acc"], ["flops"], reference={"params": 3})
    with pytest.raises(ConfigError, match="must be a finite number"):
        Objective(["val_acc"], ["flops"], reference={"flops": "big"})


def test_bad_reference_is_a_one_line_error(runs, capsys):
    assert cli("search", "--space", "dass", "--strategy", "random", "--runs-dir", runs,
               "--set", "objective.reference={params: 1}") == 2
    err = capsys.readouterr().err
    assert "objective.reference.params" in err and err.count("\n") == 1
    assert not runs.exists() or not any(runs.iterdir())


# -- TensorBoardLogger on synthetic trials ----------------------------------------------------------------

def test_logger_writes_search_curves_sessions_and_front(tmp_path):
    obj = Objective(["val_acc"], ["flops"], reference={"flops": 1000})
    trials = [result(0, val_acc=0.5, flops=400.0), result(1, "failed"), result(2, val_acc=0.4, flops=100.0),
              result(3, "infeasible", flops=5000.0), result(4, val_acc=0.8, flops=600.0),
              result(5, val_acc=0.3, flops=700.0)]
    tb = TensorBoardLogger(tmp_path / "tb", obj)
    for n in range(len(trials)):
        tb.log(trials[n], trials[:n + 1])
    tb.log_epoch(0, {"loss": 2.0, "alpha_entropy": 1.5}, {"genotype": "normal: conv~0"})
    tb.log_epoch(1, {"loss": 1.0, "alpha_entropy": 1.2}, {"genotype": "normal: pool~1"})
    tb.close()

    acc = accumulator(tmp_path / "tb")
    assert scalars(acc, "trial/val_acc") == [(0, 0.5), (2, pytest.approx(0.4)), (4, pytest.approx(0.8)),
                                             (5, pytest.approx(0.3))]
    assert scalars(acc, "trial/flops")[2] == (3, 5000.0)  # the infeasible trial's cheap metric
    assert [v for _, v in scalars(acc, "best/val_acc")] == pytest.approx([0.5, 0.5, 0.5, 0.5, 0.8, 0.8])
    assert [s for s, _ in scalars(acc, "best/val_acc")] == [1, 2, 3, 4, 5, 6]
    assert [v for _, v in scalars(acc, "best/flops")] == [400, 400, 100, 100, 100, 100]
    time_steps = [s for s, _ in scalars(acc, "best_by_time/val_acc")]
    assert time_steps == sorted(set(time_steps)) and len(time_steps) == 6
    assert [v for _, v in scalars(acc, "search/failed")] == [0, 1, 1, 1, 1, 1]
    assert [v for _, v in scalars(acc, "search/infeasible")] == [0, 0, 0, 1, 1, 1]
    assert [v for _, v in scalars(acc, "search/ok")] == [1, 1, 2, 2, 3, 4]
    assert [v for _, v in scalars(acc, "search/pareto_size")] == [1, 1, 2, 2, 3, 3]
    hv = [(0.5 * 600), (0.5 * 600), (0.5 * 600 + 0.4 * 300), (0.5 * 600 + 0.4 * 300),
          (0.8 * 400 + 0.5 * 200 + 0.4 * 300), (0.8 * 400 + 0.5 * 200 + 0.4 * 300)]
    assert [v for _, v in scalars(acc, "search/hypervolume")] == pytest.approx(hv)
    assert {v for _, v in scalars(acc, "hypervolume_ref/flops")} == {1000.0}
    images = acc.Images("search/pareto_front")
    assert [i.step for i in images] == [1, 3, 5, 6]  # redrawn after every ok trial
    assert images[-1].width > 300 and images[-1].encoded_image_string.startswith(b"\x89PNG")
    assert [v for _, v in scalars(acc, "supernet/alpha_entropy")] == pytest.approx([1.5, 1.2])
    texts = [t.tensor_proto.string_val[0].decode() for t in acc.Tensors("supernet/genotype/text_summary")]
    assert texts == ["normal: conv~0", "normal: pool~1"]

    found = sessions(tmp_path / "tb")
    assert sorted(found) == [f"trial-{t:04d}" for t in range(6)]
    group, hparams, status = found["trial-0004"]
    assert group == "trial-0004" and status == "STATUS_SUCCESS"
    assert hparams == {"width": 16, "op": "conv", "keep": pytest.approx(0.5), "status": "ok"}
    assert found["trial-0001"][2] == "STATUS_FAILURE" and found["trial-0003"][2] == "STATUS_FAILURE"
    assert scalars(accumulator(tmp_path / "tb" / "trial-0004"), "trial/val_acc") == [(4, pytest.approx(0.8))]


def test_single_objective_logs_no_front_metrics(tmp_path):
    tb = TensorBoardLogger(tmp_path / "tb", Objective(["val_acc"]))
    trials = [result(0, val_acc=0.5, params=10.0), result(1, val_acc=0.6, params=20.0)]
    for n in range(2):
        tb.log(trials[n], trials[:n + 1])
    tb.close()
    tags = accumulator(tmp_path / "tb").Tags()
    assert "best/val_acc" in tags["scalars"] and "search/hypervolume" not in tags["scalars"]
    assert tags["images"] == ["search/pareto_front"]  # val_acc against the cost metric params


def test_out_of_order_trials_and_a_resumed_logger_keep_every_point(tmp_path):
    """Parallel executors finish trials out of order; --resume opens a second logger on the same tb/."""
    obj = Objective(["val_acc"], ["flops"])
    trials = [result(1, val_acc=0.6, flops=50.0), result(0, val_acc=0.5, flops=40.0), result(2, val_acc=0.7, flops=90.0)]
    tb = TensorBoardLogger(tmp_path / "tb", obj)
    tb.log(trials[0], trials[:1])
    tb.log(trials[1], trials[:2])
    tb.close()
    first_steps = [s for s, _ in scalars(accumulator(tmp_path / "tb"), "best_by_time/val_acc")]
    event_file = next((tmp_path / "tb").glob("events.out.tfevents.*"))
    parts = event_file.name.split(".")
    parts[3] = str(int(parts[3]) - 100)  # as if the run had started 100 s earlier
    event_file.rename(event_file.with_name(".".join(parts)))
    resumed = TensorBoardLogger(tmp_path / "tb", obj)
    assert resumed.start == int(parts[3])  # the clock starts at the first event file, not at the resume
    resumed.log(trials[2], trials)
    resumed.close()
    acc = accumulator(tmp_path / "tb")
    assert sorted(scalars(acc, "trial/val_acc")) == [(0, 0.5), (1, pytest.approx(0.6)), (2, pytest.approx(0.7))]
    assert [s for s, _ in scalars(acc, "best/val_acc")] == [1, 2, 3]
    time_steps = [s for s, _ in scalars(acc, "best_by_time/val_acc")]
    assert time_steps[:2] == first_steps and time_steps[2] >= 100
    assert len(sessions(tmp_path / "tb")) == 3


# -- a real search, its event files and `sparsenas report` ------------------------------------------------

@pytest.fixture(scope="module")
def search_runs(tmp_path_factory):
    """Two tiny dass searches (random, different seeds); one constraint makes some trials infeasible."""
    root = tmp_path_factory.mktemp("runs")
    for name, seed in (("r1", 0), ("r2", 1)):
        assert cli("search", "--space", "dass", "--strategy", "random", "--budget", 4, "--seed", seed,
                   "--name", name, "--runs-dir", root, *FAST, "--set", "space.keep_ratios=[0.05,0.5]",
                   "--set", "objective.constraints={flops_sparse: [null, 60000]}") == 0
    return root / "r1", root / "r2"


def journal(run):
    return [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]


def test_search_event_files(search_runs):
    run = search_runs[0]
    recs = journal(run)
    acc = accumulator(run / "tb")
    tags = set(acc.Tags()["scalars"])
    for tag in ("trial/val_acc", "trial/flops_sparse", "trial/sparsity", "best/val_acc", "best/flops_sparse",
                "best_by_time/val_acc", "best_by_time/flops_sparse", "search/ok", "search/failed",
                "search/infeasible", "search/pareto_size", "search/hypervolume"):
        assert tag in tags
    assert [s for s, _ in scalars(acc, "search/infeasible")] == list(range(1, len(recs) + 1))
    assert scalars(acc, "search/infeasible")[-1][1] == sum(r["status"] == "infeasible" for r in recs)
    best = max(r["metrics"]["val_acc"] for r in recs if r["status"] == "ok")
    assert scalars(acc, "best/val_acc")[-1][1] == pytest.approx(best)
    found = sessions(run / "tb")
    assert len(found) == len(recs) == 4  # one HParams session per trial
    for rec in recs:
        _, hparams, _ = found[f"trial-{rec['trial']:04d}"]
        assert hparams.pop("status") == rec["status"]
        assert hparams == {k: pytest.approx(v) if isinstance(v, float) else v for k, v in rec["arch"].items()}
    if any(r["status"] == "ok" for r in recs):
        assert acc.Images("search/pareto_front")[-1].encoded_image_string.startswith(b"\x89PNG")


def test_report_compares_runs_and_writes_figures(search_runs, tmp_path, capsys):
    r1, r2 = search_runs
    assert cli("report", r1, r2, "--out", tmp_path / "figs", "--top", 3) == 0
    out = capsys.readouterr().out
    assert "comparison:" in out and "r1 (random)" in out and "r2 (random)" in out
    assert "hypervolume reference, common to all runs" in out
    obj = Objective(["val_acc"], ["flops_sparse"], {"flops_sparse": [None, 60000]})
    results = [TrialResult.from_record(r) for r in journal(r1)]
    both = results + [TrialResult.from_record(r) for r in journal(r2)]
    hv = obj.hypervolume(results, obj.reference_point(both))
    row = next(line for line in out.splitlines() if line.startswith("r1 (random)"))
    assert float(row.split()[-1]) == pytest.approx(hv, rel=1e-5)
    for name in ("pareto.png", "trajectory.png"):
        img = imread(tmp_path / "figs" / name)
        assert img.shape[0] > 200 and img.std() > 0.05  # a drawn figure, not a blank canvas
    assert not (r1 / "pareto.png").exists()
    assert cli("report", r1) == 0  # default output: the (first) run directory
    assert (r1 / "pareto.png").is_file() and (r1 / "trajectory.png").is_file()


def test_report_refuses_runs_with_different_objectives(search_runs, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    text = (search_runs[1] / "config.yaml").read_text().replace("- flops_sparse", "- params")
    (other / "config.yaml").write_text(text)
    (other / "trials.jsonl").write_text((search_runs[1] / "trials.jsonl").read_text())
    assert cli("report", search_runs[0], other) == 2
    err = capsys.readouterr().err
    assert "different objectives" in err and err.count("\n") == 1


# -- `sparsenas tensorboard` --------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def listening_addresses(port):
    """Local addresses of the LISTEN sockets on `port` (Linux /proc/net/tcp, tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:
                    found.append(addr)
    return found


@pytest.mark.slow
def test_tensorboard_serves_runs_and_hparams_on_loopback(search_runs, tmp_path):
    run = search_runs[0]
    recs = journal(run)
    port = free_port()
    with background(run, port, log=tmp_path / "tb.log") as url:
        assert url == f"http://127.0.0.1:{port}/"
        assert listening_addresses(port) == ["0100007F"]  # 127.0.0.1 only, no wildcard, no IPv6
        expected = {"."} | {f"trial-{r['trial']:04d}" for r in recs}
        deadline = time.monotonic() + 60
        while set(get_json(url + "data/runs")) != expected:
            assert time.monotonic() < deadline, "TensorBoard did not load the runs within 60 s"
            time.sleep(0.5)
        experiment = get_json(url + "data/plugin/hparams/experiment", {"experimentName": ""})
        assert {h["name"] for h in experiment["hparamInfos"]} == set(recs[0]["arch"]) | {"status"}
        metric_tags = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert {"trial/val_acc", "trial/flops_sparse"} <= metric_tags
        groups = get_json(url + "data/plugin/hparams/session_groups", {
            "experimentName": "", "startIndex": 0, "sliceSize": 100, "colParams": [],
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]})
        by_name = {g["name"]: g for g in groups["sessionGroups"]}
        assert set(by_name) == expected - {"."}  # one session (group) per trial
        for rec in recs:
            group = by_name[f"trial-{rec['trial']:04d}"]
            assert group["hparams"]["status"] == rec["status"]
            values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
            if rec["status"] == "ok":
                assert values["trial/val_acc"] == pytest.approx(rec["metrics"]["val_acc"])
        tags = get_json(url + "data/plugin/scalars/tags")["."]
        assert "search/hypervolume" in tags and "best_by_time/val_acc" in tags
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "data/runs", timeout=5)  # stopped with the block


def test_tensorboard_on_a_non_run_is_a_one_line_error(tmp_path, capsys):
    assert cli("tensorboard", tmp_path) == 2
    err = capsys.readouterr().err
    assert "is not a sparsenas run" in err and err.count("\n") == 1


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM}")
def test_chromium_screenshots_show_the_search(search_runs, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tensorboard_screenshot.py"),
                           search_runs[0], "--out", tmp_path], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("RESULT pages_ok=3 ")
    for page in ("hparams", "scalars", "timeseries"):
        img = imread(tmp_path / f"tensorboard_{page}.png")
        assert img.shape[:2] == (1000, 1600) and img.std() > 0.05


def test_report_of_a_running_search_reads_without_touching_the_journal(search_runs, tmp_path, capsys):
    run = tmp_path / "live"
    run.mkdir()
    (run / "config.yaml").write_text((search_runs[0] / "config.yaml").read_text())
    lines = (search_runs[0] / "trials.jsonl").read_text().splitlines(keepends=True)
    failed = [json.dumps({**json.loads(line), "status": "failed", "metrics": {}}) + "\n" for line in lines[:2]]
    journal_text = "".join(failed) + lines[2][:40]  # two failed trials and one being written
    (run / "trials.jsonl").write_text(journal_text)
    assert cli("report", run) == 0
    out = capsys.readouterr().out
    assert "2 trials (0 ok, 2 failed" in out and "no figures written" in out
    assert (run / "trials.jsonl").read_text() == journal_text  # the torn line is left to the search
    assert not (run / "pareto.png").exists()


def test_tensorboard_on_a_busy_port_is_a_one_line_error(tmp_path):
    (tmp_path / "config.yaml").write_text("{}\n")
    (tmp_path / "tb").mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = subprocess.run(cli_subprocess_cmd("tensorboard", tmp_path, "--port", busy.getsockname()[1]),
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.startswith("sparsenas: error: cannot listen on 127.0.0.1:") and proc.stderr.count("\n") == 1
