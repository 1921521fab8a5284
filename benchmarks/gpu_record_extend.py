"""Extend a microbenchmark record (`simdq hw calibrate --record`) with the suite's benchmarks of classes it lacks,
timed on the same GPU model in a later session: a class added to the suite then joins the fit without timing the
record's other benchmarks again.

    python benchmarks/gpu_record_extend.py measure --classes bias_add,bias_add_fp32 --base h100-sxm -o OUT/added.json
    python benchmarks/gpu_record_extend.py merge reports/gpu-microbenchmarks-h100.json OUT/added.json \\
        -o reports/gpu-microbenchmarks-h100.json

The merged record keeps the first session's fields (its date, software, idle power) and lists each addition under
`additions`: its date, software, idle power, classes and how many measurements it brought.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# what must match between a record and an addition for their times to be one GPU's
SAME = ("gpu", "sms", "torch", "cuda")


def merged(record: dict, addition: dict, where: str) -> dict:
    """`record` with `addition`'s measurements appended; SimdqError where the two are not one GPU and software, or
    the addition times a class the record already has."""
    from simdq.errors import SimdqError

    apart = [f"{key} {record.get(key)!r} against {addition.get(key)!r}" for key in SAME
             if record.get(key) != addition.get(key)]
    if apart:
        raise SimdqError(f"{where}: not the record's GPU and software ({'; '.join(apart)})")
    classes = sorted({m["op_class"] for m in addition["measurements"]})
    overlap = sorted(set(classes) & {m["op_class"] for m in record["measurements"]})
    if overlap:
        raise SimdqError(f"{where}: the record already times {', '.join(overlap)}; an addition brings new classes only")
    result = dict(record, measurements=record["measurements"] + addition["measurements"])
    result["additions"] = record.get("additions", []) + [
        {"date": addition["date"], "torch": addition["torch"], "cuda": addition["cuda"], "classes": classes,
         "measurements": len(addition["measurements"]),
         **{key: addition[key] for key in ("idle_before", "idle_after") if key in addition}}]
    return result


def main(argv=None) -> int:
    from simdq.errors import SimdqError
    from simdq.microbench import measure_device, read_record
    from simdq.output import replacing

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    measure = commands.add_parser("measure", help="time the suite's benchmarks of some classes (on the GPU)")
    measure.add_argument("--classes", required=True, help="op classes, comma-separated")
    measure.add_argument("--base", default="h100-sxm", help="catalogue device whose peaks label the record")
    measure.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    measure.add_argument("--quick", action="store_true", help="the suite's few small shapes (to test the pipeline)")
    measure.add_argument("-o", "--out", required=True, type=Path)
    merge = commands.add_parser("merge", help="append an addition's measurements to a record")
    merge.add_argument("record", type=Path)
    merge.add_argument("addition", type=Path)
    merge.add_argument("-o", "--out", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "measure":
            classes = tuple(name.strip() for name in args.classes.split(",") if name.strip())
            data = measure_device(args.device, args.base, quick=args.quick, classes=classes)
        else:
            data = merged(read_record(str(args.record)), read_record(str(args.addition)), str(args.addition))
        with replacing(args.out, "-o") as temporary:
            temporary.write_text(json.dumps(data, indent=1))
    except SimdqError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(data['measurements'])} measurements")
    return 0


if __name__ == "__main__":
    sys.exit(main())
