"""`simdq parity kernels`: properties of every emulator kernel, accumulator and requantization convention, each
against a reference the emulator did not compute, searched by hypothesis (derandomized by --seed) and shrunk to
the smallest counterexample when one fails.

References: exact integer and float64 arithmetic (numpy int64, torch float64: exact at the drawn sizes), the
plain Python twins of the accumulators (emulator/reference/gemm.py, Fractions and Python integers), ml_dtypes'
float8 dot product, the installed requantizing kernels that `simdq parity refs` knows (onnxruntime and
onnx.reference QLinearMatMul, torch.ops.quantized.linear on each engine, TFLite FULLY_CONNECTED), each held to
the convention the expectation table gives its version, Larq's LceBconv2d (recorded vectors) and, with
--vectors, the tensor-core bit patterns recorded on an H200 (tests/data/tensor_cores in a source checkout).
Two more properties hold the kernels to themselves: results do not depend on the thread count, and the fast
paths (integer convolutions by taps, tensor cores from code tables) equal the general ones; residual
binarization (binary2) is held to its plain twin.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import emulator as em
from emulator.codec import code_dtype
from emulator.gemm import operand, split_bounds
from emulator.reference.gemm import exponents, reference_dot

from .versions import installed_version


@dataclass
class KernelProperty:
    name: str
    reference: str  # what it is checked against, with its version
    strategy: object  # () -> hypothesis strategy of cases
    check: object  # case -> None (holds) or one line saying what differs
    show: object = repr  # case -> one line
    cases: list | None = None  # recorded cases: every one is checked, in order (nothing to draw or shrink)


@dataclass
class PropertyResult:
    name: str
    reference: str
    checks: int
    failures: int
    counterexample: str | None = None
    error: str | None = None

    @property
    def holds(self) -> bool:
        return self.failures == 0 and self.error is None


@dataclass
class KernelReport:
    results: list = field(default_factory=list)
    not_installed: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.holds for r in self.results)


def run_property(prop: KernelProperty, examples: int, seed: int) -> PropertyResult:
    """Search `examples` cases for one where the property fails; the failing case comes back shrunk."""
    from hypothesis import HealthCheck, find, settings
    from hypothesis.errors import NoSuchExample

    if prop.cases is not None:
        failing = [case for case in prop.cases if _quiet(prop.check, case) is not None]
        first = f"{prop.show(failing[0])}: {_quiet(prop.check, failing[0])}" if failing else None
        return PropertyResult(prop.name, prop.reference, len(prop.cases), len(failing), first)
    counts = {"checks": 0, "failures": 0}

    def fails(case) -> bool:
        counts["checks"] += 1
        failed = _quiet(prop.check, case) is not None
        counts["failures"] += failed
        return failed

    profile = settings(max_examples=examples, database=None, deadline=None,
                       suppress_health_check=list(HealthCheck))
    try:
        case = find(prop.strategy(), fails, settings=profile, random=random.Random(seed))
    except NoSuchExample:
        return PropertyResult(prop.name, prop.reference, counts["checks"], 0)
    except Exception as err:  # a kernel that raises on a drawn case is a finding, not a crash of the report
        return PropertyResult(prop.name, prop.reference, counts["checks"], counts["failures"],
                              error=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    return PropertyResult(prop.name, prop.reference, counts["checks"], counts["failures"],
                          f"{prop.show(case)}: {_quiet(prop.check, case)}")


def _quiet(check, case):
    """The check without numpy's overflow warnings (drawn extremes overflow float32 on both sides alike)."""
    import warnings

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return check(case)


# ---- strategies ---------------------------------------------------------------------------------------------
def _codes(draw, st, shape, fmt):
    """Codes of `fmt`, biased to the format's extremes (the first and last codes of its range), never NaN/inf."""
    fmt = em.get_format(fmt)
    if isinstance(fmt, em.FloatFormat):
        table = em.decode(np.arange(1 << fmt.bits), fmt)
        finite = np.flatnonzero(np.isfinite(table))
        picks = st.one_of(st.sampled_from(finite.tolist()), st.sampled_from(finite[-4:].tolist() + finite[:4].tolist()))
    else:
        top = (1 << fmt.bits) - 1
        picks = st.one_of(st.integers(0, top), st.sampled_from([0, 1, top, top // 2, top // 2 + 1]))
    from hypothesis.extra import numpy as npst

    return draw(npst.arrays(np.int64, shape, elements=picks)).astype(code_dtype(fmt.bits))


def _gemm_cases(formats, max_k=48):
    from hypothesis import strategies as st

    @st.composite
    def cases(draw):
        fmt = draw(st.sampled_from(formats))
        m, k, n = draw(st.integers(1, 3)), draw(st.integers(1, max_k)), draw(st.integers(1, 3))
        return {"fmt": fmt, "a": _codes(draw, st, (m, k), fmt), "b": _codes(draw, st, (k, n), fmt)}
    return cases()


def _conv_cases(x_formats, w_format, geometries):
    from hypothesis import strategies as st

    @st.composite
    def cases(draw):
        x_fmt = draw(st.sampled_from(x_formats))
        geometry = draw(st.sampled_from(geometries))
        groups = geometry.get("groups", 1)
        c = groups * draw(st.integers(1, 3))
        o = groups * draw(st.integers(1, 3))
        size = draw(st.integers(3, 6))
        return {"x_fmt": x_fmt, "geometry": geometry,
                "x": _codes(draw, st, (1, c, size, size), x_fmt), "w": _codes(draw, st, (o, c // groups, 3, 3), w_format)}
    return cases()


GEOMETRIES = [dict(padding=1), dict(padding=0), dict(padding=1, stride=2), dict(padding=2, dilation=2),
              dict(padding=1, groups=2)]


def _show_gemm(case):
    return f"{case.get('fmt', '')} a={np.asarray(case['a']).tolist()} b={np.asarray(case['b']).tolist()}"


def _show_conv(case):
    return f"{case['x_fmt']} x, {case['geometry']}, x={case['x'].tolist()}, w={case['w'].tolist()}"


# ---- properties ---------------------------------------------------------------------------------------------
def _int_values(codes, fmt):
    return operand(codes, fmt).values


def exact_integer_gemm() -> KernelProperty:
    def check(case):
        fmt = case["fmt"]
        got = em.matmul(case["a"], case["b"], a_format=fmt, b_format=fmt, accumulator="exact")
        want = _int_values(case["a"], fmt) @ _int_values(case["b"], fmt)
        return None if np.array_equal(got, want) else f"{got.tolist()} != {want.tolist()}"
    return KernelProperty("matmul, exact accumulator, integer formats", f"numpy {np.__version__} int64 matmul",
                          lambda: _gemm_cases(["int8", "uint8", "int4", "uint4", "int2"], 300), check, _show_gemm)


def narrow_integer_accumulators() -> KernelProperty:
    from hypothesis import strategies as st

    accumulators = ["int16", "int16_saturate", "int12_saturate", "int32_saturate", "int20"]

    def strategy():
        return st.tuples(_gemm_cases(["int8", "uint8"], 64), st.sampled_from(accumulators)).map(
            lambda t: {**t[0], "acc": t[1]})

    def check(case):
        fmt, acc = case["fmt"], em.get_accumulator(case["acc"])
        got = em.matmul(case["a"], case["b"], a_format=fmt, b_format=fmt, accumulator=acc)
        a, b = _int_values(case["a"], fmt), _int_values(case["b"], fmt)
        for i in range(a.shape[0]):
            for j in range(b.shape[1]):
                want = reference_dot([int(v) for v in a[i]], [int(v) for v in b[:, j]], acc)
                if int(got[i, j]) != want:
                    return f"output ({i}, {j}) is {int(got[i, j])}, the plain reference {want}"
        return None
    return KernelProperty("matmul, int<P> wrapping and saturating accumulators (every partial sum)",
                          "plain reference (emulator/reference/gemm.py, Python integers)", strategy, check,
                          lambda c: f"{c['acc']}: {_show_gemm(c)}")


def tensor_core_accumulators() -> KernelProperty:
    from hypothesis import strategies as st

    presets = [("e4m3fn", "sm90_fp8"), ("e5m2", "sm90_fp8_fast"), ("bf16", "sm90_bf16"), ("fp16", "sm90_fp16"),
               ("fp16", "sm80_fp16"), ("e4m3fn", "fp32"), ("bf16", "fp32_pairwise")]

    def strategy():
        return st.sampled_from(presets).flatmap(lambda p: st.tuples(
            _gemm_cases([p[0]], 300), st.just(p[1]), st.integers(1, 3))).map(
            lambda t: {**t[0], "acc": t[1], "split": t[2]})

    def check(case):
        fmt = em.get_format(case["fmt"])
        acc = em.get_accumulator(case["acc"])
        if acc.kind == "tensor_core" and case["split"] > 1:
            acc = em.get_accumulator(case["acc"], split_k=case["split"], split_tile=32)
        got = em.matmul(case["a"], case["b"], a_format=fmt, b_format=fmt, accumulator=acc)
        a, b = operand(case["a"], fmt).values, operand(case["b"], fmt).values
        core = acc.kind == "tensor_core"
        bounds = split_bounds(a.shape[1], acc.split_k, acc.split_tile)
        for i in range(a.shape[0]):
            for j in range(b.shape[1]):
                want = np.float32(reference_dot(a[i], b[:, j], acc, exponents(a[i], fmt.emin) if core else None,
                                                exponents(b[:, j], fmt.emin) if core else None, bounds))
                if got[i, j].tobytes() != want.tobytes():
                    return f"output ({i}, {j}) is {float(got[i, j])!r}, the plain reference {float(want)!r}"
        return None
    return KernelProperty("matmul, tensor-core and float32 accumulators (sm90, sm80, fp32, split-K)",
                          "plain reference (emulator/reference/gemm.py, Fractions)", strategy, check,
                          lambda c: f"{c['acc']} split {c['split']}: {_show_gemm(c)}")


def ml_dtypes_dot() -> KernelProperty | None:
    try:
        import ml_dtypes
    except ImportError:
        return None
    import warnings

    def check(case):
        fmt = case["fmt"]
        dtype = {"e4m3fn": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}[fmt]
        ours = em.encode(em.matmul(case["a"], case["b"], a_format=fmt, b_format=fmt, accumulator="fp32"), fmt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = np.dot(case["a"].astype(np.uint8).view(dtype), case["b"].astype(np.uint8).view(dtype))
        theirs = theirs.view(np.uint8)
        nan = em.decode(theirs, fmt) != em.decode(theirs, fmt)
        same = (ours == theirs) | (nan & (em.decode(ours, fmt) != em.decode(ours, fmt)))
        return None if same.all() else f"codes {ours.tolist()} != ml_dtypes' {theirs.tolist()}"
    return KernelProperty("matmul, fp32 accumulator (sequential float32 adds), rounded to the operands' format",
                          f"ml_dtypes {installed_version('ml_dtypes')} np.dot on float8 arrays",
                          lambda: _gemm_cases(["e4m3fn", "e5m2"], 64), check, _show_gemm)


def _torch_conv(x_values, w_values, geometry):
    import torch

    return torch.nn.functional.conv2d(torch.from_numpy(np.asarray(x_values, np.float64)),
                                      torch.from_numpy(np.asarray(w_values, np.float64)), **geometry).numpy()


def integer_convolutions() -> KernelProperty:
    import torch

    def check(case):
        fmt, geometry = case["x_fmt"], case["geometry"]
        got = em.conv2d(case["x"], case["w"], x_format=fmt, w_format="int4", accumulator="exact", **geometry)
        want = _torch_conv(_int_values(case["x"], fmt), _int_values(case["w"], "int4"), geometry)
        general = em.conv2d(case["x"], case["w"], x_format=fmt, w_format="int4", accumulator="int64", **geometry)
        if not np.array_equal(got, want):
            return "differs from torch's float64 convolution"
        return None if np.array_equal(general, want) else "the int64 path differs from torch's float64 convolution"
    return KernelProperty("conv2d, integer formats (BLAS by taps, im2col, every geometry)",
                          f"torch {torch.__version__} float64 conv2d (exact at these sizes)",
                          lambda: _conv_cases(["int8", "uint8", "int4"], "int4", GEOMETRIES), check, _show_conv)


def binary_convolutions() -> KernelProperty:
    import torch
    from hypothesis import strategies as st

    def strategy():
        return st.tuples(_conv_cases(["binary", "int4", "uint4", "int8"], "binary", GEOMETRIES),
                         st.sampled_from([None, 1, -1])).map(lambda t: {**t[0], "pad": t[1]})

    def check(case):
        fmt, geometry = case["x_fmt"], dict(case["geometry"])
        pad = case["pad"] if fmt == "binary" else None
        got = em.conv2d(case["x"], case["w"], x_format=fmt, w_format="binary", padding_value=pad, **geometry)
        x = _int_values(case["x"], fmt).astype(np.float64)
        if pad is not None:  # pad by hand with the value, then convolve without padding
            p = geometry.pop("padding")
            x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=pad)
        want = _torch_conv(x, _int_values(case["w"], "binary"), geometry)
        return None if np.array_equal(got, want) else "differs from torch's float64 convolution of the values"
    return KernelProperty("conv2d, binary weights: XNOR-popcount (3 paddings) and bit-planes",
                          f"torch {torch.__version__} float64 conv2d of the +-1 / integer values", strategy, check,
                          lambda c: f"padding_value={c['pad']}: {_show_conv(c)}")


def fast_paths_equal_general_ones() -> KernelProperty:
    from hypothesis import strategies as st

    def strategy():
        return _conv_cases(["e4m3fn", "e5m2"], "e4m3fn", GEOMETRIES).flatmap(
            lambda c: st.sampled_from(["sm90_fp8", "sm90_fp8_fast"]).map(lambda a: {**c, "acc": a}))

    def check(case):
        fmt, geometry, acc = case["x_fmt"], case["geometry"], case["acc"]
        fast = em.conv2d(case["x"], case["w"], x_format=fmt, w_format="e4m3fn", accumulator=acc, **geometry)
        general = em.conv2d(operand(case["x"], fmt), operand(case["w"], "e4m3fn"), accumulator=acc, **geometry)
        return None if np.array_equal(fast.view(np.uint32), general.view(np.uint32)) else \
            "the code-table path differs from the decoded-operand path"
    return KernelProperty("conv2d, tensor cores from code tables = from decoded operands",
                          "the emulator's general path (itself held to the plain reference above)", strategy, check,
                          lambda c: f"{c['acc']}: {_show_conv(c)}")


def residual_binarization() -> KernelProperty:
    from hypothesis import strategies as st

    from emulator.reference.residual import reference_residual_binarize, reference_residual_value

    magnitudes = st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 3.0, -3.0]),
                           st.floats(-1e4, 1e4, width=32, allow_nan=False))

    def strategy():
        return st.tuples(st.integers(1, 4), st.integers(1, 12), st.sampled_from(["binary2", "binary3"]),
                         st.sampled_from(["+1", "-1"])).flatmap(lambda t: st.lists(
                             magnitudes, min_size=t[0] * t[1], max_size=t[0] * t[1]).map(lambda v: {
                                 "w": np.array(v, np.float32).reshape(t[0], t[1]), "fmt": t[2], "zero": t[3]}))

    def check(case):
        fmt = em.get_format(case["fmt"], zero=case["zero"])
        encoded = em.residual_binarize(case["w"], fmt)
        values = em.residual_dequantize(encoded.codes, encoded.scales, fmt)
        for c, channel in enumerate(case["w"].tolist()):
            codes, scales = reference_residual_binarize(channel, fmt.bases, case["zero"])
            if encoded.codes[c].tolist() != codes or encoded.scales[c].tolist() != scales:
                return f"channel {c}: codes or scales differ from the plain twin"
            want = np.array([reference_residual_value(code, scales) for code in codes], np.float32)
            if values[c].tobytes() != want.tobytes():
                return f"channel {c}: decoded values differ from the plain twin"
        return None
    return KernelProperty("residual_binarize / residual_dequantize (binary2, binary3; both zero rules)",
                          "the plain twin (emulator/reference/residual.py: Python floats, math.fsum)", strategy, check,
                          lambda c: f"{c['fmt']} zero={c['zero']} w={c['w'].tolist()}")


def thread_count_invariance() -> KernelProperty:
    import numba

    def check(case):
        before = numba.get_num_threads()
        outs = []
        try:
            for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
                numba.set_num_threads(threads)
                outs.append(em.matmul(case["a"], case["b"], a_format="e4m3fn", b_format="e4m3fn",
                                      accumulator="sm90_fp8"))
        finally:
            numba.set_num_threads(before)
        return None if all(np.array_equal(o.view(np.uint32), outs[0].view(np.uint32)) for o in outs) else \
            "results differ between thread counts"
    return KernelProperty(f"matmul sm90_fp8 on 1 and {numba.config.NUMBA_NUM_THREADS} Numba threads",
                          "itself (results must not depend on the thread count)",
                          lambda: _gemm_cases(["e4m3fn"], 200), check, _show_gemm)


def installed_kernel_references() -> tuple[list, list]:
    """Properties from the requantizing kernels and the recorded Larq vectors of `simdq parity refs`: each held
    to the convention the expectation table gives its version."""
    from .expected import expected_convention
    from .refs import installed_references
    from .versions import reference_version

    libraries = ["torch", "onnxruntime", "onnx", "ai_edge_litert", "larq_compute_engine"]
    references, missing = installed_references(libraries)
    properties = []
    for reference in references:
        if not any(key in reference.id for key in ("QLinearMatMul", "quantized.linear", "FULLY_CONNECTED",
                                                   "LceBconv2d")):
            continue
        version = reference_version(reference)
        convention = expected_convention(reference, version)
        if convention is None:
            continue

        def check(case, reference=reference, convention=convention):
            got, want = reference.emulate(convention, case), reference.reference(case)
            if np.array_equal(got, want):
                return None
            unit = int(np.flatnonzero((got != want).any(axis=1))[0])
            return f"unit {unit}: emulator {got[unit].tolist()}, library {want[unit].tolist()}"
        recorded = reference.recorded_version is not None  # replayed vectors: every one, in order
        properties.append(KernelProperty(f"{reference.id} = emulator {convention.name}",
                                         f"{reference.library} {version}", reference.strategy, check,
                                         reference.show, reference.boundary_cases() if recorded else None))
    return properties, missing


def recorded_tensor_cores(directory) -> KernelProperty:
    """Every GEMM recorded on the H200 (scripts/record-tensor-core-vectors), replayed on its preset."""
    directory = Path(directory)
    index = json.loads((directory / "tensor_cores.json").read_text())
    arrays = np.load(directory / "tensor_cores.npz")
    cases = [c for c in index["cases"] if "out" in c and c["op"] in ("scaled_mm", "mm")]

    def check(case):
        split = any("splitK" in kernel for kernel in case["kernels"])
        if case["op"] == "scaled_mm":
            a, b = arrays[case["a"]], arrays[case["bt"]].T
            formats = (case["a_format"], case["b_format"])
            preset = "sm90_fp8_fast" if case["fast_accum"] else "sm90_fp8"
            scales = (case["scale_a"][0], case["scale_b"][0]) if case["scaling"] == "tensor" else \
                (arrays[case["scale_a"]], arrays[case["scale_b"]])
        else:
            a, b = arrays[case["a"]], arrays[case["b"]]
            formats, preset, scales = (case["kind"], case["kind"]), f"sm90_{case['kind']}", (None, None)
        acc = em.get_accumulator(preset, split_k=3) if split else em.get_accumulator(preset)
        out = em.matmul(a, b, a_format=formats[0], b_format=formats[1], accumulator=acc, a_scale=scales[0],
                        b_scale=scales[1], out_format=case["out_dtype"])
        recorded = arrays[case["out"]]
        bits = out.view(np.uint32) if case["out_dtype"] == "fp32" else (
            out.astype(np.float16).view(np.uint16) if case["out_dtype"] == "fp16" else
            (out.view(np.uint32) >> 16).astype(np.uint16))
        recorded = recorded.view(np.uint32 if case["out_dtype"] == "fp32" else np.uint16)
        wrong = int((bits != recorded).sum())
        return None if wrong == 0 else f"{wrong} of {bits.size} outputs differ from the H200's"
    return KernelProperty(f"sm90 presets on {len(cases)} GEMMs recorded on an {index.get('device', 'H200')}",
                          f"bit patterns recorded by scripts/record-tensor-core-vectors ({directory})",
                          None, check,
                          lambda c: f"{c['op']} {c.get('a_format', c.get('kind'))} k={c['k']} {c['out_dtype']}", cases)


def kernel_properties(vectors=None) -> tuple[list, list]:
    """(every property whose reference is installed, the libraries that are not)."""
    properties = [exact_integer_gemm(), narrow_integer_accumulators(), tensor_core_accumulators(),
                  integer_convolutions(), binary_convolutions(), fast_paths_equal_general_ones(),
                  residual_binarization(), thread_count_invariance()]
    dot = ml_dtypes_dot()
    missing = [] if dot is not None else ["ml_dtypes"]
    properties += [dot] if dot is not None else []
    referenced, absent = installed_kernel_references()
    properties += referenced
    if vectors is not None:
        properties.append(recorded_tensor_cores(vectors))
    return properties, missing + absent
