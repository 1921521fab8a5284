"""Run larq-compute-engine's LceBconv2d on drawn +-1 convolutions and save inputs and outputs (see
scripts/record-larq-vectors, which makes the environment this needs: numpy < 2, larq-compute-engine 0.16.0).

One hand-built TFLite model per case: a float32 NHWC input, float32 OHWI +-1 filters, post-activation
multiplier 1 and bias 0, so the float32 output is LCE's integer dot product itself. Cases cover channel counts
that are and are not multiples of 32 (LCE packs 32 channels per int32 word), strides, dilations, VALID and SAME
padding with pad_values 0 (zero padding, which LCE reproduces with its correction) and 1, and 1 and 2 threads.
"""

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np

spec = importlib.util.find_spec("larq_compute_engine")
package = types.ModuleType("larq_compute_engine")  # skip its __init__, which imports TensorFlow
package.__path__ = list(spec.submodule_search_locations)
sys.modules["larq_compute_engine"] = package

import flatbuffers  # noqa: E402
from flatbuffers import flexbuffers  # noqa: E402
from larq_compute_engine.mlir.python import tflite_schema as tfl  # noqa: E402
from larq_compute_engine.tflite.python.interpreter import Interpreter  # noqa: E402


def tensor(shape, type_, buffer, name):
    t = tfl.TensorT()
    t.shape, t.type, t.buffer, t.name = list(shape), type_, buffer, name
    return t


def buffer(data=None):
    b = tfl.BufferT()
    b.data = None if data is None else np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
    return b


def custom(name):
    code = tfl.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = tfl.BuiltinOperator.CUSTOM
    code.customCode, code.version = name, 1
    return code


def operator(code, inputs, outputs, options=None):
    op = tfl.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = code, inputs, outputs
    op.customOptions = np.frombuffer(bytes(flexbuffers.Dumps(options or {})), dtype=np.uint8)
    op.customOptionsFormat = tfl.CustomOptionsFormat.FLEXBUFFERS
    return op


def pack_channels(values):
    """+-1 floats -> int32 words along the last axis, 32 channels a word, bit c % 32 set where the value is < 0."""
    words = -(-values.shape[-1] // 32)
    bits = np.zeros((*values.shape[:-1], words * 32), dtype=np.uint64)
    bits[..., :values.shape[-1]] = values < 0
    weights = np.uint64(1) << np.arange(32, dtype=np.uint64)
    packed = (bits.reshape(*values.shape[:-1], words, 32) * weights).sum(axis=-1)
    return packed.astype(np.uint32).view(np.int32)


def model_bytes(x_shape, w, out_shape, options):
    o = w.shape[0]
    packed_w = pack_channels(w)
    subgraph = tfl.SubGraphT()
    subgraph.tensors = [
        tensor(x_shape, tfl.TensorType.FLOAT32, 1, "x"),
        tensor((*x_shape[:3], -(-x_shape[3] // 32)), tfl.TensorType.INT32, 2, "x_packed"),
        tensor(packed_w.shape, tfl.TensorType.INT32, 3, "w"),
        tensor([o], tfl.TensorType.FLOAT32, 4, "multiplier"),
        tensor([o], tfl.TensorType.FLOAT32, 5, "bias"),
        tensor(out_shape, tfl.TensorType.FLOAT32, 6, "y"),
    ]
    subgraph.inputs, subgraph.outputs = [0], [5]
    subgraph.operators = [operator(0, [0], [1]), operator(1, [1, 2, 3, 4, -1], [5], options)]
    model = tfl.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [custom("LceQuantize"), custom("LceBconv2d")], [subgraph]
    model.buffers = [buffer(), buffer(), buffer(), buffer(packed_w), buffer(np.ones(o, np.float32)),
                     buffer(np.zeros(o, np.float32)), buffer()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def output_size(size, k, stride, dilation, padding):
    effective = (k - 1) * dilation + 1
    return (size - effective) // stride + 1 if padding == "VALID" else -(-size // stride)


CASES = [  # (H, W, C, O, K, stride, dilation, padding, pad_values, threads)
    (7, 6, 5, 4, 3, 1, 1, "SAME", 0, 1),
    (8, 8, 32, 8, 3, 1, 1, "SAME", 0, 2),
    (9, 9, 33, 6, 3, 1, 1, "SAME", 1, 1),
    (9, 7, 70, 5, 3, 1, 2, "SAME", 0, 1),
    (10, 10, 64, 7, 3, 2, 1, "VALID", 0, 2),
    (9, 9, 17, 3, 5, 1, 1, "SAME", 0, 1),
    (11, 11, 96, 9, 1, 1, 1, "VALID", 0, 1),
    (9, 9, 40, 4, 3, 1, 1, "SAME", 1, 2),
]


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261202)
    arrays, index = {}, []
    for n, (h, w_, c, o, k, stride, dilation, padding, pad_values, threads) in enumerate(CASES):
        x = np.where(rng.integers(0, 2, (1, h, w_, c)) == 1, -1.0, 1.0).astype(np.float32)
        w = np.where(rng.integers(0, 2, (o, k, k, c)) == 1, -1.0, 1.0).astype(np.float32)
        oh, ow = output_size(h, k, stride, dilation, padding), output_size(w_, k, stride, dilation, padding)
        options = {"channels_in": c, "dilation_height_factor": dilation, "dilation_width_factor": dilation,
                   "fused_activation_function": 0, "pad_values": pad_values,
                   "padding": 0 if padding == "SAME" else 1, "stride_height": stride, "stride_width": stride}
        interpreter = Interpreter(model_bytes(x.shape, w, (1, oh, ow, o), options), num_threads=threads)
        y = interpreter.predict(x)
        arrays[f"x{n}"], arrays[f"w{n}"], arrays[f"y{n}"] = x, w, np.asarray(y, np.float32).reshape(1, oh, ow, o)
        index.append(dict(case=n, height=h, width=w_, channels=c, filters=o, kernel=k, stride=stride,
                          dilation=dilation, padding=padding, pad_values=pad_values, threads=threads))
    np.savez_compressed(out / "larq_bconv2d.npz", **arrays)
    from importlib.metadata import version

    meta = {"larq_compute_engine": version("larq_compute_engine"), "numpy": np.__version__, "layout": "NHWC / OHWI",
            "cases": index}
    (out / "larq_bconv2d.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{len(index)} cases written to {out}")


if __name__ == "__main__":
    main()
