"""The float32 round-to-nearest-even fast path against the general minifloat kernel, bit for bit."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator import encode, get_format
from emulator._kernels import codec as kernels
from emulator.codec import _fast_path_args, code_dtype, input_bits, minifloat_kernel_args

FORMATS = [
    "e4m3fn", "e5m2", "e4m3fnuz", "e5m2fnuz", "e4m3b11fnuz", "e3m4", "e4m3", "e2m3", "e3m2", "e2m1", "fp16", "bf16",
    "e5m7", "e6m9finite", "e8m3",
    ("e4m3fn", {"overflow": "saturate"}), ("e5m2", {"overflow": "saturate"}), ("e5m2", {"overflow": "nan"}),
    ("e4m3fnuz", {"overflow": "saturate"}), ("e2m1", {"on_nan": "zero"}), ("e3m2", {"on_nan": "zero"}),
]
# every 4099th float32 bit pattern: all exponents, signs, NaNs and infinities, many mantissas
STRIDED = np.arange(0, 2**32, 4099, dtype=np.uint64).astype(np.uint32).view(np.float32)


def _format(spec):
    return get_format(spec[0], **spec[1]) if isinstance(spec, tuple) else get_format(spec)


def general_kernel(x: np.ndarray, fmt) -> np.ndarray:
    out = np.empty(x.size, dtype=code_dtype(fmt.bits))
    kernels.encode_minifloat_array(*input_bits(x, fmt), out, *minifloat_kernel_args(fmt), 0, 0, 32)
    return out


def _without_rejected_nans(x, fmt):
    return x[~np.isnan(x)] if (not fmt.has_nan and fmt.on_nan == "raise") else x


@pytest.mark.parametrize("spec", FORMATS, ids=str)
def test_fast_path_equals_general_kernel_on_strided_bit_patterns(spec):
    fmt = _format(spec)
    x = _without_rejected_nans(STRIDED, fmt)
    assert _fast_path_args(x, fmt, 0) is not None  # the fast path is what encode runs here
    np.testing.assert_array_equal(encode(x, fmt), general_kernel(x, fmt))


@pytest.mark.parametrize("spec", FORMATS, ids=str)
@given(data=st.data())
def test_fast_path_equals_general_kernel_near_the_format_range(spec, data):
    fmt = _format(spec)
    exponents = st.integers(max(fmt.emin - fmt.mbits - 3, -149), min(fmt.emax + 3, 127))
    values = data.draw(st.lists(st.tuples(exponents, st.integers(0, 2**23 - 1), st.booleans()), min_size=1))
    x = np.array([(-1) ** s * np.ldexp(1 + m / 2**23, e) for e, m, s in values], np.float32)
    np.testing.assert_array_equal(encode(x, fmt), general_kernel(x, fmt))


def test_general_kernel_still_serves_other_cases():
    x = STRIDED[:1000]
    assert _fast_path_args(x, get_format("e4m3fn"), 1) is None  # rtz
    assert _fast_path_args(x.astype(np.float64), get_format("e4m3fn"), 0) is None
    assert _fast_path_args(x, get_format("e8m0"), 0) is None  # unsigned, no zero
    assert _fast_path_args(x, get_format("e4m3fn", subnormals=False), 0) is None
    assert _fast_path_args(x, get_format("e8m3", bias=130), 0) is None  # emin below float32's normals
