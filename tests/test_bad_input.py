"""Bad input from a careless or hostile user: one line on stderr, exit 2, nothing written — checked before any
work. Also: a search whose every trial failed exits 1, and a closed stdout (`| head`) ends quietly."""
import json
import os
import subprocess

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, cli, cli_subprocess_cmd
from test_export import _fake_run

TABLE = SHARED_DATA / "nb201" / "nb201_cifar.csv"
NB201 = ["search", "--space", "nb201", "--strategy", "random", "--set", f"space.benchmark_file={TABLE}",
         "--budget", 2, "--quiet"]
FIT = ["latency", "fit", "--space", "nb201", "--arch-column", "arch_str", "--latency-column", "c10_test_12",
       "--table"]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def one_line(capsys, message):
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
def small_table(tmp_path):
    """The first rows of the NB201 table: enough to fit a latency predictor in a moment."""
    path = tmp_path / "small.csv"
    path.write_text("".join(TABLE.read_text().splitlines(keepends=True)[:41]))
    return path


@pytest.fixture
def nb201_run(tmp_path):
    assert cli(*NB201, "--budget", 3, "--name", "nb", "--runs-dir", tmp_path / "runs") == 0
    return tmp_path / "runs" / "nb"


# -- search: refused before anything is written ---------------------------------------------------------
def _file(tmp_path):
    (tmp_path / "runs").write_text("not a directory\n")


def _symlink_loop(tmp_path):
    (tmp_path / "runs").symlink_to(tmp_path / "runs")


def _not_utf8_space(tmp_path):
    (tmp_path / "space.yaml").write_bytes(b"space: {name: nb201, C: \xff}\n")


@pytest.mark.parametrize("args,prepare,message", [
    pytest.param(["--device", "cuda"], None, "CUDA is not available", marks=no_cuda),
    (["--set", "objective.maximize=[bogus]"], None, "objective metric 'bogus' is never produced"),
    (["--set", "objective.minimize=[latency_ms]"], None, "objective metric 'latency_ms' is never produced"),
    (["--set", "objective.constraints={bogus: [0, 1]}"], None, "objective.constraints metric 'bogus'"),
    (["--set", "objective.maximize=[val_acc, val_acc]"], None, "names 'val_acc' more than once"),
    (["--set", "execution.cpus_per_trial=1e12"], None, "but this machine has"),
    (["--set", "execution.gpus_per_trial=64"], None, "but this machine has"),
    (["--seed", 2 ** 40, "--strategy", "tpe"], None, "search.seed must be in 0..4294967295"),
    (["--name", "x" * 300], None, "a name is longer than"),
    (["--name", ""], None, "--name must be a plain directory name"),
    (["--name", "tab\there"], None, "--name must be a plain directory name"),
    ([], _file, "one of its parents is not a directory"),
    ([], _symlink_loop, "Too many levels of symbolic links"),
    (["--space", "SPACE"], _not_utf8_space, "is not UTF-8 text"),
])
def test_search_refused_before_writing(args, prepare, message, tmp_path, capsys):
    if prepare is not None:
        prepare(tmp_path)
    before = listing(tmp_path)
    args = [tmp_path / "space.yaml" if a == "SPACE" else a for a in args]
    assert cli(*NB201, *args, "--runs-dir", tmp_path / "runs") == 2
    one_line(capsys, message)
    assert listing(tmp_path) == before


def test_read_only_runs_dir_is_refused(tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o555)
    access = os.access  # root may write anyway: answer as the file system would for anyone else
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == str(runs) else access(p, mode))
    assert cli(*NB201, "--name", "r", "--runs-dir", runs) == 2
    one_line(capsys, "is not writable")
    assert listing(runs) == []


def test_resume_of_a_run_whose_config_is_not_utf8(nb201_run, capsys):
    (nb201_run / "config.yaml").write_bytes(b"\xff\xfe garbage")
    assert cli("search", "--resume", "--name", "nb", "--runs-dir", nb201_run.parent, "--quiet") == 2
    one_line(capsys, "is not UTF-8 text")


def test_metrics_of_a_latency_predictor_count(small_table, tmp_path, capsys):
    """latency_reward exists only with latency.reward_target_ms; latency_ms with a predictor."""
    predictor = tmp_path / "p.json"
    assert cli(*FIT, small_table, "--out", predictor) == 0
    with_latency = [*NB201, "--set", "latency.predictor=learned", "--set", f"latency.file={predictor}",
                    "--runs-dir", tmp_path / "runs"]
    assert cli(*with_latency, "--set", "objective.minimize=[latency_reward]", "--name", "a") == 2
    one_line(capsys, "objective metric 'latency_reward' is never produced")
    assert cli(*with_latency, "--set", "objective.minimize=[latency_ms]", "--name", "b") == 0


def test_a_search_in_which_every_trial_failed_exits_1(runs, capsys):
    assert cli("--allow-import", "faulty_plugin", "search", "--space", "faulty", "--strategy", "random",
               "--set", "space.modes=[raise]", "--budget", 3, "--name", "f", "--runs-dir", runs, "--quiet") == 1
    one_line(capsys, "every trial failed; the first with: RuntimeError: evaluator exploded")
    assert len((runs / "f" / "trials.jsonl").read_text().splitlines()) == 3


# -- the metrics a space declares are the metrics its trials have ---------------------------------------
@pytest.mark.parametrize("space,options", [
    ("nb201", {"benchmark_file": str(TABLE)}),
    ("nb201", {"mode": "train", "C": 2, "N": 1}),
    ("dass", {"C": 4, "layers": 1}),
    ("sparse_ift", {"C": 4}),
    ("node_subnet", {"hidden": [8, 4]}),
    ("tas", {"depth": 8, "C": 4}),
    ("tas", {"depth": 8, "C": 4, "distill": False}),
])
def test_declared_metrics_are_what_a_trial_produces(space, options):
    from sparsenas.assemble import resolve
    from sparsenas.evaluation import TrialTask, run_trial
    from sparsenas.search import Search

    config = resolve([{"space": {"name": space, **options}, "strategy": {"name": "random"},
                       "train": {"epochs": 1}, "data": {"limit": 64}}])
    search = Search(config, "unused")
    arch = search.space.sample(np.random.default_rng(0))
    result = run_trial(search.space, search.objective, search.context, TrialTask(0, arch, 0))
    assert result.ok, result.error
    assert set(result.metrics) == search.space.metrics()


# -- report -----------------------------------------------------------------------------------------------
def test_report_of_a_config_that_is_not_utf8(nb201_run, capsys):
    (nb201_run / "config.yaml").write_bytes(b"space: \xff\n")
    assert cli("report", nb201_run) == 2
    one_line(capsys, "is not UTF-8 text")


def test_report_of_a_config_without_space(nb201_run, capsys):
    (nb201_run / "config.yaml").write_text("objective: {maximize: [val_acc], minimize: [], constraints: {}}\n")
    assert cli("report", nb201_run) == 2
    one_line(capsys, "is not a sparsenas run config")


@pytest.mark.parametrize("args,message", [
    (["--top", "-1"], "--top must be >= 0"),
    (["--out", "FILE"], "is not a directory"),
])
def test_report_bad_options(args, message, nb201_run, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    args = [tmp_path / "file" if a == "FILE" else a for a in args]
    assert cli("report", nb201_run, *args) == 2
    one_line(capsys, message)
    assert not (nb201_run / "pareto.png").exists() and not (nb201_run / "trajectory.png").exists()


def test_report_keeps_the_records_after_a_corrupt_line(nb201_run, capsys):
    journal = nb201_run / "trials.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text(lines[0] + "{corrupt\n" + "".join(lines[1:]))
    assert cli("report", nb201_run) == 0
    assert "3 trials (3 ok" in capsys.readouterr().out


def test_report_into_a_closed_pipe_ends_quietly(nb201_run):
    proc = subprocess.Popen(cli_subprocess_cmd("report", nb201_run), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head -0`: the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait() == 1 and err == ""


# -- export: everything checked before retraining ---------------------------------------------------------
@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("retrained before checking the input")

    monkeypatch.setattr("sparsenas.training.train_and_evaluate", refuse)


@pytest.mark.parametrize("args,message", [
    (["--out", "FILE"], "is not a directory"),
    pytest.param(["--device", "cuda"], "CUDA is not available", marks=no_cuda),
])
def test_export_bad_options_before_retraining(args, message, tmp_path, capsys, no_training):
    run = _fake_run(tmp_path, "ok")
    (tmp_path / "file").write_text("keep me")
    args = [tmp_path / "file" if a == "FILE" else a for a in args]
    assert cli("export", run, *args) == 2
    one_line(capsys, message)
    assert (tmp_path / "file").read_text() == "keep me" and not list(run.glob("export-*"))


def test_export_does_not_need_a_readable_best_json(tmp_path, capsys):
    run = _fake_run(tmp_path, "ok")
    (run / "best.json").write_text("")
    assert cli("export", run, "--out", tmp_path / "exp", "--csr", "never") == 0
    assert json.loads((tmp_path / "exp" / "export.json").read_text())["trial"] == 0


# -- latency: outputs checked before the work -------------------------------------------------------------
def test_latency_fit_out_a_directory(small_table, tmp_path, capsys):
    assert cli(*FIT, small_table, "--out", tmp_path) == 2
    one_line(capsys, "is a directory; give a file name")


def test_latency_predict_bad_files(small_table, tmp_path, capsys):
    predictor = tmp_path / "p.json"
    assert cli(*FIT, small_table, "--out", predictor) == 0
    predict = ["latency", "predict", "--table", small_table, "--arch-column", "arch_str"]
    assert cli(*predict, "--predictor", predictor, "--out", tmp_path) == 2
    one_line(capsys, "is a directory; give a file name")
    (tmp_path / "list.json").write_text("[1, 2]")
    assert cli(*predict, "--predictor", tmp_path / "list.json", "--out", tmp_path / "o.csv") == 2
    one_line(capsys, "is not a learned latency predictor")
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("flag,message", [("--out", "is a directory"), ("--cache-dir", "one of its parents is not a directory")])
def test_latency_profile_output_checked_before_profiling(flag, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sparsenas.hardware.commands.profile", lambda *a, **k: pytest.fail("profiled first"))
    (tmp_path / "file").write_text("x")
    target = tmp_path if flag == "--out" else tmp_path / "file"
    assert cli("latency", "profile", "--space", "dass", "--set", "space.C=4", flag, target, "--quiet") == 2
    one_line(capsys, message)
