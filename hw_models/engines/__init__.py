"""Engine models: each turns one layer's work into time and counted actions, and describes itself."""

from .base import EngineModel, LayerEstimate
from .calibrated import CalibratedEngine
from .roofline import EngineRates, RooflineEngine
from .systolic import SystolicEngine
from .xnor import XnorEngine

__all__ = ["CalibratedEngine", "EngineModel", "EngineRates", "LayerEstimate", "RooflineEngine", "SystolicEngine",
           "XnorEngine"]
