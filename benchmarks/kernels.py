"""Speed of the emulator's GEMM and convolution kernels, each as a ratio against a baseline timed in the same run
on the same shapes (issue 11's goals):

  exact int8 x int8 -> int32 matmul, 1024^3      >= 0.5x numpy float32 matmul's throughput   (int4: >= 0.8x)
  binary XNOR-popcount matmul                    >= 4x numpy float32 matmul's multiply-accumulate rate
  sm90_fp8 tensor-core matmul                    >= 100x the plain Python reference of the same rule
  conv2d at LDM-4 shapes (448 ch, 32x32, 3x3)    int8, int4, W1A4, W1A1, e4m3 with sm90_fp8, against torch
                                                 float32 conv2d

    python benchmarks/kernels.py [--repeat 5] [--mmasim MMASIM_DIR]

With --mmasim (a checkout of microsoft/MMA-Sim) the sm90_fp8_fast product is also timed against MMA-Sim's wgmma
chain computing the same bits (it is checked to).

Times are the median of `--repeat` back-to-back runs after a warm-up (Numba compiles, caches and first-touch page
faults); each kernel starts 0.3 s after the previous one: OpenBLAS's threads keep spinning for a while after a
BLAS call and take the cores from Numba's, so a kernel timed right after another's BLAS calls measures that
contention, not itself (the packed XNOR product: 2 ms settled, 5 to 8 ms right after numpy's matmul).
`--no-settle` leaves the pause out.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import emulator as em
from emulator.gemm import operand, split_bounds
from emulator.reference.gemm import exponents, reference_dot
from emulator.xnor import pack_rows


SETTLE_S = 0.3


def timed(fn, repeat):
    time.sleep(SETTLE_S)
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def row(name, ours, baseline, baseline_name, goal):
    ratio = baseline / ours
    print(f"| {name} | {ours * 1e3:.1f} | {baseline_name} | {baseline * 1e3:.1f} | {ratio:.2f}x | {goal} |")


def mmasim_comparison(path, a8, b8, repeat):
    """(ours, MMA-Sim) seconds for the same product as a chain of wgmma m64n8k32 (no promotion: sm90_fp8_fast)."""
    import sys

    import torch

    sys.path.insert(0, path)
    from mmasim.simulator import nv_ptx

    wgmma = nv_ptx.wgmma("Hopper", "m64n8k32.f32.e4m3.e4m3")
    a = torch.from_numpy(a8).view(torch.float8_e4m3fn)
    b = torch.from_numpy(b8).view(torch.float8_e4m3fn)
    out = torch.zeros((a.shape[0], b.shape[1]), dtype=torch.float32)
    start = time.perf_counter()
    for j in range(0, b.shape[1], 8):
        d = torch.zeros((a.shape[0], 8), dtype=torch.float32)
        for k0 in range(0, a.shape[1], 32):
            d = wgmma(a[:, k0:k0 + 32], b[k0:k0 + 32, j:j + 8], d)
        out[:, j:j + 8] = d
    simulated = time.perf_counter() - start
    ours = em.matmul(a8, b8, a_format="e4m3fn", b_format="e4m3fn", accumulator="sm90_fp8_fast")
    assert ours.tobytes() == out.numpy().tobytes(), "MMA-Sim and sm90_fp8_fast disagree"
    fast = timed(lambda: em.matmul(a8, b8, a_format="e4m3fn", b_format="e4m3fn", accumulator="sm90_fp8_fast"), repeat)
    return fast, simulated, "MMA-Sim wgmma chain"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-settle", action="store_true", help="no pause between kernels")
    parser.add_argument("--mmasim", help="a checkout of microsoft/MMA-Sim, to time against")
    args = parser.parse_args()
    global SETTLE_S
    SETTLE_S = 0.0 if args.no_settle else SETTLE_S
    rng = np.random.default_rng(0)
    n = 1024
    print("| kernel | ours ms | baseline | baseline ms | baseline/ours | goal |")
    print("|---|---|---|---|---|---|")
    fa, fb = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)

    def blas():  # re-timed for every row, right before it: the machine's speed drifts between rows
        return timed(lambda: fa @ fb, args.repeat)

    for fmt, goal in (("int8", ">= 0.5x"), ("int4", ">= 0.8x")):
        f = em.get_format(fmt)
        a = em.encode(rng.integers(f.qmin, f.qmax + 1, (n, n)).astype(np.float64), f)
        b = em.encode(rng.integers(f.qmin, f.qmax + 1, (n, n)).astype(np.float64), f)
        ours = timed(lambda: em.matmul(a, b, a_format=fmt, b_format=fmt, accumulator="int32"), args.repeat)
        row(f"{fmt} x {fmt} -> int32 matmul {n}^3 (exact)", ours, blas(), "numpy float32 matmul", goal)
    bits_a = rng.integers(0, 2, (n, n)).astype(np.uint8)
    bits_b = rng.integers(0, 2, (n, n)).astype(np.uint8)
    words_a, words_b = pack_rows(bits_a), pack_rows(bits_b.T)
    out = np.empty((n, n), dtype=np.int64)
    from emulator._kernels import xnor as xnor_kernels

    packed = timed(lambda: xnor_kernels.xnor_popcount(words_a, words_b, n, out), args.repeat)
    row(f"binary XNOR-popcount matmul {n}^3 (packed operands)", packed, blas(), "numpy float32 matmul", ">= 4x")
    whole = timed(lambda: em.matmul(bits_a, bits_b, a_format="binary", b_format="binary"), args.repeat)
    row(f"binary matmul {n}^3 (codes in, packing included)", whole, blas(), "numpy float32 matmul", "-")

    m, k, p = 64, 512, 64
    a8 = em.encode(rng.standard_normal((m, k)) * 20, "e4m3fn")
    b8 = em.encode(rng.standard_normal((k, p)), "e4m3fn")
    acc = em.get_accumulator("sm90_fp8")
    ours = timed(lambda: em.matmul(a8, b8, a_format="e4m3fn", b_format="e4m3fn", accumulator=acc), args.repeat)
    oa, ob = operand(a8, "e4m3fn"), operand(b8, "e4m3fn")
    emin, bounds = em.get_format("e4m3fn").emin, split_bounds(k, 1, 128)
    rows = 2  # the reference is slow: time two rows and scale to the whole product
    start = time.perf_counter()
    for i in range(rows):
        for j in range(p):
            reference_dot(oa.values[i], ob.values[:, j], acc, exponents(oa.values[i], emin),
                          exponents(ob.values[:, j], emin), bounds)
    reference = (time.perf_counter() - start) * m / rows
    row(f"sm90_fp8 matmul {m}x{k}x{p}", ours, reference, "plain Python reference", ">= 100x")
    if args.mmasim:
        row(f"sm90_fp8_fast matmul {m}x{k}x{p}", *mmasim_comparison(args.mmasim, a8, b8, args.repeat), "-")

    import torch

    torch.set_num_threads(2)
    x = rng.standard_normal((1, 448, 32, 32)).astype(np.float32)
    w = rng.standard_normal((448, 448, 3, 3)).astype(np.float32)
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    conv = timed(lambda: torch.nn.functional.conv2d(tx, tw, padding=1), args.repeat)
    x8 = em.encode(np.clip(np.round(x * 30), -128, 127), "int8")
    w8 = em.encode(np.clip(np.round(w * 30), -128, 127), "int8")
    ours = timed(lambda: em.conv2d(x8, w8, x_format="int8", w_format="int8", padding=1, accumulator="int32"),
                 args.repeat)
    row("int8 conv2d 448->448, 32x32, 3x3", ours, conv, "torch float32 conv2d", "ratio")
    x4 = em.encode(np.clip(np.round(np.abs(x) * 5), 0, 15), "uint4")
    w1 = em.encode(w, "binary")
    ours = timed(lambda: em.conv2d(x4, w1, x_format="uint4", w_format="binary", padding=1), args.repeat)
    row("W1A4 conv2d (bit-planes) 448->448, 32x32, 3x3", ours, conv, "torch float32 conv2d", "ratio")
    x4s = em.encode(np.clip(np.round(x * 3), -8, 7), "int4")
    w4 = em.encode(np.clip(np.round(w * 3), -8, 7), "int4")
    ours = timed(lambda: em.conv2d(x4s, w4, x_format="int4", w_format="int4", padding=1), args.repeat)
    row("int4 conv2d 448->448, 32x32, 3x3", ours, conv, "torch float32 conv2d", "ratio")
    x1 = em.encode(x, "binary")
    ours = timed(lambda: em.conv2d(x1, w1, x_format="binary", w_format="binary", padding=1), args.repeat)
    row("W1A1 conv2d (XNOR-popcount) 448->448, 32x32, 3x3", ours, conv, "torch float32 conv2d", "ratio")
    xf, wf = em.encode(x, "e4m3fn"), em.encode(w * 0.1, "e4m3fn")
    ours = timed(lambda: em.conv2d(xf, wf, x_format="e4m3fn", w_format="e4m3fn", padding=1, accumulator="sm90_fp8"),
                 max(1, args.repeat // 3))
    row("e4m3 conv2d, sm90_fp8, 448->448, 32x32, 3x3", ours, conv, "torch float32 conv2d", "ratio")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
