"""Conformance suite of a latency predictor."""
from __future__ import annotations

import math
import pickle

from ..hardware import PREDICTORS, LatencyPredictor
from ..space import Arch


def check_predictor(predictor: LatencyPredictor, archs: list[Arch], deterministic: bool = True) -> list[float]:
    """Assert the predictor contract on `archs` (archs of `predictor.space`); returns the predictions.

    - it is registered under its `name`, has a non-empty string `version` and a `from_config` constructor;
    - `predict(arch)` is a finite number of milliseconds > 0 for every arch;
    - it survives pickling (Ray workers receive it pickled) and, when `deterministic` (every predictor but a
      timed one), gives the same numbers again, also after the round trip."""
    cls = type(predictor)
    assert predictor.name in PREDICTORS and PREDICTORS.get(predictor.name) is cls, \
        f"{cls.__name__} must be registered (register_predictor) under its name {predictor.name!r}"
    assert isinstance(cls.version, str) and cls.version, f"{cls.__name__}.version must be a non-empty string"
    assert callable(getattr(cls, "from_config", None))
    assert archs, "check_predictor needs at least one arch"
    predictions = [predictor.predict(arch) for arch in archs]
    for arch, ms in zip(archs, predictions):
        assert isinstance(ms, float) and math.isfinite(ms) and ms > 0, f"{predictor.name}: predict({arch}) = {ms!r}"
    again = pickle.loads(pickle.dumps(predictor))
    after = [again.predict(arch) for arch in archs]
    if deterministic:
        assert [predictor.predict(arch) for arch in archs] == predictions, f"{predictor.name}: not deterministic"
        assert after == predictions, f"{predictor.name}: predicts otherwise after a pickle round trip"
    return predictions
