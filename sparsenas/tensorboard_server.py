"""`sparsenas tensorboard RUN_DIR`: TensorBoard on a run's tb/ directory, reachable from this machine only."""
from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from .errors import ConfigError
from .rundir import RunDir


def start(run_dir: Path, port: int = 6006):
    """Launch TensorBoard (in this process, on a background thread) bound to 127.0.0.1; return its URL."""
    run_dir = Path(run_dir)
    if not RunDir(run_dir).config_path.is_file() or not (run_dir / "tb").is_dir():
        raise ConfigError(f"{run_dir} is not a sparsenas run (no config.yaml and tb/)")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {port}")
    with socket.socket() as probe:  # a clear one-line error before TensorBoard prints its banners
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as e:
            raise ConfigError(f"cannot listen on 127.0.0.1:{port}: {e.strerror}; choose another --port") from None
    from tensorboard import program

    board = program.TensorBoard()
    board.configure(argv=[None, "--logdir", str(run_dir / "tb"), "--host", "127.0.0.1", "--port", str(port),
                          "--reload_interval", "5"])
    try:
        return board.launch()
    except program.TensorBoardServerException as e:
        raise ConfigError(f"cannot start TensorBoard on 127.0.0.1:{port}: {e.msg}") from None


def serve(run_dir: Path, port: int = 6006) -> int:
    """Start TensorBoard, print its URL and serve until interrupted."""
    url = start(run_dir, port)
    print(f"TensorBoard for {run_dir} at {url} (Ctrl-C to stop)", flush=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C even where SIGINT came in ignored
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


@contextlib.contextmanager
def background(run_dir: Path, port: int = 0, timeout_s: float = 60.0, log: Path | None = None) -> Iterator[str]:
    """Run `sparsenas tensorboard RUN_DIR --port PORT` as a subprocess (its own process group) for the
    `with` block and yield its URL; the process group is always terminated on exit (SIGTERM, then SIGKILL).
    For scripts and tests; stderr goes to `log` (default: discarded)."""
    cmd = [sys.executable, "-m", "sparsenas", "tensorboard", str(run_dir), "--port", str(port)]
    err = open(log, "w") if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
        line = proc.stdout.readline() if ready else ""
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if match is None:
            raise RuntimeError(f"sparsenas tensorboard did not start within {timeout_s:g} s "
                               f"(exit code {proc.poll()}, output {line!r})")
        yield match.group(0)
    finally:
        for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait_s)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        proc.stdout.close()
        if log is not None:
            err.close()
