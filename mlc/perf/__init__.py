"""Measuring performance: the one timer, work and rates, the roofline, memory traffic.

::

    from mlc import perf
    t = perf.timeit(lambda: a @ b)                 # seconds per call: median of 5 rounds
    t.min, t.times, t.number                       # the best round, all rounds, calls per round
    perf.gflops(perf.matmul_flops(n, k, m), t)     # the rate
    with perf.stopwatch() as sw: run_once()        # one-off elapsed time, in sw.seconds
    perf.print_table(rows, ["kernel", "ms", "GFLOP/s"])

One idea per module:

- ``timing.py``    :func:`timeit` (on the standard library's ``timeit.Timer``: warm-up,
  autorange, repeats, median and min) and :func:`stopwatch`. Every time measured in the
  course, by benchmarks, checks, the tuner and the notebooks, goes through them;
- ``flops.py``     flop counts and GFLOP/s;
- ``table.py``     aligned plain-text tables;
- ``threads.py``   :func:`limit_threads`: pin Numba's and OpenBLAS's threads for a fair comparison;
- ``roofline.py``  the machine's two ceilings, measured (peak GFLOP/s, memory bandwidth),
  and the roofline plot;
- ``memcount.py``  exact counts of a CUDA kernel's global and shared memory traffic in
  Numba's simulator (``traffic.py``: the counts it returns).
"""

from .flops import gflops, matmul_flops
from .memcount import MemCountError, count_memory
from .roofline import measure_bandwidth, measure_peak_gflops, roofline_plot
from .table import format_table, print_table
from .threads import limit_threads
from .timing import Stopwatch, Timing, stopwatch, timeit
from .traffic import Access, ArrayTraffic, MemoryCounts

__all__ = [
    "timeit", "Timing", "stopwatch", "Stopwatch",
    "gflops", "matmul_flops",
    "format_table", "print_table", "limit_threads",
    "measure_bandwidth", "measure_peak_gflops", "roofline_plot",
    "count_memory", "MemoryCounts", "ArrayTraffic", "Access", "MemCountError",
]
