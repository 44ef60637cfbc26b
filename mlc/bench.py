"""Timers, GFLOP/s and tables for measuring kernels honestly.

Timings on a shared laptop are noisy: we take the median of several repeats after a
warm-up call (which also pays for Numba's compilation), and we report speed as a ratio
to numpy measured in the same run, never as an absolute promise.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def timeit(fn: Callable[[], object], repeat: int = 5, number: int | None = None,
           warmup: int = 1, min_time: float = 0.05) -> float:
    """Median seconds per call of ``fn()``.

    ``number`` calls are timed together in each of ``repeat`` rounds; when ``number`` is
    None it is chosen so that one round lasts at least ``min_time`` seconds, which keeps
    the clock's resolution out of the result for fast kernels.
    """
    for _ in range(max(warmup, 0)):
        fn()
    if number is None:
        number = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            if time.perf_counter() - t0 >= min_time or number >= 1 << 20:
                break
            number *= 2
    rounds = []
    for _ in range(max(repeat, 1)):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        rounds.append((time.perf_counter() - t0) / number)
    return statistics.median(rounds)


def gflops(flops: float, seconds: float) -> float:
    """Billions of floating-point operations per second."""
    return flops / seconds / 1e9 if seconds > 0 else float("inf")


def matmul_flops(n: int, k: int, m: int) -> int:
    """A multiply and an add for each of the n*m*k products."""
    return 2 * n * k * m


def format_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """Rows as a plain-text table with aligned columns (floats to 3 significant digits)."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1e4 else f"{v:,.0f}"
        return str(v)

    text = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) if text else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in text]
    return "\n".join(out)


def print_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> None:
    print(format_table(rows, headers))
