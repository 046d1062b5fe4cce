import subprocess

import pytest

from conftest import cli, cli_subprocess_cmd


@pytest.mark.parametrize("argv,message", [
    (["search", "--space", "nope", "--strategy", "random"], "unknown space 'nope'"),
    (["search", "--space", "dass", "--strategy", "nope"], "unknown strategy 'nope'"),
    (["search", "--space", "dass", "--strategy", "random", "--set", "train.bogus=1"], "unknown config key train.bogus"),
    (["search", "--space", "dass", "--strategy", "random", "--set", "train.epochs=abc"], "train.epochs must be int"),
    (["search", "--space", "dass", "--strategy", "random", "--budget", "0"], "search.budget must be >= 1"),
    (["search", "--space", "dass", "--strategy", "random", "--budget", "x"], "invalid int value"),
    (["search", "--space", "dass", "--strategy", "random", "--set", "space.keep_ratios=[1.5]"], "space.keep_ratios"),
    (["search", "--space", "dass", "--strategy", "random", "--set", "data.name=mnist"], "needs data.path"),
    (["search", "--space", "dass", "--strategy", "random", "--set", "data.name=mnist", "--set",
      "data.path=/nonexistent/mnist.pkl.gz"], "does not exist"),
    (["search", "--space", "missing.yaml", "--strategy", "random"], "cannot read"),
    (["search", "--strategy", "random"], "needs --space"),
    (["search", "--resume"], "--resume needs --name"),
    (["search", "--resume", "--name", "ghost"], "is not a sparsenas run"),
    (["frobnicate"], "invalid choice"),
    (["report", "/nonexistent"], "is not a sparsenas run"),
    (["latency", "profile", "--space", "tas", "--passes", "0"], "--passes must be >= 1, got 0"),
])
def test_bad_input_exits_2_with_one_line(argv, message, runs, capsys):
    assert cli(*argv, "--runs-dir", runs) == 2 if argv[0] == "search" else cli(*argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not runs.exists() or not any(runs.iterdir())


def test_corrupt_yaml_space_file(tmp_path, capsys):
    bad = tmp_path / "space.yaml"
    bad.write_text("space: {name: dass\n  C: [")
    assert cli("search", "--space", bad, "--strategy", "random", "--runs-dir", tmp_path / "runs") == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_existing_run_is_not_overwritten(runs, capsys):
    run = runs / "taken"
    run.mkdir(parents=True)
    (run / "trials.jsonl").write_text("precious\n")
    assert cli("search", "--space", "dass", "--strategy", "random", "--name", "taken", "--runs-dir", runs) == 2
    assert "already exists" in capsys.readouterr().err
    assert (run / "trials.jsonl").read_text() == "precious\n"


def test_subprocess_bad_input_has_no_traceback(tmp_path):
    proc = subprocess.run(cli_subprocess_cmd("search", "--space", "dass", "--strategy", "random",
                                             "--set", "train.epochs=-1", "--runs-dir", tmp_path),
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "sparsenas: error: train.epochs must be >= 1, got -1"


def test_help_describes_every_flag(capsys):
    with pytest.raises(SystemExit):
        cli("search", "--help")
    text = capsys.readouterr().out
    for flag in ["--space", "--strategy", "--budget", "--seed", "--name", "--runs-dir", "--executor", "--address",
                 "--workers", "--set", "--resume", "--device", "--max-failures"]:
        assert flag in text
    with pytest.raises(SystemExit):
        cli("--help")
    assert "search" in capsys.readouterr().out
