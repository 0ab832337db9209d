"""Timing shared by the benchmark scripts (run from any folder: `python benchmarks/NAME.py`)."""

from __future__ import annotations

import statistics
import time


def timed(fn, repeats: int, warmup: int = 1) -> float:
    """Median milliseconds of `repeats` calls of fn after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000.0 * (time.perf_counter() - start))
    return statistics.median(times)
