"""Wall-clock timing shared by the benchmark, the evaluation and the int8 report, and the thread count it runs with."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import statistics
import time
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

__all__ = ["median_seconds", "keep_freed_memory", "benchmark", "torch_threads"]

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h> mallopt parameters
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the OS.

    By default glibc serves large blocks (a CNN's activations are tens of MB) with a fresh
    ``mmap`` and unmaps them on free, and trims the heap top, so every forward/backward pass
    page-faults and zero-fills its activations again, a cost that varies with the allocation
    history. After this call (``mallopt(M_MMAP_MAX, 0)``, ``mallopt(M_TRIM_THRESHOLD, 2**31 - 1)``)
    large blocks come from the heap and freed ones are reused; the process keeps its peak
    memory. This is what jemalloc/tcmalloc, which PyTorch's CPU performance guide recommends,
    do anyway. docs/benchmark.md gives the measured effect.

    Affects the whole process, from the call on. Returns False (and changes nothing) where
    the C library has no ``mallopt`` (not glibc).
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the duration of a ``with`` block; the previous count after it."""
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def median_seconds(fns: Sequence[Callable[[], Any]], repeats: int, warmup: int = 1, inner: int = 1) -> list[float]:
    """Median seconds per call of each function, timed interleaved (f0, f1, f0, f1, ...).

    Each function is first called ``warmup`` times; then, ``repeats`` times over, each
    function in turn is timed over ``inner`` consecutive calls. Interleaving spreads the
    machine's background noise evenly over the functions being compared.
    """
    if repeats < 1 or inner < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1, inner >= 1, warmup >= 0; got {repeats}, {inner}, {warmup}")
    for fn in fns:
        for _ in range(warmup):
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[i].append((time.perf_counter() - start) / inner)
    return [statistics.median(s) for s in samples]


@torch.inference_mode()
def benchmark(model: nn.Module, res: int, batch: int, warmup: int = 3, repeats: int = 10,
              in_chans: int = 3) -> dict[str, float]:
    """Median wall time of ``model`` (eval mode) on a zeros batch after warm-up: ms per batch and images/s."""
    model.eval()
    x = torch.zeros(batch, in_chans, res, res)
    med = median_seconds([lambda: model(x)], max(repeats, 1), warmup=max(warmup, 0))[0]
    return {"batch": batch, "ms": 1000.0 * med, "img_per_s": batch / med}
