"""Hardware latency predictors (`latency_ms`): measured, profiled lookup table (lut), learned from a table."""
from .base import PREDICTORS, LatencyPredictor, ModelIO, Target, model_io, register_predictor
from . import learned, lut, measured  # noqa: F401,E402 — register the predictors
from .objective import make_predictor, normalise_latency_config  # noqa: E402

__all__ = ["PREDICTORS", "LatencyPredictor", "ModelIO", "Target", "make_predictor", "model_io",
           "normalise_latency_config", "register_predictor"]
