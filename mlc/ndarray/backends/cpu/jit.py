"""One loop nest, compiled twice: serially for small arrays, with threads for large ones.

Numba's ``parallel=True`` turns ``prange`` loops into work shared by a thread pool. That
pays for large arrays, but waking the pool costs microseconds (milliseconds on a busy
machine), far more than adding two small vectors. So each kernel is compiled twice from
the same source: without ``parallel`` ``prange`` is just ``range``.

Both builds are cached on disk (``cache=True``) so later runs skip compilation. Numba's
cache keys a function by its qualified name, not by its compile options, so the parallel
build is compiled from a renamed twin of the function to keep the two cache entries apart.

Every kernel uses ``error_model="numpy"``: ``x / 0`` gives inf as in numpy instead of
raising (and the division check would also stop LLVM from vectorising the loop).
"""

from __future__ import annotations

import os
import types

# Numba's default thread pool is OpenMP (libgomp). Between parallel regions its workers
# spin briefly, then sleep; on a busy machine a sleeping worker can take a whole scheduler
# tick (milliseconds) to wake, which made a 1 ms parallel add take 8 ms on a shared
# 2-core box. A longer spin (a few ms of polling after each region) avoids that. libgomp
# reads this when it first starts, i.e. at the first parallel kernel; set it yourself to
# override.
os.environ.setdefault("GOMP_SPINCOUNT", "3000000")

import numba  # noqa: E402
from numba import njit  # noqa: E402

#: Work (in "element units") from which the parallel build runs. Callers weigh the work:
#: an add counts 1 per element, an exp 4, a transcendental libm call 8, a matmul one unit
#: per 2 multiply-adds. A parallel region costs little on an idle machine, but when
#: another process holds a core it waits for a scheduler slice (we measured 8 ms on a
#: shared 2-core box), so only work that takes milliseconds serially is shared out.
PARALLEL_THRESHOLD = 1 << 23


class Kernel:
    """A serial and a parallel build of one Python function; ``pick(n)`` chooses."""

    def __init__(self, fn, **options):
        options = {"cache": True, "error_model": "numpy", **options}
        self.__doc__ = fn.__doc__
        self.serial = njit(**options)(fn)
        twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel",
                                  fn.__defaults__, fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "_parallel"
        self.parallel = njit(parallel=True, **options)(twin)

    def pick(self, n: int):
        """The build to run for ``n`` units of work (see ``PARALLEL_THRESHOLD``)."""
        if n >= PARALLEL_THRESHOLD and numba.get_num_threads() > 1:
            return self.parallel
        return self.serial


def kernel(**options):
    """Decorator: ``@kernel(fastmath={"contract"})`` makes a :class:`Kernel`."""

    def wrap(fn):
        return Kernel(fn, **options)

    return wrap
