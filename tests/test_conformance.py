"""sparsenas.testing's suites over the registries that have no test file of their own for it: executors,
latency predictors, mask kinds and sparse-training methods (spaces: test_space.py; strategies:
test_strategies.py). A newly registered implementation is picked up here, or fails asking for a factory."""
import numpy as np
import pytest

from sparsenas.config import CORE
from sparsenas.execution import EXECUTORS
from sparsenas.hardware import PREDICTORS, ModelIO, Target
from sparsenas.hardware.learned import LearnedLatency
from sparsenas.hardware.lut import LutLatency, profile
from sparsenas.hardware.measured import MeasuredLatency
from sparsenas.ops import mask_specs
from sparsenas.sparse_training import SPARSE_TRAINING
from sparsenas.spaces.nb201 import NB201Space
from sparsenas.spaces.tas import TasSpace
from sparsenas.testing import check_executor, check_mask_kind, check_predictor, check_sparse_training

EXECUTION = {k: f.default for k, f in CORE["execution"].items()}
RAY_EXECUTORS = {"ray", "tune"}  # need a Ray cluster: tests/test_ray.py runs the suite on them
IO = ModelIO((1, 8, 8), 10)


@pytest.mark.parametrize("name", EXECUTORS.names())
def test_every_executor_passes_the_conformance_suite(name):
    if name in RAY_EXECUTORS:
        pytest.skip("needs a Ray cluster (tests/test_ray.py runs this suite on it)")
    check_executor(lambda space, objective, context: EXECUTORS.get(name)(
        space, objective, context, {**EXECUTION, "executor": name}))


def _learned():
    space = NB201Space()
    archs = [space.sample(np.random.default_rng(s)) for s in range(12)]
    return LearnedLatency(space, archs, [1.0 + sum(len(v) for v in a.values()) / 100 for a in archs], "ridge"), True


def _lut():
    space = TasSpace(C=4, depth=8)
    table = profile(space, Target(), IO, archs=1, calibration=0, warmup=0, repeats=1, log=lambda *_: None)
    return LutLatency(space, Target(), IO, table), True


def _measured():
    return MeasuredLatency(TasSpace(C=4, depth=8), Target(), IO, warmup=0, repeats=1), False


PREDICTOR_FACTORIES = {"learned": _learned, "lut": _lut, "measured": _measured}  # -> (predictor, deterministic)


@pytest.mark.parametrize("name", PREDICTORS.names())
def test_every_latency_predictor_passes_the_conformance_suite(name):
    assert name in PREDICTOR_FACTORIES, f"add a small factory of latency predictor {name!r} to PREDICTOR_FACTORIES"
    predictor, deterministic = PREDICTOR_FACTORIES[name]()
    archs = [predictor.space.sample(np.random.default_rng(s)) for s in range(2)]
    check_predictor(predictor, archs, deterministic)


SPECS = [s for s in mask_specs() if s != "N:M"] + ["2:4", "1:4", "1:2"]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("keep", [0.1, 0.5])
def test_every_mask_kind_passes_the_conformance_suite(spec, keep):
    check_mask_kind(spec, keep)


FAST_TRAINING = {"set": {"update_interval": 4}, "rigl": {"update_interval": 4}}  # speed: updates within 24 steps


@pytest.mark.parametrize("method", SPARSE_TRAINING.names())
def test_every_sparse_training_method_passes_the_conformance_suite(method):
    check_sparse_training(method, **FAST_TRAINING.get(method, {}))
