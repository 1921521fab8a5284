"""Which emulator accumulator each compute precision of a device uses: the device file's `accumulate:` names a
preset of emulator/accumulators.py (hw_models keeps the name as written; simdq joins the two here)."""

from __future__ import annotations

from emulator import Accumulator, get_accumulator
from hw_models import DeviceFileError


def device_accumulators(device) -> dict:
    """{(engine, precision): Accumulator} for every precision that names one; a wrong name is one line."""
    found = {}
    for engine_name, engine in (device.spec.get("engines") or {}).items():
        for table in ("compute", "precisions"):  # roofline and calibrated engines; systolic ones
            for precision, entry in ((engine or {}).get(table) or {}).items():
                name = (entry or {}).get("accumulate")
                if name is None:
                    continue
                try:
                    found[engine_name, precision] = get_accumulator(name)
                except ValueError as err:
                    raise DeviceFileError(f"device {device.name}: engines.{engine_name}.{table}.{precision}."
                                          f"accumulate: {err}") from None
    return found


def accumulator_for(device, precision: str, engine: str | None = None) -> Accumulator | None:
    """The accumulator `device` names for `precision` (on `engine`, or the first engine that has it)."""
    for (engine_name, name), acc in device_accumulators(device).items():
        if name == precision and engine in (None, engine_name):
            return acc
    return None
