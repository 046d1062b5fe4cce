"""Conformance suite of a scheduler (report / milestones / state_dict / load_state_dict), without any training:
the per-epoch reports are made-up learning curves, judged on one objective (val_acc) and on two (val_acc up,
flops down; flops is a cheap metric, the same at every epoch)."""
from __future__ import annotations

import json
import random
from typing import Any, Callable

from ..checkpoint import decode, encode
from ..errors import ConfigError
from ..objective import Objective
from ..schedulers import Scheduler
from ._common import one_line, raises

OBJECTIVES = {"one objective": Objective(["val_acc"]), "two objectives": Objective(["val_acc"], ["flops"])}
EPOCHS = 9  # train.epochs of the made-up trials
BEST = 99  # the trial of `curves(best=True)` that is ahead of every other at every epoch

Report = tuple[int, int, dict[str, float]]  # (trial, epochs done, that epoch's metrics)


def curves(seed: int, trials: int = 12, epochs: int = EPOCHS, best: bool = False) -> list[Report]:
    """Per-epoch reports of `trials` trials with rising, noisy, spread-out curves and flops 1, 2 or 3,
    interleaved at random (each trial's epochs in order); with `best`, also trial BEST, whose val_acc is above
    every other report's and whose flops is the lowest."""
    rng = random.Random(seed)
    level = {t: rng.random() for t in range(trials)}
    flops = {t: rng.choice([1.0, 2.0, 3.0]) for t in range(trials)}
    if best:
        level[BEST], flops[BEST] = 3.0, 0.5  # 3·0.5 > 1·(0.5 + 9/20) + noise
    done, out = dict.fromkeys(level, 0), []
    while any(e < epochs for e in done.values()):
        t = rng.choice([t for t, e in done.items() if e < epochs])
        done[t] += 1
        noise = 0.0 if t == BEST else rng.gauss(0, 0.02)
        out.append((t, done[t], {"val_acc": level[t] * (0.5 + done[t] / 20) + noise, "flops": flops[t]}))
    return out


def decisions(scheduler: Scheduler, reports: list[Report], stopped: set[int] | None = None) -> list[tuple[int, int]]:
    """Feed `reports` to the scheduler, skipping trials once stopped (added to `stopped`); the (trial, epochs)
    of each stop."""
    stopped = set() if stopped is None else stopped
    out = []
    for t, e, m in reports:
        if t not in stopped and scheduler.report(t, e, m):
            stopped.add(t)
            out.append((t, e))
    return out


def check_scheduler(scheduler_cls: type[Scheduler], options: dict[str, Any] | None = None) -> None:
    """Assert the contract of a scheduler class (built with `options`, on trials of EPOCHS epochs), with one
    objective and with two:

    - the same reports with the same seed give the same stop decisions; each trial is stopped exactly once, before
      max_epochs only at one of its `milestones` (sorted epochs in [1, max_epochs)), else at max_epochs; an active
      scheduler stops some of twelve spread-out trials early, an inactive one (`active = False`) none;
    - `state_dict()` survives the run directory's JSON checkpoint, and a scheduler that loads it (taken halfway
      through the reports, and just before the middle early stop) has the same state and makes exactly the
      remaining decisions of the uninterrupted one;
    - a trial reported dominated by every other at every epoch is stopped at its first milestone;
    - a trial ahead of all others at every epoch is never stopped before max_epochs, whether it runs among them
      or arrives after they finished;
    - settings that cannot work are one-line ConfigErrors: a `scheduler.metrics` that is not an objective, and,
      where the options have them, grace_period > max_epochs and reduction_factor <= 1."""
    options = dict(options or {})
    for label, objective in OBJECTIVES.items():
        what = f"{scheduler_cls.__name__} ({label})"

        def make(seed: int, objective: Objective = objective) -> Scheduler:
            return scheduler_cls(objective, EPOCHS, seed, **options)

        _check_decisions(make, what)
        _check_resume(make, what)
        if make(0).active:
            _check_dominated(make, what)
            _check_best(make, what)
    _check_bad_options(scheduler_cls, options)


def _check_decisions(make: Callable[[int], Scheduler], what: str) -> None:
    reports = curves(1)
    first, again = make(5), make(5)
    stops = decisions(first, reports)
    assert stops == decisions(again, reports), f"{what}: the same seed and reports must give the same stop decisions"
    trials = sorted({t for t, _, _ in reports})
    if not first.active:
        assert not stops and not first.milestones(0), f"{what}: an inactive scheduler stopped {stops}"
        return
    assert sorted(t for t, _ in stops) == trials, f"{what}: each trial must be stopped exactly once (at the latest " \
        f"at max_epochs={EPOCHS}), stops were {stops}"
    for t, e in stops:
        marks = first.milestones(t)
        assert marks == sorted(set(marks)) and all(isinstance(m, int) and 1 <= m < EPOCHS for m in marks), \
            f"{what}: milestones({t}) must be sorted distinct epochs in [1, {EPOCHS}), got {marks}"
        assert e == EPOCHS or e in marks, f"{what}: trial {t} stopped after epoch {e}, not a milestone {marks}"
    assert any(e < EPOCHS for _, e in stops), \
        f"{what}: stopped none of {len(trials)} trials with spread-out curves before max_epochs"


def _check_resume(make: Callable[[int], Scheduler], what: str) -> None:
    reports = curves(2)
    whole = decisions(make(3), reports)
    early = [i for i, (t, e, _) in enumerate(reports) if e < EPOCHS and (t, e) in whole]  # reports that stop
    for cut in sorted({len(reports) // 2} | ({early[len(early) // 2]} if early else set())):
        scheduler, stopped = make(3), set()
        head = decisions(scheduler, reports[:cut], stopped)
        text = json.dumps(encode(scheduler.state_dict()))  # raises TypeError for state that JSON cannot carry
        resumed = make(3)
        resumed.load_state_dict(decode(json.loads(text)))
        assert json.loads(json.dumps(encode(resumed.state_dict()))) == json.loads(text), \
            f"{what}: state_dict() after load_state_dict(state) differs from state"
        assert head + decisions(resumed, reports[cut:], stopped) == whole, \
            f"{what}: a scheduler resumed from its checkpoint after {cut} reports makes other stop decisions"


def _check_dominated(make: Callable[[int], Scheduler], what: str) -> None:
    scheduler = make(3)
    for t in range(24):  # good trials, all trained to the end
        for e in range(1, EPOCHS + 1):
            scheduler.report(t, e, {"val_acc": 0.5 + 0.01 * t + 0.01 * e, "flops": 1.0})
    for bad in range(24, 34):
        marks = scheduler.milestones(bad)
        stops = [e for e in range(1, EPOCHS + 1) if scheduler.report(bad, e, {"val_acc": 0.1, "flops": 5.0})]
        first = marks[0] if marks else EPOCHS
        assert stops and stops[0] == first, f"{what}: trial {bad}, dominated by 24 finished trials at every " \
            f"epoch, was first stopped after epoch {stops[0] if stops else None}, not at its first milestone {first}"


def _check_best(make: Callable[[int], Scheduler], what: str) -> None:
    scheduler, reports = make(4), curves(4, best=True)
    stops = decisions(scheduler, reports)
    assert (BEST, EPOCHS) in stops, f"{what}: the trial ahead of all others at every epoch was stopped: {stops}"
    top = max(m["val_acc"] for _, _, m in reports)
    late = [e for e in range(1, EPOCHS) if scheduler.report(BEST + 1, e, {"val_acc": top + e, "flops": 0.1})]
    assert not late, f"{what}: a trial ahead of every finished one was stopped after epoch {late[0] if late else 0}"


def _check_bad_options(scheduler_cls: type[Scheduler], options: dict[str, Any]) -> None:
    name, schema = scheduler_cls.__name__, scheduler_cls.options_schema
    bad = [({"metrics": ["test_acc"]}, "test_acc")]
    if "grace_period" in schema:
        bad.append(({"grace_period": EPOCHS + 1}, "scheduler.grace_period"))
    if "reduction_factor" in schema:
        bad.append(({"reduction_factor": 1}, "scheduler.reduction_factor"))
    for change, words in bad:
        build = lambda change=change: scheduler_cls(OBJECTIVES["one objective"], EPOCHS, 0,  # noqa: E731
                                                    **{**options, **change})
        error = raises(ConfigError, build, f"{name} with {change}")
        assert words in one_line(error, f"{name} with {change}"), f"{name} with {change}: {error} names not {words}"
