"""Regressors of the `learned` latency predictor (scikit-learn) and their choice by cross-validation.

  ridge   linear in the features (standardised), RidgeCV over alphas, least squares on *relative* errors
          (sample weight 1/y²): latency is close to a sum of per-op costs, so counts and MACs enter linearly.
  gbm     gradient-boosted trees (400 of depth 3, learning rate 0.05, subsample 0.8) on log latency: the
          interactions a sum misses (cache effects of wide layers, fused ops).
  forest  a random forest (200 trees) on log latency.
  scale   (with a prior only) the calibrated power map log y = a·log prior + b, fitted by least squares.
`cross_validate` scores each candidate by the mean squared relative error of its out-of-fold predictions
(5 folds, or one per sample below 5); `choose` takes the lowest.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..registry import Registry

REGRESSORS: Registry[Callable[[], "Regressor"]] = Registry("learned latency model")


class Regressor:
    """fit(x, y) on latencies in ms, predict(x) → ms."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> "Regressor":
        raise NotImplementedError

    def predict(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@REGRESSORS.register("ridge")
class RidgeRegressor(Regressor):
    def fit(self, x, y):
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-4, 3, 15)))
        self.model.fit(x, y, ridgecv__sample_weight=1.0 / y ** 2)
        return self

    def predict(self, x):
        return self.model.predict(x)


class LogRegressor(Regressor):
    """A scikit-learn regressor fitted on log latency."""

    def make(self):
        raise NotImplementedError

    def fit(self, x, y):
        self.model = self.make().fit(x, np.log(y))
        return self

    def predict(self, x):
        return np.exp(self.model.predict(x))


@REGRESSORS.register("gbm")
class BoostedRegressor(LogRegressor):
    def make(self):
        from sklearn.ensemble import GradientBoostingRegressor

        return GradientBoostingRegressor(n_estimators=400, learning_rate=0.05, max_depth=3, subsample=0.8,
                                         random_state=0)


@REGRESSORS.register("forest")
class ForestRegressor(LogRegressor):
    def make(self):
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(n_estimators=200, random_state=0)


@REGRESSORS.register("scale")
class ScaleRegressor(Regressor):
    """log y = a·log x[:, 0] + b: column 0 holds the prior's prediction."""

    def fit(self, x, y):
        self.coef = np.polyfit(np.log(x[:, 0]), np.log(y), 1)
        return self

    def predict(self, x):
        return np.exp(np.polyval(self.coef, np.log(x[:, 0])))


def cross_validate(model: str, x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared relative error of `model`'s out-of-fold predictions."""
    from sklearn.model_selection import KFold

    folds = KFold(min(5, len(y)), shuffle=True, random_state=0)
    errors = np.empty_like(y)
    for train, test in folds.split(x):
        pred = REGRESSORS.get(model)().fit(x[train], y[train]).predict(x[test])
        errors[test] = (pred - y[test]) / y[test]
    return float(np.mean(errors ** 2))


def choose(candidates: dict[tuple, tuple[str, np.ndarray]], y: np.ndarray) -> tuple:
    """The key of the candidate {key: (model, features)} with the lowest cross-validated error."""
    scores = {key: cross_validate(model, x, y) for key, (model, x) in candidates.items()}
    return min(scores, key=scores.get)
