"""Device descriptions and the models that turn a per-layer workload into latency and energy.

Depends on numpy, pyyaml and pydantic (the device-file schema) only: simdq describes each layer with the
plain records of `workload`, so this package never sees torch or the emulator.
"""

from .catalog import list_devices, load_device
from .device import Device, DeviceFileError
from .engines import EngineModel, LayerEstimate
from .precision import COMPUTE_TYPES, fits
from .workload import LayerWork, OperandFormat

__all__ = [
    "COMPUTE_TYPES", "Device", "DeviceFileError", "EngineModel", "LayerEstimate", "LayerWork", "OperandFormat", "fits",
    "list_devices", "load_device",
]
