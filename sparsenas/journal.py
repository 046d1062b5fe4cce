"""The append-only trial journal runs/<name>/trials.jsonl — the source of truth for results and resume.

A finished trial counts once its line is written whole, flushed and fsync'ed. On resume (`load`), a torn last
line (a crash mid-write: no newline) is cut if it does not parse and completed with its newline if it does;
any other line that is not a valid record — corrupt, a hand edit gone wrong, a second copy of a trial — is
moved to trials.corrupt.jsonl with a warning, and every valid record is kept. Files of a run directory are
input: they are opened without following symbolic links.
"""
from __future__ import annotations

import errno
import json
import logging
import math
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError
from .space import Arch

STATUSES = ("ok", "failed", "infeasible")
log = logging.getLogger("sparsenas")


@dataclass
class TrialResult:
    """One finished trial, exactly as it is written to the journal (⚑ run-directory contract)."""

    trial: int
    arch: Arch
    label: str
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    duration_s: float = 0.0
    worker: str = "local"
    error: str | None = None

    @property
    def arch_id(self) -> str:
        return self.arch.arch_id

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["arch"] = dict(self.arch)
        return {"trial": self.trial, "arch": record["arch"], "arch_id": self.arch_id,
                **{k: record[k] for k in ("label", "status", "metrics", "seed", "duration_s", "worker", "error")}}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "TrialResult":
        """The result a journal record describes; a record of the wrong shape is a ValueError."""
        fields = {k: record[k] for k in ("trial", "label", "status", "metrics", "seed", "duration_s", "worker", "error")}
        arch = record["arch"]
        checks = (
            (_is_int(fields["trial"]) and fields["trial"] >= 0, "trial"),
            (isinstance(arch, dict) and all(isinstance(k, str) and _is_value(v) for k, v in arch.items()), "arch"),
            (isinstance(fields["label"], str), "label"),
            (fields["status"] in STATUSES, "status"),
            (isinstance(fields["metrics"], dict)
             and all(isinstance(k, str) and _is_number(v) for k, v in fields["metrics"].items()), "metrics"),
            (_is_int(fields["seed"]), "seed"),
            (_is_number(fields["duration_s"]), "duration_s"),
            (isinstance(fields["worker"], str), "worker"),
            (fields["error"] is None or isinstance(fields["error"], str), "error"))
        bad = [name for ok, name in checks if not ok]
        if bad:
            raise ValueError(f"bad {bad[0]} field")
        result = cls(arch=Arch(arch), **fields)
        if "arch_id" in record and record["arch_id"] != result.arch_id:
            raise ValueError("arch_id does not match arch")
        return result


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_value(v: Any) -> bool:
    return isinstance(v, (str, bool, int)) or (isinstance(v, float) and math.isfinite(v))


class Journal:
    """trials.jsonl: each result is one line, written whole, flushed and fsync'ed before it counts."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.corrupt_path = self.path.with_name(f"{self.path.stem}.corrupt.jsonl")

    def read(self) -> list[TrialResult]:
        """The valid records, first copy of each trial, without touching the file (for readers of a run)."""
        if not self.path.exists():
            return []
        return self._parse(read_regular(self.path).split(b"\n")[:-1])[0]

    def load(self, validate: Callable[[TrialResult], None] | None = None) -> list[TrialResult]:
        """Every valid record, with the file repaired for appending (see the module docstring). `validate`
        raises ValueError for a record this run cannot use (e.g. an arch outside the space): it is moved too.
        A `trial` field that is not a trial number is a ConfigError: that journal is not ours to edit."""
        if not self.path.exists():
            return []
        data = read_regular(self.path)
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        if tail:
            if _parses(tail):
                lines.append(tail)
            else:
                log.warning("sparsenas: %s: cut the torn last line (a crash mid-write)", self.path)
        results, kept, bad = self._parse(lines, validate)
        if bad:
            append_lines(self.corrupt_path, [line + b"\n" for line in bad])
            log.warning("sparsenas: %s: moved %d unreadable or duplicate line(s) to %s; their trials run again",
                        self.path, len(bad), self.corrupt_path.name)
        repaired = b"".join(line + b"\n" for line in kept)
        if repaired != data:
            write_atomic(self.path, repaired)
        return results

    def _parse(self, lines: list[bytes], validate=None) -> tuple[list[TrialResult], list[bytes], list[bytes]]:
        results, kept, bad, seen = [], [], [], set()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                bad.append(line)
                continue
            trial = record.get("trial") if isinstance(record, dict) else None
            if trial is not None and not (_is_int(trial) and trial >= 0):
                raise ConfigError(f"{self.path} line {number}: 'trial' must be a trial number, got {trial!r}")
            try:
                result = TrialResult.from_record(record)
                if validate is not None:
                    validate(result)
            except (ValueError, KeyError, TypeError):
                bad.append(line)
                continue
            if result.trial in seen:
                bad.append(line)
                continue
            seen.add(result.trial)
            results.append(result)
            kept.append(line)
        return results, kept, bad

    def append(self, result: TrialResult) -> None:
        append_lines(self.path, [(json.dumps(result.to_record(), allow_nan=True) + "\n").encode()])


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def open_nofollow(path: Path, flags: int, mode: int = 0o644) -> int:
    """os.open that refuses a symbolic link (and, for reading, anything but a regular file) with one line."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ConfigError(f"{path} is a symbolic link; sparsenas does not follow links in a run directory") \
                from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"{path} is not a regular file")
    return fd


def read_regular(path: Path) -> bytes:
    """The bytes of a regular file, refusing symbolic links, FIFOs and devices."""
    fd = open_nofollow(Path(path), os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def append_lines(path: Path, lines: list[bytes]) -> None:
    """Append whole lines and fsync; if the write fails (e.g. a full disk) the file is cut back to its old end,
    so no half line stays behind to join the next record."""
    fd = open_nofollow(Path(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        end = os.fstat(fd).st_size
        try:
            view = memoryview(b"".join(lines))
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, end)
            except OSError:
                pass  # a torn last line is cut on resume
            raise
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see a partial file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
