"""Pinning threads for a speed comparison: Numba's pool and numpy's OpenBLAS.

A comparison between two engines is fair only when both get the same threads: an
unpinned BLAS on a busy two-core machine can lose to a serial loop because its pool
waits for a core, and a Numba kernel's ``prange`` may take both cores while numpy takes
one. Every speed comparison in the course runs inside :func:`limit_threads`::

    with perf.limit_threads(1):
        t_a, t_b = perf.timeit(a), perf.timeit(b)
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np

__all__ = ["limit_threads"]


def _openblas_setters():
    """``(get, set)`` of the OpenBLAS that numpy's wheel bundles, or None (MKL, a conda
    build, another BLAS: then numpy keeps its threads). Best effort, through ctypes."""
    import ctypes
    import glob
    import os

    libs = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*"))
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in ("64_", "_64_", ""):
            get = getattr(lib, f"scipy_openblas_get_num_threads{suffix}", None)
            put = getattr(lib, f"scipy_openblas_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                return get, put
    return None


@contextlib.contextmanager
def limit_threads(threads: int | None):
    """Run Numba's parallel kernels, and numpy's BLAS where it can be reached, on
    ``threads`` threads inside the block (None: leave them as they are).

    With one thread every Numba kernel, ``mlc.ndarray``'s dense ones included, takes its
    serial build, so a comparison measures the kernels and not the thread pools, whose
    wake-ups cost milliseconds on a busy shared machine. numpy's BLAS is pinned through
    the OpenBLAS its wheel ships; with another BLAS it keeps its own threads (set
    ``OPENBLAS_NUM_THREADS`` / ``MKL_NUM_THREADS`` before starting Python).
    """
    if threads is None:
        yield
        return
    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    blas = _openblas_setters()
    old_blas = blas[0]() if blas else None
    if blas:
        blas[1](threads)
    try:
        yield
    finally:
        numba.set_num_threads(old)
        if blas:
            blas[1](old_blas)
