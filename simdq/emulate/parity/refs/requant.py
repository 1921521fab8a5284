"""Integer GEMMs with requantization: onnxruntime's and onnx.reference's QLinearMatMul, torch.ops.quantized.linear
(fbgemm, x86, qnnpack) and TFLite's FULLY_CONNECTED (ai-edge-litert: reference kernels, XNNPACK) against emulator.matmul (int32) followed by emulator.requantize under each convention.

Cases draw int8 x int8 (u8 x s8 for torch) GEMMs of small operands with scales whose ratio puts outputs on ties
on purpose (steps of 1/2, 1/4, 1/12) and random ones, outputs inside int8. Small operands also keep the u8 x s8
kernels of CPUs without VNNI exact (they sum products in pairs through a saturating int16 instruction).
"""

from __future__ import annotations

import numpy as np

import emulator as em

from ..conventions import Convention
from .base import Reference, float_text, rows

REQUANT = [Convention.of(requant=name) for name in em.REQUANT_CONVENTIONS]
# (sx, sw, sy): output steps of 1/2, 1/4, 1/12 and two irregular ratios, with small operands (|a|, |b| <= 8) so
# that outputs stay inside int8 rather than clamp, and ties land exactly
TIE_SCALES = ((0.5, 1.0, 1.0), (0.25, 1.0, 1.0), (0.5, 0.5, 3.0), (0.0371, 0.0123, 0.0083), (0.02, 0.007, 0.0031))


class RequantReference(Reference):
    domain = "int8 GEMMs of small operands (|a|, |b| <= 8, K <= 32) whose outputs stay inside int8"

    def __init__(self, library: str, id_: str, run, unsigned_a: bool):
        self.library, self.id, self._run, self.unsigned_a = library, id_, run, unsigned_a
        self.conventions = REQUANT
        self.a_format = "uint8" if unsigned_a else "int8"

    def reference(self, case):
        return rows(self._run(case).astype(np.int64) & 0xFF)

    def emulate(self, convention, case):
        acc = em.matmul(case["a"].view(np.uint8), case["b"].view(np.uint8), a_format=self.a_format,
                        b_format="int8", accumulator="int32", a_zero_point=int(case["za"]))
        out = em.requantize(acc, case["sx"], case["sw"], case["sy"], output_zero_point=int(case["zy"]),
                            out_format=self.a_format, convention=convention.get("requant"))
        return rows(out)

    def _case(self, rng, sx, sw, sy, k=16):
        lo, hi = (0, 9) if self.unsigned_a else (-8, 9)
        a = rng.integers(lo, hi, (8, k)).astype(np.uint8 if self.unsigned_a else np.int8)
        b = rng.integers(-8, 9, (k, 8)).astype(np.int8)
        return {"a": a, "b": b, "sx": np.float32(sx), "sw": np.float32(sw), "sy": np.float32(sy),
                "za": 3 if self.unsigned_a else 0, "zy": 5}

    def boundary_cases(self):
        rng = np.random.default_rng(11)
        return [self._case(rng, *scales) for scales in TIE_SCALES]

    def strategy(self):
        from hypothesis import strategies as st

        # sy = sx * sw * ratio: outputs of about |acc| / ratio, inside int8 for these operands
        scales = st.tuples(st.floats(1e-3, 1.0), st.floats(1e-3, 1.0), st.floats(0.3, 8.0)).map(
            lambda t: (t[0], t[1], float(np.float32(t[0]) * np.float32(t[1]) * np.float32(t[2]))))
        return st.tuples(st.integers(0, 2**32 - 1), st.one_of(st.sampled_from(TIE_SCALES), scales),
                         st.integers(1, 32)).map(
            lambda d: self._case(np.random.default_rng(d[0]), *d[1], k=d[2]))

    def show(self, case):
        return (f"a={case['a'].tolist()}, b={case['b'].tolist()}, sx={float_text(case['sx'])}, "
                f"sw={float_text(case['sw'])}, sy={float_text(case['sy'])}, za={case['za']}, zy={case['zy']}")


def _qlinear_model(a_type):
    import onnx
    from onnx import TensorProto, helper

    t = TensorProto.UINT8 if a_type == np.uint8 else TensorProto.INT8
    inputs = [("a", t), ("sa", TensorProto.FLOAT), ("za", t), ("b", TensorProto.INT8), ("sb", TensorProto.FLOAT),
              ("zb", TensorProto.INT8), ("sy", TensorProto.FLOAT), ("zy", t)]
    node = helper.make_node("QLinearMatMul", [n for n, _ in inputs], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, ty, None) for n, ty in inputs],
                              [helper.make_tensor_value_info("y", t, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return onnx, model


def _feeds(case, a_type):
    return {"a": case["a"], "sa": np.array(case["sx"], np.float32), "za": np.array(case["za"], a_type),
            "b": case["b"], "sb": np.array(case["sw"], np.float32), "zb": np.array(0, np.int8),
            "sy": np.array(case["sy"], np.float32), "zy": np.array(case["zy"], a_type)}


def fully_connected(w, bias, sx, zx, sw, sy, zy, m) -> bytes:
    """A one-op int8 TFLite model, built with the schema ai-edge-litert ships: x (m x K; sx, zx) times w^T (w is
    N x K; sw, zero point 0) plus an int32 bias (scale sx * sw), to y (sy, zy)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    def tensor(shape, type_, buffer, name, scale, zero_point):
        t = schema.TensorT()
        t.shape, t.type, t.buffer, t.name = list(shape), type_, buffer, name
        t.quantization = schema.QuantizationParametersT()
        t.quantization.scale, t.quantization.zeroPoint = [float(scale)], [int(zero_point)]
        return t

    def buffer(data=None):
        b = schema.BufferT()
        b.data = None if data is None else np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
        return b

    n, k = w.shape
    types_ = schema.TensorType
    subgraph = schema.SubGraphT()
    subgraph.tensors = [tensor((m, k), types_.INT8, 1, "x", sx, zx), tensor((n, k), types_.INT8, 2, "w", sw, 0),
                        tensor((n,), types_.INT32, 3, "b", np.float32(sx) * np.float32(sw), 0),
                        tensor((m, n), types_.INT8, 4, "y", sy, zy)]
    subgraph.inputs, subgraph.outputs = [0], [3]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    op.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = schema.FullyConnectedOptionsT()
    subgraph.operators = [op]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.FULLY_CONNECTED
    code.version = 4
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [subgraph]
    model.buffers = [buffer(), buffer(), buffer(w.astype(np.int8)), buffer(np.asarray(bias).astype(np.int32)), buffer()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def run_tflite(model, x, resolver):
    from ai_edge_litert import interpreter as litert

    interpreter = litert.Interpreter(model_content=model, experimental_op_resolver_type=resolver, num_threads=1)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def litert_references() -> list[Reference]:
    from ai_edge_litert.interpreter import OpResolverType

    def run(resolver):
        def fc(case):
            w = np.ascontiguousarray(case["b"].T)
            model = fully_connected(w, np.zeros(w.shape[0], np.int32), case["sx"], case["za"], case["sw"],
                                    case["sy"], case["zy"], case["a"].shape[0])
            return run_tflite(model, case["a"], resolver)
        return fc

    return [RequantReference("ai_edge_litert", f"ai_edge_litert: FULLY_CONNECTED int8 ({label})", run(resolver), False)
            for label, resolver in (("reference kernels", OpResolverType.BUILTIN_REF),
                                    ("XNNPACK", OpResolverType.AUTO))]


def onnxruntime_references() -> list[Reference]:
    import onnxruntime as ort

    out = []
    for a_type, label in ((np.int8, "s8 x s8"), (np.uint8, "u8 x s8")):
        _, model = _qlinear_model(a_type)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        out.append(RequantReference("onnxruntime", f"onnxruntime: QLinearMatMul {label}",
                                    lambda case, s=session, t=a_type: s.run(None, _feeds(case, t))[0],
                                    a_type == np.uint8))
    return out


def onnx_reference_references() -> list[Reference]:
    from onnx.reference import ReferenceEvaluator

    _, model = _qlinear_model(np.int8)
    evaluator = ReferenceEvaluator(model)
    return [RequantReference("onnx", "onnx: reference QLinearMatMul s8 x s8",
                             lambda case: evaluator.run(None, _feeds(case, np.int8))[0], False)]


def torch_quantized_references() -> list[Reference]:
    import torch

    def run(engine):
        def linear(case):
            torch.backends.quantized.engine = engine
            qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(case["a"]), float(case["sx"]), int(case["za"]))
            qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(np.ascontiguousarray(case["b"].T)),
                                                         float(case["sw"]), 0)
            packed = torch.ops.quantized.linear_prepack(qw, None)
            return torch.ops.quantized.linear(qx, packed, float(case["sy"]), int(case["zy"])).int_repr().numpy()
        return linear

    import warnings

    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
    return [RequantReference("torch", f"torch: ops.quantized.linear ({engine}) u8 x s8", run(engine), True)
            for engine in ("fbgemm", "x86", "qnnpack") if engine in torch.backends.quantized.supported_engines]
