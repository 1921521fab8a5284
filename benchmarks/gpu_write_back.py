"""Whether what a kernel writes into L2 costs a DRAM write-back as well, measured with the GPU's energy counter.

The calibrated GPUs' energy (hw_models.energy.MeasuredEnergy.traffic_pj) prices what a layer writes at the L2's
energy and again at DRAM's: in a forward the weights streaming through L2 evict it, dirty. The microbenchmarks
that energy is fitted on rewrite one buffer, whose lines never leave L2, so they cannot show it. `measure` times
the suite's elementwise add (fp16, both inputs and the output within L2) under CUDA graphs, with NVML's
total-energy counter, two ways, in the order same, rotating, rotating, same (a drift in power cancels):
- same: every call writes the same output buffer (what the fit's microbenchmarks do);
- rotating: each call writes the next of enough buffers to span L2_SPAN L2 capacities, so that every line it
  writes is evicted, and written back, before its buffer comes round again (what a forward does).
`report` sets both against the fitted device file: the energy each variant is priced at over its measured time,
and the write-back's energy per byte (the difference of the two, less static and busy power over the time it
adds, per byte written) against the DRAM energy per byte the file prices it at.

    python benchmarks/gpu_write_back.py measure -o OUT/write-back.json                   # on the GPU
    python benchmarks/gpu_write_back.py report OUT/write-back.json --hw h100 -o OUT/write-back.md   # no GPU
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import date
from itertools import cycle
from math import ceil
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FORMAT = "simdq-write-back-1"
SIZES = (2 * 2 ** 20, 4 * 2 ** 20, 8 * 2 ** 20, 16 * 2 ** 20)  # bytes of each operand (fp16)
ORDER = ("same", "rotating", "rotating", "same")
L2_SPAN = 4
ELEMENT_BYTES = 2


def buffers_for(output_bytes: int, l2_bytes: int) -> int:
    """How many output buffers a rotating call cycles through: enough to span L2_SPAN L2 capacities."""
    return ceil(L2_SPAN * l2_bytes / output_bytes)


def _measure_one(x, y, outputs: list, meter, device) -> dict:
    import torch

    from simdq.microbench.energy import energy_calls
    from simdq.microbench.timing import capture, replay_seconds

    targets = cycle(outputs)

    def add():
        torch.add(x, y, out=next(targets))

    seconds = replay_seconds(capture(add, device))
    # a rotating graph writes every buffer once per cycle of them: a whole number of cycles per replay
    calls = ceil(energy_calls(seconds, meter.window()) / len(outputs)) * len(outputs)
    graph = capture(add, device, calls)
    reading = meter.busy_power(graph.graph.replay, seconds * calls)
    sustained_s = reading.sustained_replay_s / calls
    return {"measured_s": seconds, "calls": calls, "sustained_s": sustained_s, "power_w": reading.watts,
            "energy_j": reading.watts * sustained_s, "energy_window_s": reading.window_s,
            "sm_clock_mhz": reading.sm_clock_mhz, "temperature_c": reading.temperature_c}


def measure(torch_device: str) -> dict:
    import torch

    from simdq.errors import SimdqError
    from simdq.microbench.energy import EnergyMeter

    if not torch.cuda.is_available():
        raise SimdqError("measure: no CUDA device is visible to torch")
    device = torch.device(torch_device)
    properties = torch.cuda.get_device_properties(device)
    l2_bytes = properties.L2_cache_size
    meter = EnergyMeter(device.index or 0)
    data = {"format": FORMAT, "date": date.today().isoformat(), "gpu": properties.name, "torch": torch.__version__,
            "cuda": torch.version.cuda, "l2_bytes": l2_bytes, "energy_counter_interval_s": meter.interval_s,
            "idle_before": asdict(meter.idle_power()), "measurements": []}
    with torch.no_grad():
        for size in SIZES:
            elements = size // ELEMENT_BYTES
            x = torch.randn(elements, device=device, dtype=torch.float16)
            y = torch.randn_like(x)
            rotating = [torch.empty_like(x) for _ in range(buffers_for(size, l2_bytes))]
            for variant in ORDER:
                outputs = [rotating[0]] if variant == "same" else rotating
                row = {"operand_bytes": size, "variant": variant, "buffers": len(outputs),
                       **_measure_one(x, y, outputs, meter, device)}
                data["measurements"].append(row)
                print(f"{size / 2 ** 20:.0f} MB {variant}: {row['sustained_s'] * 1e6:.2f} us, "
                      f"{row['energy_j'] * 1e3:.4f} mJ at {row['power_w']:.0f} W", flush=True)
            del rotating
    data["idle_after"] = asdict(meter.idle_power())
    return data


def _actions(size: int, written_back: bool):
    """What the device model counts for one add of `size`-byte operands: two reads and a write, in L2; the write
    also written back to DRAM where `written_back`."""
    from hw_models.actions import Actions

    elements = size // ELEMENT_BYTES
    return Actions(vector_ops=elements, vector_dtype="fp16", dram_bytes=3 * size, kernels=1,
                   write_bytes=size if written_back else 0.0)


def write_back_rows(measurements: list, energy) -> list:
    """Per operand size: each variant's mean time and energy over its calls, the energy `energy` (a
    MeasuredEnergy) prices it at over that time (the rotating one with and without its write-back), and the
    write-back's measured energy per byte: the rotating variant's energy less the same variant's, less static
    and busy power over the time it adds, per byte written."""
    rows = []
    for size in sorted({m["operand_bytes"] for m in measurements}):
        mean = {}
        for variant in ("same", "rotating"):
            runs = [m for m in measurements if m["operand_bytes"] == size and m["variant"] == variant]
            mean[variant] = (sum(m["sustained_s"] for m in runs) / len(runs),
                             sum(m["energy_j"] for m in runs) / len(runs))
        (same_s, same_j), (rotating_s, rotating_j) = mean["same"], mean["rotating"]
        extra_j = rotating_j - same_j - (energy.static_w + energy.busy_w) * (rotating_s - same_s)
        rows.append({"operand_bytes": size, "same_s": same_s, "same_j": same_j, "rotating_s": rotating_s,
                     "rotating_j": rotating_j,
                     "same_priced_j": energy.price(_actions(size, False), same_s),
                     "rotating_priced_j": energy.price(_actions(size, True), rotating_s),
                     "rotating_unpriced_j": energy.price(_actions(size, False), rotating_s),
                     "write_back_pj_per_byte": extra_j / size * 1e12})
    return rows


def _read(path: Path) -> dict:
    from simdq.errors import SimdqError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SimdqError(f"{path}: not a readable write-back measurement ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SimdqError(f"{path}: not a write-back measurement (format {FORMAT!r} expected)")
    variants = {(m.get("operand_bytes"), m.get("variant")) for m in data.get("measurements", [])
                if isinstance(m, dict)}
    sizes = {size for size, _ in variants}
    if not sizes or any((size, variant) not in variants for size in sizes for variant in ("same", "rotating")):
        raise SimdqError(f"{path}: each operand size needs both a 'same' and a 'rotating' measurement")
    return data


def report(path: Path, device_name: str) -> str:
    from hw_models import load_device
    from hw_models.device import DeviceFileError
    from hw_models.energy import MeasuredEnergy
    from simdq.errors import SimdqError

    data = _read(path)
    try:
        energy = load_device(device_name).primary.energy
    except DeviceFileError as err:
        raise SimdqError(f"--hw: {err}") from None
    if not isinstance(energy, MeasuredEnergy):
        raise SimdqError(f"--hw {device_name}: its energy is not measured on the GPU (a calibrated GPU expected)")
    try:
        rows = write_back_rows(data["measurements"], energy)
    except (KeyError, TypeError, ZeroDivisionError) as err:
        raise SimdqError(f"{path}: a measurement is malformed ({err})") from None

    def pct(priced, measured):
        return f"{priced / measured - 1:+.1%}"

    lines = [f"# A write into L2, written back to DRAM: {data['gpu']}", "",
             f"Measured on {data['gpu']} ({data['l2_bytes'] / 2 ** 20:.0f} MB of L2), torch {data['torch']}, CUDA "
             f"{data['cuda']}, {data['date']}, by `python benchmarks/gpu_write_back.py measure`; priced by "
             f"`--hw {device_name}` ({energy.dram_pj_per_byte:.1f} pJ per DRAM byte, {energy.l2_pj_per_byte:.1f} per "
             f"byte in L2): `python benchmarks/gpu_write_back.py report {path} --hw {device_name}`.", "",
             "An fp16 elementwise add of two operands of the size given, each call writing the same output buffer "
             f"(same) or the next of enough to span {L2_SPAN} L2 capacities (rotating: every line written is evicted "
             "and written back before its buffer comes round). Energy per call: NVML's total-energy counter x the "
             "time per call; each variant the mean of two windows. Priced: the device file's energy over the "
             "measured time, the rotating add with the write-back of what it writes and without.", "",
             "| operand | same: time | energy | priced | error | rotating: time | energy | priced | error "
             "| without write-back | error | write-back, measured | priced |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['operand_bytes'] / 2 ** 20:.0f} MB | {row['same_s'] * 1e6:.2f} us | {row['same_j'] * 1e3:.4f} mJ "
            f"| {row['same_priced_j'] * 1e3:.4f} mJ | {pct(row['same_priced_j'], row['same_j'])} "
            f"| {row['rotating_s'] * 1e6:.2f} us | {row['rotating_j'] * 1e3:.4f} mJ "
            f"| {row['rotating_priced_j'] * 1e3:.4f} mJ | {pct(row['rotating_priced_j'], row['rotating_j'])} "
            f"| {row['rotating_unpriced_j'] * 1e3:.4f} mJ | {pct(row['rotating_unpriced_j'], row['rotating_j'])} "
            f"| {row['write_back_pj_per_byte']:.0f} pJ/byte | {energy.dram_pj_per_byte:.0f} pJ/byte |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from simdq.errors import SimdqError
    from simdq.output import replacing

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    measuring = commands.add_parser("measure", help="time and meter the adds (on the GPU)")
    measuring.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    measuring.add_argument("-o", "--out", required=True, type=Path)
    reporting = commands.add_parser("report", help="set a measurement against a fitted device file (no GPU)")
    reporting.add_argument("measurements", type=Path)
    reporting.add_argument("--hw", required=True, help="the calibrated device that prices it (h100, h200)")
    reporting.add_argument("-o", "--out", type=Path, help="write the Markdown here (default: print it)")
    args = parser.parse_args(argv)
    try:
        if args.command == "measure":
            text = json.dumps(measure(args.device), indent=1)
        else:
            text = report(args.measurements, args.hw)
        if args.out is None:
            print(text, end="")
            return 0
        with replacing(args.out, "-o") as temporary:
            temporary.write_text(text, encoding="utf-8")
    except SimdqError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
