"""The append-only trial journal runs/<name>/trials.jsonl — the source of truth for results and resume."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .space import Arch

STATUSES = ("ok", "failed", "infeasible")


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
        fields = {k: record[k] for k in ("trial", "label", "status", "metrics", "seed", "duration_s", "worker", "error")}
        return cls(arch=Arch(record["arch"]), **fields)


class Journal:
    """trials.jsonl: each result is one line, written whole, flushed and fsync'ed before it counts."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> list[TrialResult]:
        """All complete records. A torn last line (a crash mid-write) is cut off the file."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        results, good_end = [], 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                results.append(TrialResult.from_record(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                break
            good_end += len(line)
        if good_end < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
        return results

    def append(self, result: TrialResult) -> None:
        line = json.dumps(result.to_record(), allow_nan=True) + "\n"
        with open(self.path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see a partial file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
