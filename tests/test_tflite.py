"""Requantization against TFLite (ai-edge-litert, no TensorFlow): a one-op int8 FULLY_CONNECTED model built
with the flatbuffer schema litert ships, run by its reference kernels (BUILTIN_REF) and by XNNPACK (its default
delegate), on scales and accumulators drawn to land on ties.

Measured with litert 2.3.0: BUILTIN_REF rounds the float64 product acc * m half away from zero
(`tflite_reference`), not the single-rounding fixed point oracles.md expected (that differs on negative ties:
-0.5 gives -1, not 0); XNNPACK follows onnxruntime's float32 rule. The optimized kernels without delegates
(BUILTIN_WITHOUT_DEFAULT_DELEGATES) match none of the conventions on 14% of drawn near-ties: not modelled.
"""

import numpy as np
import pytest

import emulator as em

litert = pytest.importorskip("ai_edge_litert.interpreter")
from simdq.emulate.parity.refs.requant import fully_connected, run_tflite  # noqa: E402


# (sx, sw, sy): multipliers 1/2, 1/4, 1/12 put outputs on exact ties; the last two are irregular near-ties
SCALES = [(0.5, 1.0, 1.0), (0.25, 1.0, 1.0), (0.5, 0.5, 3.0), (0.0371, 0.0123, 0.0083), (0.02, 0.007, 0.0031)]


@pytest.mark.parametrize("resolver, convention", [
    (litert.OpResolverType.BUILTIN_REF, "tflite_reference"),
    (litert.OpResolverType.AUTO, "onnxruntime"),  # XNNPACK, TFLite's default delegate
])
@pytest.mark.parametrize("scales", SCALES)
def test_fully_connected_matches_its_convention(rng, resolver, convention, scales):
    sx, sw, sy = scales
    m, k, n = 16, 24, 12
    x = rng.integers(-8, 9, (m, k)).astype(np.int8)  # small operands: outputs stay inside int8, ties land exactly
    w = rng.integers(-8, 9, (n, k)).astype(np.int8)
    bias = rng.integers(-40, 41, n).astype(np.int32)
    zx, zy = 2, -3
    expected = run_tflite(fully_connected(w, bias, sx, zx, sw, sy, zy, m), x, resolver)
    acc = em.matmul(x.view(np.uint8), np.ascontiguousarray(w.T).view(np.uint8), a_format="int8", b_format="int8",
                    accumulator="int32", a_zero_point=zx)
    got = em.requantize(acc, sx, sw, sy, output_zero_point=zy, bias=bias, convention=convention).view(np.int8)
    np.testing.assert_array_equal(got, expected)


def test_the_two_tflite_paths_disagree_on_ties():
    """On multiplier 1/4 the reference kernels round half away from zero, XNNPACK half to even; neither is the
    single-rounding fixed point (half up): the test above can fail."""
    x = np.array([[1, 2, 3, 6, -1, -2, -6]], dtype=np.int8).T.copy()  # one column: acc = x
    w = np.ones((1, 1), dtype=np.int8)
    model = fully_connected(w, np.zeros(1), 0.25, 0, 1.0, 1.0, 0, 7)
    reference = run_tflite(model, x, litert.OpResolverType.BUILTIN_REF).reshape(-1).tolist()
    xnnpack = run_tflite(model, x, litert.OpResolverType.AUTO).reshape(-1).tolist()
    assert reference == [0, 1, 1, 2, 0, -1, -2]  # 0.25 0.5 0.75 1.5 -0.25 -0.5 -1.5, half away from zero
    assert xnnpack == [0, 0, 1, 2, 0, 0, -2]  # half to even
    single = em.requantize(x[:, 0].astype(np.int64), 0.25, 1.0, 1.0, convention="tflite_single_rounding")
    assert single.view(np.int8).tolist() == [0, 1, 1, 2, 0, 0, -1]  # half up: a third rule
