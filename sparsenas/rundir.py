"""A run directory, written by one search process at a time.

`RunLock` holds an exclusive `flock` on runs/<name>/.lock for the whole search: a second `search` or `--resume`
of the same run is refused with one line, and the kernel drops the lock when its holder dies, so a killed search
never blocks a later `--resume`. (fcntl rather than the filelock package: the lock file is opened like every
other file of a run directory, without following a symbolic link.) `refuse_symlinks` checks a run directory
before it is read: files in it are input, and a link could make a resume truncate or append to another file.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import ConfigError
from .journal import open_nofollow


class RunLock:
    """An exclusive lock on a run directory (which must exist); `with RunLock(run_dir):` or acquire/release."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"{self.path.parent} is in use by another sparsenas process; wait for it to finish "
                              "or choose another --name") from None
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def refuse_symlinks(run_dir: Path) -> None:
    """One line (ConfigError) if anything inside `run_dir` is a symbolic link."""
    for root, dirs, files in os.walk(run_dir):
        for name in dirs + files:
            if os.path.islink(os.path.join(root, name)):
                raise ConfigError(f"{Path(root) / name} is a symbolic link; sparsenas does not follow links "
                                  "in a run directory")
