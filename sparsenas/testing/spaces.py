"""Conformance suite of a search space: dims, sample/validate round trip, clear refusals, label, arch_id,
cheap metrics and one evaluation on a tiny budget."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np

from ..errors import ConfigError
from ..evaluation import FIDELITY_METRICS, TrialTask, epoch_metrics, run_trial
from ..objective import Objective
from ..space import Arch, Categorical, EvalContext, Float, Int, SearchSpace
from ._common import check_metrics, one_line, raises

NOT_A_VALUE = "\x00not-a-value"  # no sane space offers this string as a choice


def check_space(space: SearchSpace, samples: int = 8, seed: int = 0) -> list[Arch]:
    """Assert the contract of `space` that needs no evaluation; returns the archs it sampled.

    - `dims()` is a non-empty {str: Categorical | Int | Float}, and `size()` is > 0;
    - `sample(rng)` is deterministic for a seed and gives Archs that `validate` returns unchanged, also when
      given as a plain dict; an Arch survives its JSON round trip with the same `arch_id`;
    - `validate` refuses, with a one-line ConfigError naming the label, a value outside a dim, a missing
      label and an unknown one;
    - `label(arch)` is a non-empty string, the same for equal archs;
    - `metrics()` is None or a frozenset of names."""
    dims = space.dims()
    assert isinstance(dims, dict) and dims, f"{space.name}: dims() must be a non-empty dict"
    for label, dim in dims.items():
        assert isinstance(label, str) and label, f"{space.name}: dim label {label!r} is not a non-empty string"
        assert isinstance(dim, (Categorical, Int, Float)), f"{space.name}: dim {label} is a {type(dim).__name__}"
    assert space.size() > 0, f"{space.name}: size() must be > 0"
    archs = [space.sample(np.random.default_rng([seed, i])) for i in range(samples)]
    again = [space.sample(np.random.default_rng([seed, i])) for i in range(samples)]
    assert archs == again, f"{space.name}: sample(rng) must depend only on the generator's state"
    for arch in archs:
        _check_arch(space, arch)
    _check_refusals(space, archs[0])
    produced = space.metrics()
    assert produced is None or (isinstance(produced, frozenset) and all(isinstance(n, str) for n in produced)), \
        f"{space.name}: metrics() must be None or a frozenset of names"
    return archs


def _check_arch(space: SearchSpace, arch: Arch) -> None:
    assert isinstance(arch, Arch), f"{space.name}: sample() must return an Arch, got {type(arch).__name__}"
    assert set(arch) == set(space.dims()), f"{space.name}: a sampled arch must set every dim exactly once"
    assert space.validate(arch) == arch
    plain = space.validate(dict(arch))
    assert isinstance(plain, Arch) and plain == arch and plain.arch_id == arch.arch_id
    assert json.loads(arch.to_json()) == dict(arch)
    back = Arch.from_json(arch.to_json())
    assert back == arch and back.arch_id == arch.arch_id == Arch(dict(arch)).arch_id
    label = space.label(arch)
    assert isinstance(label, str) and label, f"{space.name}: label() must be a non-empty string"
    assert space.label(Arch(dict(arch))) == label


def _check_refusals(space: SearchSpace, arch: Arch) -> None:
    for label in arch:
        cases = {"a value outside the dim": {**arch, label: NOT_A_VALUE},
                 "a missing label": {k: v for k, v in arch.items() if k != label}}
        for what, bad in cases.items():
            error = raises(ConfigError, lambda: space.validate(bad), f"{space.name}: validate() of {what}")
            assert label in one_line(error, f"{space.name}: validate() of {what}"), \
                f"{space.name}: the error for {what} must name {label!r}: {error}"
    error = raises(ConfigError, lambda: space.validate({**arch, "bogus_dim": 1}), f"{space.name}: an unknown label")
    assert "bogus_dim" in one_line(error, f"{space.name}: validate() of an unknown label")


def check_space_evaluates(space: SearchSpace, context: EvalContext, seed: int = 0,
                          objective: Objective | None = None) -> dict[str, float]:
    """Assert that `space` prepares, gives cheap metrics and evaluates one sampled arch on `context` (keep it
    tiny, e.g. `sparsenas.testing.tiny_context()`); returns the trial's metrics.

    The trial runs as the search runs it (`evaluation.run_trial`): it must end `ok`, with finite metrics, every
    one among `space.metrics()` when that is not None, including the objective's and the cheap ones. A space
    that reports per epoch must do so as schedulers need it (`_check_epoch_reports`)."""
    objective = objective or Objective()
    space.prepare(context)
    arch = space.sample(np.random.default_rng(seed))
    cheap = space.cheap_metrics(arch, context)
    known = space.metrics()
    check_metrics(cheap, f"{space.name}: cheap_metrics()", known)
    assert space.cheap_metrics(arch, context) == cheap, f"{space.name}: cheap_metrics() must be deterministic"
    task, reports = TrialTask(0, arch, seed), []
    result = run_trial(space, objective, context, task,
                       on_epoch=lambda epoch, metrics: reports.append((epoch, metrics)))
    assert result.status == "ok", f"{space.name}: the trial ended {result.status}: {result.error}"
    own = {k: v for k, v in result.metrics.items() if k not in FIDELITY_METRICS}
    check_metrics(own, f"{space.name}: evaluate()", known)
    for name in [*objective.names, *cheap]:
        assert math.isfinite(result.metrics.get(name, math.nan)), f"{space.name}: the trial lacks metric {name!r}"
    assert result.label == space.label(arch) and result.arch == arch
    _check_epoch_reports(space, objective, context, task, reports, result.metrics)
    return result.metrics


def _check_epoch_reports(space: SearchSpace, objective: Objective, context: EvalContext, task: TrialTask,
                         reports: list[tuple[int, dict]], metrics: dict) -> None:
    """A space that reports per epoch (`evaluation.epoch_metrics`) calls `on_epoch` once after each epoch, in
    order, with the metrics it declares, and a stop after the first of two epochs ends the trial `ok` with
    `epochs` 1 and `stopped_early` (what every scheduler relies on). A space that does not never calls it."""
    declared = epoch_metrics(space, context)
    if declared == frozenset():
        assert not reports, f"{space.name}: evaluate() reported epochs but takes no on_epoch (or is a table)"
        return
    epochs = context.train["epochs"]
    assert [e for e, _ in reports] == list(range(epochs)), \
        f"{space.name}: evaluate() must call on_epoch once per epoch, in order: got {[e for e, _ in reports]}"
    assert metrics.get("epochs") == epochs, f"{space.name}: a trial that reported its epochs must say how many"
    missing = sorted((declared or set()) - set(reports[-1][1]))
    assert not missing, f"{space.name}: the per-epoch report lacks {missing}"
    two = replace(context, train={**context.train, "epochs": 2})
    stopped = run_trial(space, objective, two, task, on_epoch=lambda epoch, metrics: True)
    assert stopped.status == "ok" and (stopped.metrics.get("epochs"), stopped.metrics.get("stopped_early")) == \
        (1, 1), f"{space.name}: a trial stopped after epoch 1 of 2 must end ok after it, got {stopped.status} " \
        f"{stopped.error or ''} {stopped.metrics}"
