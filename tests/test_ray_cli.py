"""The CLI with `--executor ray`: a local Ray started and stopped by the search, and the README's "Scale out"
commands (head + worker node started with `ray start` on loopback) run word for word."""
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FAST, ROOT, cli_subprocess_cmd

pytest.importorskip("ray")
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAY_AUTH_MODE": "token"}


def records(run):
    return [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]


def ray_pids():
    out = subprocess.run(["ps", "-eo", "pid=,comm="], capture_output=True, text=True).stdout
    return {int(p) for p, name in (line.split(None, 1) for line in out.splitlines() if line.strip())
            if name.strip() in ("raylet", "gcs_server")}


def node(worker):
    from sparsenas.execution.ray import node_of

    return node_of(worker)


def readme_commands():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Scale out", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return s.getsockname()[1]


def test_local_ray_is_started_and_shut_down(tmp_path):
    before = ray_pids()
    run = subprocess.run(cli_subprocess_cmd("search", "--space", "dass", "--strategy", "random", "--budget", 2,
                                            "--executor", "ray", "--workers", 2, "--name", "r",
                                            "--runs-dir", tmp_path, *FAST),
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    recs = records(tmp_path / "r")
    assert [r["status"] for r in recs] == ["ok"] * 2 and len({node(r["worker"]) for r in recs}) == 1
    assert ray_pids() <= before  # no raylet or GCS left behind


def test_readme_scale_out_commands(tmp_path):
    commands = readme_commands()
    assert commands[0] == "export RAY_AUTH_MODE=token" and commands[-1] == "ray stop"
    port = str(free_port())
    start = [c.replace("6380", port) for c in commands[1:-2]]
    search = commands[-2].replace("6380", port)
    assert all(c.startswith("ray start") for c in start) and search.startswith("sparsenas search")
    try:
        for command in start:
            subprocess.run(command, shell=True, check=True, env=ENV, cwd=tmp_path, capture_output=True, timeout=120)
        run = subprocess.run(f"{search} --runs-dir runs --quiet {' '.join(FAST[:-1])}", shell=True, env=ENV,
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
    finally:
        subprocess.run(commands[-1], shell=True, env=ENV, capture_output=True, timeout=120)
    recs = records(tmp_path / "runs" / "scaled")
    assert len(recs) == 8 and all(r["status"] == "ok" for r in recs)
    assert len({node(r["worker"]) for r in recs}) == 2  # both nodes ran trials
    assert not ray_pids()


def test_local_searches_never_import_ray():
    code = ("import sys; import sparsenas.cli, sparsenas.search; from sparsenas.execution import EXECUTORS; "
            "EXECUTORS.get('ray'); EXECUTORS.get('tune'); EXECUTORS.get('local'); print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-1] == "False"


def test_bad_execution_settings_exit_2(tmp_path):
    from conftest import cli

    assert cli("search", "--space", "dass", "--strategy", "random", "--runs-dir", tmp_path,
               "--set", "execution.scheduler=hyperband") == 2
    assert cli("search", "--space", "dass", "--strategy", "random", "--runs-dir", tmp_path,
               "--set", "execution.retries=-1") == 2
    assert not any(tmp_path.iterdir())
