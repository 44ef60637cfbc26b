"""The roofline: what this machine can do, measured, and where a kernel sits below it.

A kernel that performs F flops while moving Q bytes between memory and the cores has
arithmetic intensity I = F / Q (flop per byte). Its speed is bounded by both the cores,
P_peak, and the memory, I * bandwidth: ``attainable = min(P_peak, I * BW)``. This module
measures the two ceilings on the machine at hand (:func:`measure_peak_gflops`,
:func:`measure_bandwidth`) and draws the roof with the kernels under it
(:func:`roofline_plot`).
"""

from __future__ import annotations

from collections.abc import Sequence

from .flops import gflops, matmul_flops
from .timing import timeit

__all__ = ["measure_bandwidth", "measure_peak_gflops", "roofline_plot"]

_STREAM_KERNELS = {}


def _stream_kernels():
    """Numba STREAM kernels, compiled (or loaded from cache) on first use."""
    if not _STREAM_KERNELS:
        import numba

        @numba.njit(parallel=True, cache=True)
        def triad(a, b, c, s):  # a = b + s * c: 2 reads and 1 write per element
            for i in numba.prange(a.size):
                a[i] = b[i] + s * c[i]

        @numba.njit(parallel=True, cache=True)
        def copy(a, b):  # a = b: 1 read and 1 write per element
            for i in numba.prange(a.size):
                a[i] = b[i]

        _STREAM_KERNELS.update(triad=triad, copy=copy)
    return _STREAM_KERNELS


def measure_bandwidth(kernel: str = "triad", mbytes: float = 64.0, repeat: int = 5,
                      backend: str = "numba") -> float:
    """Sustained memory bandwidth in GB/s, measured STREAM-style.

    ``kernel`` is ``"triad"`` (``a = b + s*c``, 3 arrays of traffic per element) or
    ``"copy"`` (``a = b``, 2 arrays). Each array holds ``mbytes`` MB of float64, far more
    than the caches hold, so every element really comes from (and goes to) DRAM. The
    ``"numba"`` backend runs a ``prange`` loop on every core, as a parallel kernel would;
    ``"numpy"`` uses ``np.copyto`` (copy only, one core). As in STREAM, the bytes counted
    are those the kernel asks for; the hidden read of a written line (write-allocate) is
    not counted, so the true traffic is somewhat higher. The best of ``repeat`` runs is
    reported: bandwidth is a ceiling, and noise only ever lowers it.
    """
    import numpy as np

    if kernel not in ("triad", "copy"):
        raise ValueError(f"kernel must be 'triad' or 'copy', got {kernel!r}")
    if backend not in ("numba", "numpy"):
        raise ValueError(f"backend must be 'numba' or 'numpy', got {backend!r}")
    if backend == "numpy" and kernel != "copy":
        raise ValueError("the numpy backend measures only kernel='copy' (a numpy triad "
                         "makes temporaries, which would hide the true traffic)")
    if mbytes <= 0:
        raise ValueError(f"mbytes must be positive, got {mbytes}")
    n = max(int(mbytes * 1e6) // 8, 1)
    a, b, c = np.zeros(n), np.ones(n), np.full(n, 2.0)
    if backend == "numpy":
        def run():
            np.copyto(a, b)
    elif kernel == "triad":
        triad = _stream_kernels()["triad"]

        def run():
            triad(a, b, c, 3.0)
    else:
        copy = _stream_kernels()["copy"]

        def run():
            copy(a, b)
    arrays = 3 if kernel == "triad" else 2
    # warmup=1 compiles the kernel and faults the pages in; one call per round, since a
    # call over 64 MB is long enough for the clock; the best round is the ceiling.
    best = timeit(run, repeat=max(repeat, 1), number=1, warmup=1).min
    return arrays * n * 8 / best / 1e9


def measure_peak_gflops(n: int = 512, repeat: int = 10, dtype: str = "float32") -> float:
    """The machine's attainable compute peak in GFLOP/s: a float32 BLAS matmul via numpy.

    Why a BLAS matmul and not the data sheet or an FMA loop? The theoretical peak
    (cores x GHz x SIMD lanes x 2 for FMA) assumes a frequency and vector width a laptop
    rarely sustains, and a Numba FMA loop measures what *Numba's* code generation reaches.
    A tuned BLAS gemm is the fastest real kernel on the machine, compute-bound already
    at ``n = 512`` (intensity ~ n/6 flop per byte for float32): the honest "best anyone
    gets here" ceiling for the roofline. The best of ``repeat`` runs is reported: short
    runs (a few ms at ``n = 512``), many of them, so that at least one runs undisturbed
    on a machine that is busy with other work.
    """
    import numpy as np

    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32).astype(dtype)
    b = rng.random((n, n), dtype=np.float32).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    # warm up: threads started, pages touched; then one call per round, the best kept
    best = timeit(lambda: np.matmul(a, b, out=out), repeat=max(repeat, 1), number=1,
                  warmup=1).min
    return gflops(matmul_flops(n, n, n), best)


def roofline_plot(ax, peak_gflops: float, bandwidth_gbs: float,
                  points: Sequence[tuple] = (), intensity_range: tuple | None = None):
    """Draw the roofline ``min(peak, I * bandwidth)`` on log-log ``ax``; place each kernel.

    ``points`` holds ``(name, intensity in flop/byte, measured GFLOP/s)`` tuples. The
    ridge point ``peak / bandwidth`` separates memory-bound kernels (left: moving data is
    the limit) from compute-bound ones (right). Returns ``ax``.
    """
    import math

    import numpy as np

    if peak_gflops <= 0 or bandwidth_gbs <= 0:
        raise ValueError(f"peak ({peak_gflops}) and bandwidth ({bandwidth_gbs}) must be "
                         "positive")
    points = list(points)
    for p in points:
        if len(p) != 3 or p[1] <= 0 or p[2] <= 0:
            raise ValueError(f"each point is (name, intensity > 0, gflops > 0), got {p!r}")
    ridge = peak_gflops / bandwidth_gbs
    if intensity_range is None:
        xs = [ridge] + [p[1] for p in points]
        intensity_range = (min(xs) / 8, max(xs) * 8)
    lo, hi = intensity_range
    grid = np.geomspace(lo, hi, 256)
    ax.loglog(grid, np.minimum(peak_gflops, grid * bandwidth_gbs), color="black", lw=2)
    ax.axvline(ridge, color="gray", ls=":", lw=1)
    ax.annotate(f"peak {peak_gflops:.3g} GFLOP/s", (ridge, peak_gflops), xytext=(4, 4),
                textcoords="offset points", fontsize=8)
    ax.annotate(f"ridge {ridge:.3g} flop/B", (ridge, peak_gflops), xytext=(4, -12),
                textcoords="offset points", fontsize=8, color="gray")
    x_bw = math.sqrt(lo * ridge)  # halfway up the slanted roof (in log space)
    ax.annotate(f"{bandwidth_gbs:.3g} GB/s", (x_bw, x_bw * bandwidth_gbs), xytext=(-4, 6),
                textcoords="offset points", ha="right", fontsize=8)
    # Kernels of one operator share an intensity, so their points stack vertically:
    # a legend names them without labels piling up on each other.
    for name, intensity, perf in points:
        ax.plot([intensity], [perf], "o", label=name)
    if points:
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("arithmetic intensity (flop / byte)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("roofline")
    return ax
