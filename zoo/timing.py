"""Wall-clock timing shared by the benchmark, the evaluation report and the int8 report."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

__all__ = ["median_seconds"]


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
