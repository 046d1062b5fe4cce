"""`learned`: a regressor trained on (arch, latency) pairs that someone measured on their own device.

Features of an arch (`ArchFeatures`, from the space's dims; for a cell space such as NB201 the dims are the
cell graph's edges): one-hot of every categorical dim, the value of every numeric dim (and of categorical
dims with numeric choices), and the count of every string value over all dims (e.g. how many nor_conv_3x3
edges a cell has: latency is mostly additive in the ops). Regressor (scikit-learn): ridge (RidgeCV) or a
random forest; `auto` takes ridge below 20 samples and otherwise the one with the lower 5-fold CV error.
The predictor file (P.json) holds the space, the feature names, the training pairs and the model kind; the
regressor is refitted from them on load (deterministic; no pickles).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import spaces  # noqa: F401 — registers the spaces a saved predictor names
from ..errors import ConfigError
from ..journal import write_atomic
from ..registry import Registry
from ..space import SPACES, Arch, Categorical, SearchSpace
from ..spaces.nb201 import parse_arch_str
from .base import LatencyPredictor, ModelIO, Target, register_predictor

MODELS = ("auto", "ridge", "forest")
FORMAT = 1

LABEL_PARSERS: Registry = Registry("arch label parser")
"""Spaces whose arch column may hold their `label` instead of a JSON object: space name → text → arch dict."""


@LABEL_PARSERS.register("nb201")
def _nb201(text: str) -> dict:
    return dict(parse_arch_str(text))


def parse_arch(space: SearchSpace, text: str) -> Arch:
    """An arch of `space` from a table cell: a JSON object of its dims, or its label where the space has a
    parser (NB201: the official arch string); ConfigError otherwise."""
    text = (text or "").strip()
    if text.startswith("{"):
        try:
            values = json.loads(text)
        except ValueError:
            raise ConfigError(f"arch {text[:60]!r} is not valid JSON") from None
    elif space.name in LABEL_PARSERS:
        values = LABEL_PARSERS.get(space.name)(text)
    else:
        raise ConfigError(f"arch {text[:60]!r} is not a JSON object of space {space.name!r}'s dims")
    if not isinstance(values, dict):
        raise ConfigError(f"arch {text[:60]!r} is not a JSON object")
    return space.validate(values)


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ArchFeatures:
    """The feature vector of an arch of one space (see the module docstring)."""

    def __init__(self, space: SearchSpace):
        self.dims = space.dims()
        names, words = [], set()
        for label, dim in self.dims.items():
            if isinstance(dim, Categorical):
                names += [f"{label}={c}" for c in dim.choices]
                if all(_numeric(c) for c in dim.choices):
                    names.append(label)
                words |= {c for c in dim.choices if isinstance(c, str)}
            else:
                names.append(label)
        self.words = sorted(words)
        self.names = names + [f"count:{w}" for w in self.words]

    def __call__(self, arch: Arch) -> list[float]:
        out = []
        for label, dim in self.dims.items():
            value = arch[label]
            if isinstance(dim, Categorical):
                out += [1.0 if (type(value) is type(c) and value == c) else 0.0 for c in dim.choices]
                if all(_numeric(c) for c in dim.choices):
                    out.append(float(value))
            else:
                out.append(float(value))
        values = list(arch.values())
        return out + [float(sum(1 for v in values if v == w)) for w in self.words]


def _regressor(kind: str):
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import RidgeCV

    if kind == "ridge":
        return RidgeCV(alphas=np.logspace(-4, 3, 15))
    return RandomForestRegressor(n_estimators=200, random_state=0)


def choose_model(x: np.ndarray, y: np.ndarray, kind: str = "auto") -> str:
    if kind != "auto":
        return kind
    if len(y) < 20:
        return "ridge"
    from sklearn.model_selection import KFold, cross_val_score

    folds = KFold(5, shuffle=True, random_state=0)
    scores = {k: cross_val_score(_regressor(k), x, y, cv=folds, scoring="neg_mean_squared_error").mean()
              for k in ("ridge", "forest")}
    return max(scores, key=scores.get)


@register_predictor("learned")
class LearnedLatency(LatencyPredictor):
    """A regressor from arch features to the latency measured on the table's device."""

    version = "1"
    needs_network = False

    def __init__(self, space: SearchSpace, archs: list[Arch], latencies: list[float], model: str = "auto",
                 target: Target | None = None, io: ModelIO | None = None):
        super().__init__(space, target or Target(), io)
        if model not in MODELS:
            raise ConfigError(f"unknown learned model {model!r} (choose from: {', '.join(MODELS)})")
        if len(archs) != len(latencies) or len(archs) < 2:
            raise ConfigError(f"a learned latency predictor needs at least 2 (arch, latency) pairs, got {len(archs)}")
        bad = [v for v in latencies if not (np.isfinite(v) and v > 0)]
        if bad:
            raise ConfigError(f"latencies must be finite and > 0 ms, got {bad[0]!r}")
        self.archs, self.latencies = [space.validate(a) for a in archs], [float(v) for v in latencies]
        self.features = ArchFeatures(space)
        x, y = self.matrix(self.archs), np.array(self.latencies)
        self.model = choose_model(x, y, model)
        self.regressor = _regressor(self.model).fit(x, y)

    def matrix(self, archs) -> np.ndarray:
        return np.array([self.features(a) for a in archs], dtype=float)

    def predict(self, arch: Arch) -> float:
        return self.predict_many([arch])[0]

    def predict_many(self, archs: list[Arch]) -> list[float]:
        floor = 0.01 * min(self.latencies)  # a regression can dip below zero; latency cannot
        return [max(floor, float(v)) for v in self.regressor.predict(self.matrix(archs))]

    # -- the predictor file ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "predictor": self.name, "version": self.version,
                "space": {"name": self.space.name, **self.space.options}, "model": self.model,
                "features": self.features.names,
                "samples": [{"arch": dict(a), "latency_ms": v} for a, v in zip(self.archs, self.latencies)]}

    def save(self, path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(Path(path), json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path, space: SearchSpace | None = None) -> "LearnedLatency":
        """The predictor saved in `path` (for `space`, or the space it names)."""
        try:
            data = json.loads(Path(path).read_text())
            if data.get("predictor") != cls.name or data["format"] != FORMAT:
                raise ConfigError(f"{path} is not a learned latency predictor (made by 'sparsenas latency fit')")
            options = {k: v for k, v in data["space"].items() if k != "name"}
            if space is None:
                space = SPACES.get(data["space"]["name"])(**options)
            elif space.name != data["space"]["name"]:
                raise ConfigError(f"latency predictor {path} is for space {data['space']['name']!r}, "
                                  f"not {space.name!r}")
            archs = [Arch(s["arch"]) for s in data["samples"]]
            latencies = [s["latency_ms"] for s in data["samples"]]
            model = data["model"]
        except OSError as e:
            raise ConfigError(f"cannot read latency predictor {path}: {e.strerror}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # AttributeError: JSON of the wrong shape
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"{path} is not a learned latency predictor (made by 'sparsenas latency fit')") from None
        return cls(space, archs, latencies, model)

    @classmethod
    def from_config(cls, cfg, space, io):
        if not cfg["file"]:
            raise ConfigError("latency.predictor=learned needs latency.file, a predictor made by "
                              "'sparsenas latency fit'")
        return cls.load(Path(cfg["file"]).expanduser(), space)
