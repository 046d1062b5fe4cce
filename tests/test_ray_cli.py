"""The CLI with `--executor ray`: a private local Ray started and stopped by the search (loopback only), a
start failure as one line, and the README's "Scale out" commands (head + worker node started with `ray start`
on loopback addresses) run word for word. Every Ray these tests start runs in a session of its own and is
stopped by that session id: other Ray instances on the machine are neither stopped nor counted."""
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import FAST, ROOT, cli_subprocess_cmd

pytest.importorskip("ray")
from sparsenas.execution.ray_cluster import STALE_PREFIX  # noqa: E402

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAY_AUTH_MODE": "token"}


def records(run):
    return [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]


def session_pids(sids):
    """The processes whose session id is in `sids` (Ray's processes keep the session of whoever started them)."""
    pids = set()
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sids:
            pids.add(int(stat_file.parent.name))
    return pids


def stop_sessions(sids):
    """SIGTERM, then SIGKILL after 10 s, every process of these sessions; nothing else."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in session_pids(sids):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while session_pids(sids) and time.monotonic() < deadline:
            time.sleep(0.2)
    return not session_pids(sids)


def socket_inodes(pids):
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        inodes |= {int(link[8:-1]) for link in links if link.startswith("socket:[")}
    return inodes


def listening(pids):
    """(table, local address hex, port) of the TCP LISTEN and bound UDP sockets of `pids`, from /proc/net."""
    inodes, found = socket_inodes(pids), set()
    for table, state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            addr, port = cols[1].split(":")
            if cols[3] == state and int(cols[9]) in inodes and int(port, 16):
                found.add((table, addr, int(port, 16)))
    return found


def loopback(addr):
    """127.0.0.0/8, ::1 or an IPv4-mapped 127.x, as /proc/net writes them."""
    if len(addr) == 8:
        return addr.endswith("7F")
    return addr == "00000000000000000000000001000000" or (addr.startswith("0000000000000000FFFF0000")
                                                          and addr.endswith("7F"))


def free_port(host="127.0.0.2"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture
def short_tmp():
    """A temp dir with a short path (Ray's Unix sockets under it must stay within 107 characters)."""
    path = Path(tempfile.mkdtemp(prefix="snr-", dir="/tmp"))
    yield path
    subprocess.run(["rm", "-rf", str(path)])


def test_local_ray_is_private_on_loopback_with_token_auth_and_stopped(short_tmp):
    """No --address: a private Ray (RAY_ADDRESS and ray_current_cluster ignored) whose every socket is on
    loopback, token auth on though RAY_AUTH_MODE is unset, its token file 0600, all gone at the end."""
    stale = f"127.0.0.1:{free_port('127.0.0.1')}"  # nothing listens there
    (short_tmp / "ray").mkdir()
    (short_tmp / "ray" / "ray_current_cluster").write_text(stale)
    home = short_tmp / "home"
    home.mkdir()
    env = {**ENV, "TMPDIR": str(short_tmp), "HOME": str(home), "RAY_ADDRESS": stale}
    env.pop("RAY_AUTH_MODE")
    search = subprocess.Popen(cli_subprocess_cmd("search", "--space", "dass", "--strategy", "random", "--budget", 2,
                                                 "--executor", "ray", "--workers", 2, "--name", "r",
                                                 "--runs-dir", short_tmp / "runs", *FAST),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              start_new_session=True)
    seen, token_modes, auth_modes = set(), set(), set()
    try:
        while search.poll() is None:
            pids = session_pids({search.pid})
            seen |= listening(pids)
            token_modes |= {stat.S_IMODE(t.stat().st_mode) for t in short_tmp.glob(f"{STALE_PREFIX}*/auth_token")}
            for pid in pids - {search.pid}:
                try:
                    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                auth_modes |= {e for e in environ if e.startswith(b"RAY_AUTH_MODE=")}
            time.sleep(0.1)
        _, stderr = search.communicate(timeout=300)
    finally:
        left_over = not stop_sessions({search.pid})
    assert search.returncode == 0, stderr[-2000:]
    recs = records(short_tmp / "runs" / "r")
    assert [r["status"] for r in recs] == ["ok"] * 2
    assert len({p for _, _, p in seen}) >= 4, seen  # GCS, raylet (node + object manager), driver, ...
    assert all(loopback(addr) for _, addr, _ in seen), seen
    assert token_modes == {0o600} and auth_modes == {b"RAY_AUTH_MODE=token"}
    assert not (home / ".ray").exists()  # no token written to ~/.ray
    assert not left_over  # the search stopped every process it started ...
    assert not list(short_tmp.glob(f"{STALE_PREFIX}*"))  # ... and removed its temp dir


def test_address_of_a_service_that_is_not_ray_is_one_line_within_the_start_timeout(tmp_path):
    without_auth = {k: v for k, v in ENV.items() if k != "RAY_AUTH_MODE"}
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.2", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.2", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "http.server did not start"
                time.sleep(0.1)
        start = time.monotonic()
        run = subprocess.run(cli_subprocess_cmd("search", "--space", "dass", "--strategy", "random", "--budget", 1,
                                                "--executor", "ray", "--address", f"127.0.0.2:{port}",
                                                "--set", "execution.start_timeout_s=5", "--name", "r",
                                                "--runs-dir", tmp_path / "runs", *FAST),
                             capture_output=True, text=True, env=without_auth, timeout=600)
        took = time.monotonic() - start
    finally:
        server.kill()
        server.wait()
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.count("\n") == 1 and f"127.0.0.2:{port} does not answer as a Ray cluster" in run.stderr
    assert took < 60  # the CLI's imports plus at most start_timeout_s, not minutes


def readme_commands():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Scale out", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def wait_for_nodes(address: str, n: int, env: dict, timeout: float = 90) -> None:
    """Until `ray status` lists n active nodes: `ray start` of a worker node returns before the node has
    registered, and on a loaded machine the search could otherwise start on the head alone."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run([str(BIN / "ray"), "status", "--address", address], env=env, capture_output=True,
                             text=True, timeout=300).stdout
        if out.partition("Active:")[2].partition("Pending:")[0].count("node_") >= n:
            return
        assert time.monotonic() < deadline, f"fewer than {n} active Ray nodes after {timeout} s:\n{out[-2000:]}"
        time.sleep(1)


def test_readme_scale_out_commands(tmp_path):
    """The recipe word for word (but its machine-wide `ray stop`: the test stops the sessions it started),
    with HOME in tmp_path so that the token it generates is the test's own."""
    commands = readme_commands()
    assert commands[0] == "export RAY_AUTH_MODE=token" and commands[-1] == "ray stop"
    port = str(free_port())
    home = tmp_path / "home"
    home.mkdir()
    env = {**ENV, "HOME": str(home)}
    setup = [c.replace("6380", port) for c in commands[1:-2]]
    search = commands[-2].replace("6380", port)
    assert all(c.startswith("ray start") for c in setup[1:]) and search.startswith("sparsenas search")
    sids = set()
    try:
        for command in setup:
            p = subprocess.Popen(command, shell=True, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, start_new_session=True)
            sids.add(p.pid)
            out = p.communicate(timeout=600)[0]
            assert p.returncode == 0, out[-2000:]
        assert stat.S_IMODE((home / ".ray" / "auth_token").stat().st_mode) == 0o600
        wait_for_nodes(f"127.0.0.2:{port}", 2, env)  # as a user would: the search once both nodes are up
        gcs = listening(session_pids(sids))
        assert any(p == int(port) and not loopback(a) for _, a, p in gcs)  # a cluster's GCS: every interface
        tail = f"--runs-dir runs --quiet {' '.join(FAST[:-1])}"
        no_token = subprocess.run(f"{search.replace('scaled', 'nt')} {tail}", shell=True, cwd=tmp_path,
                                  env={**env, "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=300)
        assert no_token.returncode == 2 and no_token.stderr.count("\n") == 1, no_token.stderr[-2000:]
        assert "no Ray auth token" in no_token.stderr
        run = subprocess.run(f"{search} {tail}", shell=True, env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=300, start_new_session=True)
        assert run.returncode == 0, run.stderr[-2000:]
    finally:
        assert stop_sessions(sids)
    recs = records(tmp_path / "runs" / "scaled")
    assert len(recs) == 8 and all(r["status"] == "ok" for r in recs)
    from sparsenas.execution.ray import node_of

    assert len({node_of(r["worker"]) for r in recs}) == 2  # both nodes ran trials


def test_local_searches_never_import_ray():
    code = ("import sys; import sparsenas.cli, sparsenas.search; from sparsenas.execution import EXECUTORS; "
            "EXECUTORS.get('ray'); EXECUTORS.get('tune'); EXECUTORS.get('local'); print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-1] == "False"


def test_bad_execution_settings_exit_2(tmp_path):
    from conftest import cli

    assert cli("search", "--space", "dass", "--strategy", "random", "--runs-dir", tmp_path,
               "--set", "execution.scheduler=hyperband") == 2
    assert cli("search", "--space", "dass", "--strategy", "random", "--runs-dir", tmp_path,
               "--set", "execution.retries=-1") == 2
    assert not any(tmp_path.iterdir())
