"""A run directory (`RunDir`, or `MemoryRun` for a search kept in memory), written by one process at a time.

`RunLock` holds an exclusive `flock` on runs/<name>/.lock for the whole search: a second `search` or `--resume`
of the same run is refused with one line, and the kernel drops the lock when its holder dies, so a killed search
never blocks a later `--resume`. (fcntl rather than the filelock package: the lock file is opened like every
other file of a run directory, without following a symbolic link.) `refuse_symlinks` checks a run directory
before it is read: files in it are input, and a link could make a resume truncate or append to another file.
"""
from __future__ import annotations

import fcntl
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from . import checkpoint
from .config import dump, read_yaml_file
from .errors import ConfigError
from .journal import Journal, TrialResult, open_nofollow, read_regular, write_atomic
from .objective import Objective
from .tracking import TensorBoardLogger, write_summaries


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


class RunDir:
    """runs/<name>/ — the one reader and writer of the ⚑ run-directory contract: config.yaml, trials.jsonl (with
    trials.corrupt.jsonl), best.json and pareto.csv, tb/, state/checkpoint.json and state/supernet.pt."""

    persistent = True

    def __init__(self, path: Path):
        self.path = Path(path)
        self.journal = Journal(self.path / "trials.jsonl")
        self.config_path = self.path / "config.yaml"
        self.checkpoint_path = self.path / "state" / "checkpoint.json"
        self.supernet_path = self.path / "state" / "supernet.pt"

    def __str__(self) -> str:
        return str(self.path)

    # -- reading (a run directory is input) --------------------------------------------------------------
    def is_run(self) -> bool:
        return self.config_path.is_file() and self.journal.path.parent.is_dir()

    def read_config(self, what: str = "run config") -> dict:
        """config.yaml as written by the search (a mapping; not yet validated); ConfigError if unreadable."""
        if not self.config_path.is_file():
            raise ConfigError(f"{self.path} is not a sparsenas run (no config.yaml)")
        refuse_symlinks(self.path)
        config = read_yaml_file(self.config_path, what)
        if not isinstance(config, dict):
            raise ConfigError(f"{self.config_path} is not a sparsenas run config")
        return config

    def results(self) -> list[TrialResult]:
        """The valid trials, read without touching the file (for report, export, a running search's readers)."""
        return self.journal.read()

    # -- writing (by the search that holds the lock) -----------------------------------------------------
    @contextmanager
    def writing(self, resume: bool):
        """Hold the run for a search: made if new, locked, checked for links. A new run that is refused before
        its first trial is removed again, so its name stays free."""
        fresh = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / "state").mkdir(exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create run directory {self.path}: {e.strerror}") from None
        with RunLock(self.path):
            if not resume and self.config_path.exists():
                raise ConfigError(f"{self.path} already exists; use --resume to continue it or choose another "
                                  "--name")
            refuse_symlinks(self.path)
            try:
                yield self
            except ConfigError:
                if fresh and not self.journal.path.exists():
                    shutil.rmtree(self.path, ignore_errors=True)
                raise

    def write_config(self, config: dict) -> None:
        write_atomic(self.config_path, dump(config))

    def load_state(self, space: str, strategy: str) -> dict | None:
        if self.checkpoint_path.with_suffix(".pkl").exists() and not self.checkpoint_path.exists():
            raise ConfigError(f"{self.path} was written by an older sparsenas whose checkpoint (checkpoint.pkl) "
                              "cannot be loaded safely; start a new run (report still reads this one)")
        if not self.checkpoint_path.exists():
            return None
        return checkpoint.load(self.checkpoint_path, space=space, strategy=strategy)

    def save_state(self, state: dict, space: str, strategy: str) -> None:
        checkpoint.save(self.checkpoint_path, state, space=space, strategy=strategy)

    def supernet_checkpoint(self) -> bytes | None:
        return read_regular(self.supernet_path) if self.supernet_path.exists() else None

    def save_supernet_checkpoint(self, data: bytes) -> None:
        write_atomic(self.supernet_path, data)

    def tensorboard(self, objective: Objective) -> TensorBoardLogger:
        return TensorBoardLogger(self.path / "tb", objective)

    def write_summaries(self, objective: Objective, results: list[TrialResult]) -> None:
        write_summaries(self.path, objective, results)


class MemoryRun:
    """A search kept in memory (the Python API without a storage path): the same calls as `RunDir`, nothing
    written; it cannot be resumed."""

    path = None
    persistent = False

    def __init__(self):
        self.journal = MemoryJournal()

    def __str__(self) -> str:
        return "memory"

    @contextmanager
    def writing(self, resume: bool):
        yield self

    def write_config(self, config: dict) -> None:
        pass

    def load_state(self, space: str, strategy: str) -> None:
        return None

    def save_state(self, state: dict, space: str, strategy: str) -> None:
        pass

    def supernet_checkpoint(self) -> None:
        return None

    def save_supernet_checkpoint(self, data: bytes) -> None:
        pass

    def tensorboard(self, objective: Objective) -> "NullLogger":
        return NullLogger()

    def write_summaries(self, objective: Objective, results: list[TrialResult]) -> None:
        pass


class MemoryJournal:
    def __init__(self):
        self.records: list[TrialResult] = []

    def load(self, validate=None) -> list[TrialResult]:
        return list(self.records)

    def append(self, result: TrialResult) -> None:
        self.records.append(result)


class NullLogger:
    """TensorBoardLogger's calls, doing nothing."""

    def log(self, *args, **kwargs) -> None:
        pass

    log_epoch = log_curve = note = close = log
