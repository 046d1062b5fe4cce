"""TensorBoard logging of the search trajectory, and the run's summary files (best.json, pareto.csv).

Layout of runs/<name>/tb/ (what `sparsenas tensorboard` shows):

- the top-level run (".") — the search:
  `trial/<metric>` every metric of each trial (step = trial index);
  `best/<objective>` best so far (step = trials done) and `best_by_time/<objective>` (step = seconds since
  the run's first event, strictly increasing; the events' wall times are exact for TensorBoard's time axes);
  `search/ok`, `search/failed`, `search/infeasible` counts and `search/stopped_early` (trials a scheduler
  stopped); with several objectives `search/pareto_size`,
  `search/hypervolume` and `hypervolume_ref/<objective>` (the reference point, see
  `Objective.reference_point`); the image `search/pareto_front` (redrawn whenever the front changes, and
  at the end) and, for
  strategies that train a supernet, `supernet/<name>` per-epoch scalars and text (`log_epoch`).
- one run `trial-NNNN/` per trial — its HParams session: the arch dims and `status` as hparams, every
  metric as the scalar `trial/<metric>` (step = trial index, so that it falls on the search's curve),
  and the session's end status (ok → success; failed and infeasible → failure, told apart by `status`).
- with a scheduler, one run `trial-NNNN/epochs/` per trial — its learning curve: every per-epoch metric as
  `trial/<metric>` at step = epochs done (`log_curve`, as the trial trains).
"""
from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

from .journal import TrialResult, write_atomic
from .objective import Objective

SESSION_STATUS = {"ok": "STATUS_SUCCESS", "failed": "STATUS_FAILURE", "infeasible": "STATUS_FAILURE"}


def _hparam_value(value: Any) -> bool | int | float | str:
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


def _hparams_summaries(result: TrialResult, start: float, end: float) -> list:
    """The SessionStartInfo and SessionEndInfo summaries of one trial's HParams session."""
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2, summary_v2
    from tensorboard.compat.proto.summary_pb2 import Summary

    hparams = {name: _hparam_value(v) for name, v in result.arch.items()}
    hparams["status"] = result.status
    start_pb = summary_v2.hparams_pb(hparams, trial_id=f"trial-{result.trial:04d}", start_time_secs=start)
    end_info = plugin_data_pb2.HParamsPluginData(session_end_info=plugin_data_pb2.SessionEndInfo(
        status=api_pb2.Status.Value(SESSION_STATUS[result.status]), end_time_secs=end))
    end_pb = Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, tensor=metadata.NULL_TENSOR,
                                          metadata=metadata.create_summary_metadata(end_info))])
    return [start_pb, end_pb]


def _first_event_time(log_dir: Path) -> float | None:
    """The creation time of the oldest event file of `log_dir` (from its name), e.g. before a --resume."""
    times = []
    for f in log_dir.glob("events.out.tfevents.*"):
        try:
            times.append(float(f.name.split(".")[3]))
        except (IndexError, ValueError):
            continue
    return min(times) if times else None


class TensorBoardLogger:
    """Writes runs/<name>/tb/ as described in the module docstring; `log` after every finished trial."""

    def __init__(self, log_dir: Path, objective: Objective, figures: bool = True):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.start = _first_event_time(self.log_dir) or time.time()
        self.writer = SummaryWriter(str(self.log_dir))
        self.objective = objective
        self.figures = figures
        self._time_step = -1
        self._results: list[TrialResult] = []
        self._drawn: tuple[int, object] = (0, None)  # (trials done, front points) of the last front figure
        self._curves: dict[int, Any] = {}  # trial -> the SummaryWriter of its running learning curve

    def log(self, result: TrialResult, results: Sequence[TrialResult]) -> None:
        now = time.time()
        w, step, obj = self.writer, len(results), self.objective
        for name, value in result.metrics.items():
            w.add_scalar(f"trial/{name}", value, result.trial, walltime=now)
        self._time_step = max(math.ceil(now - self.start), self._time_step + 1)
        for i, (name, sign) in enumerate(zip(obj.names, obj.signs)):
            vals = [v[i] for r in results if (v := obj.values(r)) is not None]
            if vals:
                w.add_scalar(f"best/{name}", sign * max(vals), step, walltime=now)
                w.add_scalar(f"best_by_time/{name}", sign * max(vals), self._time_step, walltime=now)
        for status in ("ok", "failed", "infeasible"):
            w.add_scalar(f"search/{status}", sum(r.status == status for r in results), step, walltime=now)
        stopped = sum(r.metrics.get("stopped_early", 0) == 1 for r in results)
        if stopped or result.trial in self._curves:
            w.add_scalar("search/stopped_early", stopped, step, walltime=now)
        if result.trial in self._curves:
            self._curves.pop(result.trial).close()
        if obj.multi:
            w.add_scalar("search/pareto_size", len(obj.pareto_front(results)), step, walltime=now)
            reference = obj.reference_point(results)
            if reference is not None:
                w.add_scalar("search/hypervolume", obj.hypervolume(results, reference), step, walltime=now)
                for name, sign, r in zip(obj.names, obj.signs, reference):
                    w.add_scalar(f"hypervolume_ref/{name}", sign * r, step, walltime=now)
        self._results = list(results)
        if self.figures and result.ok:
            self._log_front(changed_only=True)
        self._log_session(result, now)
        w.flush()

    def _log_front(self, changed_only: bool) -> None:
        """Draw the front figure at step = trials done: when the drawn front changed, or (at close) when
        trials came since the last drawing. Drawing takes ~0.1 s, too slow for every trial of a table space."""
        from .plots import Series, front_points, pareto_figure, render_rgb

        results, step = self._results, len(self._results)
        key = front_points(self.objective, results)
        if step == self._drawn[0] or (changed_only and key == self._drawn[1]):
            return
        fig = pareto_figure(self.objective, [Series("search", results)], title=f"Pareto front after {step} trials")
        if fig is not None:
            self.writer.add_image("search/pareto_front", render_rgb(fig), step, dataformats="HWC")
        self._drawn = (step, key)

    def _log_session(self, result: TrialResult, now: float) -> None:
        """One HParams session (a run of its own, trial-NNNN) for this trial."""
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(self.log_dir / f"trial-{result.trial:04d}")) as session:
            start_pb, end_pb = _hparams_summaries(result, now - result.duration_s, now)
            session.file_writer.add_summary(start_pb, walltime=now)
            for name, value in result.metrics.items():
                session.add_scalar(f"trial/{name}", value, result.trial, walltime=now)
            session.file_writer.add_summary(end_pb, walltime=now)

    def log_curve(self, trial: int, epochs: int, metrics: dict[str, float]) -> None:
        """One epoch of a scheduled trial's learning curve: `trial/<metric>` at step = epochs done, in the run
        `trial-NNNN/epochs`."""
        from torch.utils.tensorboard import SummaryWriter

        writer = self._curves.get(trial)
        if writer is None:
            writer = self._curves[trial] = SummaryWriter(str(self.log_dir / f"trial-{trial:04d}" / "epochs"))
        for name, value in metrics.items():
            writer.add_scalar(f"trial/{name}", value, epochs)
        writer.flush()

    def log_epoch(self, step: int, scalars: dict[str, float], text: dict[str, str] | None = None) -> None:
        """Per-epoch curves of a strategy that trains (e.g. a supernet): `supernet/<name>` scalars (losses,
        α entropy, ...) and text (e.g. the current genotype) at step = epoch."""
        for name, value in scalars.items():
            self.writer.add_scalar(f"supernet/{name}", value, step)
        for name, value in (text or {}).items():
            self.writer.add_text(f"supernet/{name}", value, step)
        self.writer.flush()

    def note(self, text: str) -> None:
        """A warning about the run (e.g. a budget within the strategy's warm-up) as TensorBoard text."""
        self.writer.add_text("search/warnings", text, 0)
        self.writer.flush()

    def close(self) -> None:
        if self.figures and any(r.ok for r in self._results):
            self._log_front(changed_only=False)
        for curve in self._curves.values():
            curve.close()
        self._curves.clear()
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
