"""Counting work: floating-point operations, and the rate at which a kernel does them.

A speed in GFLOP/s is the work the *algorithm* needs divided by the time, whatever the
kernel really executes: a matmul is charged ``2 n k m`` flops however it is scheduled,
so two kernels for the same problem compare by their rates as by their times.
"""

from __future__ import annotations

__all__ = ["gflops", "matmul_flops"]


def gflops(flops: float, seconds: float) -> float:
    """Billions of floating-point operations per second."""
    return flops / seconds / 1e9 if seconds > 0 else float("inf")


def matmul_flops(n: int, k: int, m: int) -> int:
    """A multiply and an add for each of the n*m*k products."""
    return 2 * n * k * m
