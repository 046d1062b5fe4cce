"""TensorBoard logging of the search trajectory, and the run's summary files (best.json, pareto.csv)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

from .journal import TrialResult, write_atomic
from .objective import Objective


class TensorBoardLogger:
    """Per trial: `trial/<metric>` at step = trial index; per finished trial: `best/<objective>` (best so far
    of each objective) and `search/failed`, `search/infeasible` counts at step = trials done."""

    def __init__(self, log_dir: Path, objective: Objective):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))
        self.objective = objective

    def log(self, result: TrialResult, results: Sequence[TrialResult]) -> None:
        w, step = self.writer, len(results)
        for name, value in result.metrics.items():
            w.add_scalar(f"trial/{name}", value, result.trial)
        for name, sign in zip(self.objective.names, self.objective.signs):
            vals = [sign * v[self.objective.names.index(name)] for r in results
                    if (v := self.objective.values(r)) is not None]
            if vals:
                w.add_scalar(f"best/{name}", max(vals) if sign > 0 else min(vals), step)
        for status in ("failed", "infeasible"):
            w.add_scalar(f"search/{status}", sum(r.status == status for r in results), step)
        w.flush()

    def log_epoch(self, step: int, scalars: dict[str, float], text: dict[str, str] | None = None) -> None:
        """Per-epoch curves of a strategy that trains (e.g. a supernet): `supernet/<name>` scalars and text."""
        for name, value in scalars.items():
            self.writer.add_scalar(f"supernet/{name}", value, step)
        for name, value in (text or {}).items():
            self.writer.add_text(f"supernet/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def write_summaries(run_dir: Path, objective: Objective, results: Sequence[TrialResult]) -> None:
    """best.json (best by the first objective) and, with several objectives, pareto.csv."""
    best = objective.best(results)
    if best is not None:
        write_atomic(run_dir / "best.json", json.dumps(
            {"trial": best.trial, "arch": dict(best.arch), "arch_id": best.arch_id, "label": best.label,
             "metrics": best.metrics}, indent=2) + "\n")
    if objective.multi:
        buf = io.StringIO()
        out = csv.writer(buf)
        out.writerow(["trial", "arch_id", *objective.names, "label"])
        for r in objective.pareto_front(results):
            out.writerow([r.trial, r.arch_id, *(r.metrics[n] for n in objective.names), r.label])
        write_atomic(run_dir / "pareto.csv", buf.getvalue())
