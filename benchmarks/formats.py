"""Encode/decode speed of 10M float32 values: emulator vs ml_dtypes and torch casts, same array, same run.

Run: python benchmarks/formats.py   (prints a Markdown table of times and ratios)
"""

import time

import ml_dtypes
import numpy as np
import torch

import emulator as em

N = 10_000_000
CASES = [("e4m3fn", ml_dtypes.float8_e4m3fn, torch.float8_e4m3fn), ("e5m2", ml_dtypes.float8_e5m2, torch.float8_e5m2),
         ("e2m1", ml_dtypes.float4_e2m1fn, None), ("int8", None, None), ("int4", None, None)]


def best_of(fn, repeats=7, warmup=5):
    # several warm-up calls: the first few large allocations of a process page-fault far more than later ones
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    x = (np.random.default_rng(0).standard_normal(N) * 50).astype(np.float32)
    xt = torch.from_numpy(x)
    print(f"{N:,} float32 values, numba threads {__import__('numba').get_num_threads()}, torch threads {torch.get_num_threads()}\n")
    print("| format | op | ours ms | ml_dtypes ms | torch ms | ml_dtypes/ours | torch/ours |")
    print("|---|---|---|---|---|---|---|")
    for name, md_dtype, torch_dtype in CASES:
        codes = em.encode(x, name)
        ours = best_of(lambda: em.encode(x, name))
        md = best_of(lambda: x.astype(md_dtype), 3) if md_dtype else None
        if name.startswith("int"):  # the oracle for integer quantization: float64 numpy round and clip
            fmt = em.get_format(name)
            md = best_of(lambda: np.clip(np.round(x), fmt.qmin, fmt.qmax).astype(np.int8), 3)
        tt = best_of(lambda: xt.to(torch_dtype)) if torch_dtype else None
        row = lambda a: f"{a * 1e3:.1f}" if a else "-"
        ratio = lambda a: f"{a / ours:.1f}x" if a else "-"
        print(f"| {name} | encode | {row(ours)} | {row(md)} | {row(tt)} | {ratio(md)} | {ratio(tt)} |")
        dec = best_of(lambda: em.decode(codes, name))
        md_dec = best_of(lambda: codes.view(md_dtype).astype(np.float32), 3) if md_dtype else None
        tc = torch.from_numpy(codes).view(torch_dtype) if torch_dtype else None
        t_dec = best_of(lambda: tc.float()) if torch_dtype else None
        ours_dec = dec
        print(f"| {name} | decode | {row(ours_dec)} | {row(md_dec)} | {row(t_dec)} | {(f'{md_dec / ours_dec:.1f}x' if md_dec else '-')} | {(f'{t_dec / ours_dec:.1f}x' if t_dec else '-')} |")


if __name__ == "__main__":
    main()
