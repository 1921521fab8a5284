"""Render an Estimate as a terminal table, CSV, JSON, Markdown or LaTeX."""

from __future__ import annotations

import csv
import io
import json

from .. import __version__
from ..cost.estimate import TOTAL_KEYS, Estimate
from .tables import latex_table, markdown_table, text_table

HEAVIEST = 10

# quantity, total key, how to show it, whether a smaller value is a saving worth a ratio
SUMMARY_ROWS = (
    ("parameters", "params", "count", False),
    ("size (convention)", "size_mib", "mib", True),
    ("weights as stored", "weight_bytes", "bytes", True),
    ("activations read", "read_bytes", "bytes", True),
    ("activations written", "write_bytes", "bytes", True),
    ("MACs", "macs", "count", False),
    ("BOPs", "bops", "count", False),
    ("FLOPs", "flops", "count", False),
    ("OPs", "ops", "count", True),
    ("latency / forward", "latency_s", "seconds", True),
    ("energy / forward", "energy_j", "joules", True),
)


def human(value, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "mib":
        return f"{value:.2f} MiB"
    if unit == "bytes":
        return f"{value / 2**20:.2f} MiB"
    if unit == "seconds":
        return f"{value * 1e3:.3f} ms" if value < 1 else f"{value:.3f} s"
    if unit == "joules":
        return f"{value:.4g} J"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{suffix}"
    return f"{value:g}"


def savings(estimate: Estimate) -> dict:
    ratios = {}
    for _, key, _, is_saving in SUMMARY_ROWS:
        ours, full = estimate.totals[key], estimate.baseline[key]
        ratios[key] = full / ours if is_saving and ours and full is not None else None
    return ratios


def layer_record(result) -> dict:
    layer, scheme, cost, device = result.layer, result.scheme, result.cost, result.device
    record = {
        "name": layer.name,
        "module_type": layer.module_type,
        "kind": layer.kind,
        "weight_format": scheme.weight.name if scheme.weight and layer.is_weight_layer else None,
        "activation_format": scheme.activation.name,
        "decided_by": scheme.decided_by,
        "counted": cost.counted,
        "params": cost.params,
        "weight_bytes": cost.weight_bytes,
        "size_bytes": cost.size_bytes,
        "read_bytes": cost.read_bytes,
        "write_bytes": cost.write_bytes,
        "layer_macs": layer.macs,
        "macs": cost.macs,
        "bops": cost.bops,
        "flops": cost.flops,
        "ops": cost.ops,
        "kernels": layer.kernels,
        "input_shape": "x".join(map(str, layer.input_shape)),
        "output_shape": "x".join(map(str, layer.output_shape)),
    }
    fields = ("engine", "compute_precision", "mapping", "compute_s", "memory_s", "overhead_s", "latency_s",
              "bottleneck", "energy_j")
    record.update({f: getattr(device, f) if device else None for f in fields})
    return record


def to_dict(estimate: Estimate) -> dict:
    return {
        "simdq_version": __version__,
        "model": estimate.model,
        "device": estimate.device,
        "energy_model": estimate.energy_model,
        "convention": estimate.convention,
        "input": {"batch": estimate.batch, "steps": estimate.steps, "guidance": estimate.guidance,
                  "forwards_per_image": estimate.forwards_per_image},
        "totals": {k: estimate.totals[k] for k in TOTAL_KEYS},
        "per_image": estimate.per_image,
        "full_precision": {k: estimate.baseline[k] for k in TOTAL_KEYS},
        "savings": {k: v for k, v in savings(estimate).items() if v is not None},
        "not_counted": estimate.uncounted,
        "layers": [layer_record(r) for r in estimate.layers],
    }


# ---- tables ---------------------------------------------------------------------------------------
def summary_table(estimate: Estimate):
    ratios = savings(estimate)
    rows = []
    for label, key, unit, _ in SUMMARY_ROWS:
        ratio = ratios[key]
        rows.append([label, human(estimate.totals[key], unit), human(estimate.baseline[key], unit),
                     f"{ratio:.2f}x" if ratio else ""])
    per_image = estimate.per_image
    rows.append([f"OPs / image ({estimate.forwards_per_image:g} forwards)", human(per_image["ops"], "count"), "", ""])
    rows.append(["latency / image", human(per_image["latency_s"], "seconds"), "", ""])
    rows.append(["energy / image", human(per_image["energy_j"], "joules"), "", ""])
    return ["quantity", "this scheme", "full precision", "saving"], rows


LAYER_COLUMNS = ("name", "kind", "W", "A", "params", "MACs", "BOPs", "OPs", "engine", "precision", "latency", "bound",
                 "mapping")


def layer_table(results):
    rows = []
    for result in results:
        record = layer_record(result)
        rows.append([
            record["name"], record["kind"], record["weight_format"] or "-", record["activation_format"],
            human(record["params"], "count"), human(record["layer_macs"], "count"), human(record["bops"], "count"),
            human(record["ops"], "count"), record["engine"] or "-", record["compute_precision"] or "-",
            "-" if record["latency_s"] is None else f"{record['latency_s'] * 1e6:.1f} us",
            record["bottleneck"] or "-", record["mapping"] or "-",
        ])
    return list(LAYER_COLUMNS), rows


def heaviest(estimate: Estimate, count: int = HEAVIEST):
    timed = [r for r in estimate.layers if r.device is not None]
    return sorted(timed, key=lambda r: -r.device.latency_s)[:count]


def headline(estimate: Estimate) -> str:
    guidance = "with guidance" if estimate.guidance else "no guidance"
    return (f"{estimate.model} on {estimate.device}: convention {estimate.convention}, batch {estimate.batch}, "
            f"{estimate.steps} steps, {guidance}")


def not_counted_line(estimate: Estimate) -> str:
    left_out = estimate.uncounted
    if not any(left_out.values()):
        return f"convention {estimate.convention} counts every op"
    return (f"not counted in OPs under {estimate.convention}: attention matmuls "
            f"{human(left_out['attention_macs'], 'count')} MACs, excluded layers "
            f"{human(left_out['excluded_layer_macs'], 'count')} MACs, norm/softmax/elementwise "
            f"{human(left_out['non_gemm_flops'], 'count')} FLOPs (latency includes them all)")


def render(estimate: Estimate, fmt: str, per_layer: bool = False) -> str:
    if fmt == "json":
        return json.dumps(to_dict(estimate), indent=2)
    if fmt == "csv":
        buffer = io.StringIO()
        if per_layer:
            records = [layer_record(r) for r in estimate.layers]
            writer = csv.DictWriter(buffer, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
        else:
            writer = csv.writer(buffer)
            writer.writerow(["quantity", "value", "full_precision", "saving"])
            ratios = savings(estimate)
            for _, key, _, _ in SUMMARY_ROWS:
                writer.writerow([key, estimate.totals[key], estimate.baseline[key], ratios[key] or ""])
            for key, value in estimate.per_image.items():
                writer.writerow([f"per_image_{key}", value, "", ""])
        return buffer.getvalue()
    summary = summary_table(estimate)
    layers = layer_table(estimate.layers if per_layer else heaviest(estimate))
    layers_title = "per layer" if per_layer else f"heaviest {HEAVIEST} layers by latency"
    if fmt == "markdown":
        return "\n\n".join([f"**{headline(estimate)}**", markdown_table(*summary), not_counted_line(estimate),
                            f"*{layers_title}*", markdown_table(*layers)]) + "\n"
    if fmt == "latex":
        return "\n\n".join([latex_table(*summary, caption=headline(estimate)),
                            latex_table(*layers, caption=f"{estimate.model}: {layers_title}")]) + "\n"
    return "\n\n".join([
        headline(estimate), f"model: {estimate.description or estimate.model}\ndevice: {estimate.device_description}"
                            f"\nenergy: {estimate.energy_model}",
        text_table(*summary),
        not_counted_line(estimate), f"{layers_title}:", text_table(*layers),
    ]) + "\n"
