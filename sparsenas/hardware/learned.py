"""`learned`: a regressor trained on (arch, latency) pairs that someone measured on their own device.

Features describe what runs (`GraphFeatures`, from `graph`): the arch's network is traced once and summarised
in two views — `all` (every call: what eager PyTorch executes) and `live` (what a graph compiler executes after
constant folding and dead-code elimination: an NB201 `none` edge is a zero, work that only feeds zeros or never
reaches the output is gone) — each as per-op-kind counts, MACs, bytes and nonzero weights, counts per (kind,
stage), the number of calls and the longest path. For a space that builds no network, the dims' features
(`ArchFeatures`: one-hot and numeric dims, counts of each op name).

The view and the regressor (`regress`: ridge, gbm, forest) are chosen together by 5-fold cross-validation on
relative errors (`auto`: ridge and, from 20 samples on, gbm): the data tell whether the device removes dead
work. With a `prior` (`sparsenas latency fit --prior`: a lut table of this CPU or another device's learned
predictor; HELP's few-shot setting) the prior's prediction is one more feature, and `scale` (a calibrated power
map of the prior alone) is a candidate too — what 10–50 samples of a new device can afford.

The predictor file (P.json) holds the space, the input shape, the view, the model, the feature names, the
prior (its whole file) and the training pairs with their features; the regressor is refitted from them on load
(deterministic; no pickles).
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
from .base import (LatencyPredictor, ModelIO, Target, build_model, example_input, register_predictor, runnable,
                   threads)
from .graph import graph_features, run_graph
from .lut import LatencyTable, LutLatency
from .regress import REGRESSORS, choose

MODELS = ("auto", "ridge", "gbm", "forest", "scale")
FORMAT = 2

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


class GraphFeatures:
    """arch → {name: value}: `graph.graph_features` of the arch's runnable network (exported, every layer dense
    but channel-pruned ones smaller) on a batch of one `io` sample, traced with 1 thread."""

    def __init__(self, space: SearchSpace, io: ModelIO):
        self.space, self.io = space, io

    def __call__(self, arch: Arch) -> dict[str, float]:
        with threads(1):
            module, _ = runnable(build_model(self.space, arch, self.io), Target(), csr="never")
            return graph_features(run_graph(module, example_input(self.io, Target())))


def featurizer(space: SearchSpace, io: ModelIO | None):
    """Graph features where the space builds networks, else the dims' features (view `dims`)."""
    if io is not None and hasattr(space, "build"):
        return GraphFeatures(space, io)
    return DimsFeatures(space)


class DimsFeatures(ArchFeatures):
    """`ArchFeatures` as {name: value} in the view `dims`."""

    def __call__(self, arch: Arch) -> dict[str, float]:
        return {f"dims:{n}": v for n, v in zip(self.names, super().__call__(arch))}


def _matrix(rows: list[dict], names: list[str]) -> np.ndarray:
    return np.array([[r.get(n, 0.0) for n in names] for r in rows], dtype=float).reshape(len(rows), len(names))


@register_predictor("learned")
class LearnedLatency(LatencyPredictor):
    """A regressor from arch features to the latency measured on the table's device (see the module docstring).
    `prior`: a reference predictor (of this CPU or another device) whose prediction is a feature, or the whole
    model (`scale`): few-shot transfer to a new device."""

    version = "2"
    needs_network = False

    def __init__(self, space: SearchSpace, archs: list[Arch], latencies: list[float], model: str = "auto",
                 target: Target | None = None, io: ModelIO | None = None, prior: "Prior | None" = None,
                 features: list[dict] | None = None, view: str | None = None):
        super().__init__(space, target or Target(), io)
        if model not in MODELS or (model == "scale" and prior is None):
            raise ConfigError(f"unknown learned model {model!r} (choose from: {', '.join(MODELS)}; scale needs "
                              "--prior)")
        if len(archs) != len(latencies) or len(archs) < 2:
            raise ConfigError(f"a learned latency predictor needs at least 2 (arch, latency) pairs, got {len(archs)}")
        bad = [v for v in latencies if not (np.isfinite(v) and v > 0)]
        if bad:
            raise ConfigError(f"latencies must be finite and > 0 ms, got {bad[0]!r}")
        self.archs, self.latencies = [space.validate(a) for a in archs], [float(v) for v in latencies]
        self.prior, self.featurize = prior, featurizer(space, io)
        self.rows = features if features is not None else [self.featurize(a) for a in self.archs]
        y = np.array(self.latencies)
        candidates = self._candidates(model, view)
        self.view, self.model = choose(candidates, y) if len(candidates) > 1 else next(iter(candidates))
        self.names = self._names(self.view)
        self.regressor = REGRESSORS.get(self.model)().fit(self.matrix(self.rows, self.archs), y)

    def _names(self, view: str) -> list[str]:
        return sorted({n for r in self.rows for n in r if n.startswith(view + ":")})

    def _candidates(self, model: str, view: str | None) -> dict[tuple, tuple[str, np.ndarray]]:
        views = [view] if view else sorted({n.split(":", 1)[0] for r in self.rows for n in r}) or ["dims"]
        models = [model] if model != "auto" else ["ridge"] + (["gbm"] if len(self.archs) >= 20 else [])
        out = {}
        for v in views:
            self.view, self.names = v, self._names(v)
            x = self.matrix(self.rows, self.archs)
            out.update({(v, m): (m, x) for m in models if m != "scale"})
        if self.prior is not None and (model in ("auto", "scale")):
            out[(views[0], "scale")] = ("scale", self._prior_column(self.archs, self.rows))
        return out

    def _prior_column(self, archs, rows) -> np.ndarray:
        return np.array(self.prior.predict_many(archs, rows, self), dtype=float)[:, None]

    def matrix(self, rows: list[dict], archs: list[Arch]) -> np.ndarray:
        x = _matrix(rows, self.names)
        return np.hstack([self._prior_column(archs, rows), x]) if self.prior is not None else x

    def predict(self, arch: Arch) -> float:
        return self.predict_many([arch])[0]

    def predict_many(self, archs: list[Arch], rows: list[dict] | None = None) -> list[float]:
        """Predicted ms of each arch (`rows`: their features, if already computed on this predictor's io)."""
        archs = [self.space.validate(a) for a in archs]
        x = self.matrix(rows if rows is not None else [self.featurize(a) for a in archs], archs)
        floor = 0.01 * min(self.latencies)  # a regression can dip below zero; latency cannot
        return [max(floor, float(v)) for v in self.regressor.predict(x)]

    # -- the predictor file ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "predictor": self.name, "version": self.version,
                "space": {"name": self.space.name, **self.space.options},
                "io": None if self.io is None else {"input_shape": list(self.io.input_shape),
                                                   "num_classes": self.io.num_classes},
                "model": self.model, "view": self.view, "features": self.names,
                "prior": None if self.prior is None else self.prior.to_dict(),
                "samples": [{"arch": dict(a), "latency_ms": v, "features": f}
                            for a, v, f in zip(self.archs, self.latencies, self.rows)]}

    def save(self, path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(Path(path), json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_dict(cls, data: dict, space: SearchSpace | None = None, where: str = "") -> "LearnedLatency":
        """The predictor of a `to_dict` (for `space`, or the space it names); ConfigError if it is not one."""
        not_one = f"{where} is not a learned latency predictor of this sparsenas (made by 'sparsenas latency fit')"
        try:
            if data.get("predictor") != cls.name or data["format"] != FORMAT:
                raise ConfigError(not_one)
            options = {k: v for k, v in data["space"].items() if k != "name"}
            if space is None:
                space = SPACES.get(data["space"]["name"])(**options)
            elif space.name != data["space"]["name"]:
                raise ConfigError(f"latency predictor {where} is for space {data['space']['name']!r}, "
                                  f"not {space.name!r}")
            io = data["io"] and ModelIO(tuple(data["io"]["input_shape"]), data["io"]["num_classes"])
            prior = data["prior"] and Prior.from_dict(data["prior"], space, where)
            samples = data["samples"]
            return cls(space, [Arch(s["arch"]) for s in samples], [s["latency_ms"] for s in samples], data["model"],
                       io=io, prior=prior, features=[s["features"] for s in samples], view=data["view"])
        except ConfigError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError):  # AttributeError: JSON of the wrong shape
            raise ConfigError(not_one) from None

    @classmethod
    def load(cls, path, space: SearchSpace | None = None) -> "LearnedLatency":
        """The predictor saved in `path` (for `space`, or the space it names)."""
        return cls.from_dict(read_json(path, "learned latency predictor"), space, str(path))

    @classmethod
    def from_config(cls, cfg, space, io):
        if not cfg["file"]:
            raise ConfigError("latency.predictor=learned needs latency.file, a predictor made by "
                              "'sparsenas latency fit'")
        return cls.load(Path(cfg["file"]).expanduser(), space)


def read_json(path, what: str):
    try:
        return json.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None
    except ValueError:
        raise ConfigError(f"{path} is not a {what} (not JSON; made by 'sparsenas latency ...')") from None


class Prior:
    """A reference predictor for few-shot transfer: a learned predictor's file or a lut table, kept whole."""

    def __init__(self, kind: str, data: dict, predictor: LatencyPredictor):
        self.kind, self.data, self.predictor = kind, data, predictor

    @classmethod
    def from_dict(cls, entry: dict, space: SearchSpace, where: str = "") -> "Prior":
        kind, data = entry["kind"], entry["data"]
        if kind == "learned":  # on its own space options (e.g. another C), as it was fitted
            reference = LearnedLatency.from_dict(data, None, where)
            if reference.space.name != space.name:
                raise ConfigError(f"prior {where} is for space {reference.space.name!r}, not {space.name!r}")
            return cls(kind, data, reference)
        meta = data["meta"]
        if kind != "lut" or meta.get("space") != space.name:
            raise ConfigError(f"prior {where} is not a learned predictor or lut table of space {space.name!r}")
        io = ModelIO(tuple(meta["input_shape"]), meta["num_classes"])
        table = LatencyTable(meta, data["kernels"], data["calibration"])
        return cls(kind, data, LutLatency(space, Target(**meta["target"]), io, table))

    @classmethod
    def load(cls, path, space: SearchSpace) -> "Prior":
        data = read_json(path, "latency predictor")
        kind = "learned" if isinstance(data, dict) and data.get("predictor") == "learned" else "lut"
        try:
            return cls.from_dict({"kind": kind, "data": data}, space, str(path))
        except (KeyError, TypeError, AttributeError):
            raise ConfigError(f"prior {path} is neither a learned predictor nor a lut table") from None

    def predict_many(self, archs: list[Arch], rows: list[dict] | None = None,
                     owner: LearnedLatency | None = None) -> list[float]:
        """The reference's prediction of each arch; `rows` (the archs' features computed by `owner`) are reused
        where a learned reference computes its features the same way (same space options and io)."""
        if isinstance(self.predictor, LearnedLatency):
            same = rows is not None and owner is not None and (owner.io, owner.space.options) == (
                self.predictor.io, self.predictor.space.options)
            return self.predictor.predict_many(archs, rows if same else None)
        return [self.predictor.predict(a) for a in archs]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "data": self.data}
