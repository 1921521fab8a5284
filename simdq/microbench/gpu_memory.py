"""How much GPU memory a measurement runs with: cuDNN picks an algorithm by the workspace it can allocate (an FFT
convolution's is several GB), so a time measured on an idle GPU holds only where as much memory is free."""

from __future__ import annotations

import argparse

GB = 1e9
# allocated in these chunks, largest first, until the free memory is within the last chunk of the target
CHUNKS = (GB, 64e6, 4e6)


def leave_free(target_bytes: float, taken: list, device) -> int:
    """Allocate into `taken` (release it to give the memory back) until about `target_bytes` are left free on
    the CUDA `device`; returns the bytes free then, as the driver counts them."""
    import torch

    torch.cuda.empty_cache()  # what earlier calls cached would otherwise count as taken
    for chunk in CHUNKS:
        while torch.cuda.mem_get_info(device)[0] > target_bytes + chunk:
            taken.append(torch.empty(int(chunk), dtype=torch.uint8, device=device))
    return torch.cuda.mem_get_info(device)[0]


def gb_list(text: str) -> tuple:
    """A command-line list of GB to leave free ("16,8"), for argparse."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or any(not 0 <= v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated GB (0 or more) expected, e.g. 16,8")
    return values
