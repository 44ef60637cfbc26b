"""``build``: lower a PrimFunc, generate source, compile it, wrap it in a callable Module.

Targets:

* "python" — the generated source run as plain Python: slow, but you can read it, put a
  breakpoint in it and step through (the source is registered with ``linecache``).
* "cpu" — the same source compiled by ``numba.njit(fastmath=True, parallel=...)``;
  ``prange`` loops run on threads.
* "cuda" — a ``numba.cuda.jit`` kernel per GPU loop nest (``mlc.codegen.cudasrc``); on a
  machine without a GPU it runs in Numba's CUDA simulator.

Compiled code is cached by (target, source text): two schedules that generate the same
program share one compilation, which matters when a tuner meets the same candidate twice.
The cache keeps the ``CACHE_SIZE`` most recently used programs (least recently used out
first): a long tuning run compiles thousands of candidates, and keeping every one alive
would hold on to all their machine code.
"""

from __future__ import annotations

import hashlib
import linecache
from collections import OrderedDict

import numpy as np

from ..tir.functor import blocks_in
from ..tir.region import block_writes
from ..tir.stmt import PrimFunc
from .lower import lower

TARGETS = ("python", "cpu", "cuda")
CACHE_SIZE = 256  # compiled programs kept; enough for every candidate a search revisits
# (target, source) -> callable, in order of last use: the least recently used comes first.
_CACHE: OrderedDict = OrderedDict()


def _exec_source(source: str, name: str, target: str) -> dict:
    """Run generated source as a module; register it so tracebacks and pdb show it."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    filename = f"<mlc-{target}-{name}-{digest}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    ns: dict = {"__name__": f"mlc_generated_{digest}"}
    exec(compile(source, filename, "exec"), ns)  # noqa: S102 - our own generated code
    return ns


def compile_source(source: str, name: str, target: str, parallel: bool = False):
    """The callable for ``source`` on ``target`` (an LRU cache by target and source text)."""
    key = (target, source)
    if key in _CACHE:
        _CACHE.move_to_end(key)  # just used: the last to be dropped
        return _CACHE[key]
    ns = _exec_source(source, name, target)
    fn = ns[name]
    if target == "cpu":
        import numba

        fn = numba.njit(cache=False, fastmath=True, parallel=parallel,
                        error_model="numpy")(fn)
    _CACHE[key] = fn
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return fn


class Module:
    """A built PrimFunc: call it with one array per parameter, outputs written in place.

    Arguments may be numpy arrays or ``mlc.ndarray`` NDArrays (copied to numpy, and written
    back for the parameters the function writes). ``.source`` is the generated code,
    ``.func`` the lowered PrimFunc, ``time_evaluator`` a timer.
    """

    def __init__(self, func: PrimFunc, target: str, source: str, entry):
        self.func, self.target, self.source, self.entry = func, target, source, entry
        written = {id(b) for blk in blocks_in(func.body) for b in block_writes(blk)}
        self.outputs = [p for p in func.params if id(p) in written]

    def _prepare(self, args) -> tuple[list, list]:
        params = self.func.params
        if len(args) != len(params):
            raise TypeError(f"{self.func.name} takes {len(params)} arrays "
                            f"({', '.join(p.name for p in params)}), got {len(args)}")
        arrays, write_back = [], []
        out_ids = {id(p) for p in self.outputs}
        for p, a in zip(params, args, strict=True):
            if isinstance(a, np.ndarray):
                arr = a
            elif hasattr(a, "numpy") and hasattr(a, "shape"):
                arr = a.numpy()  # an NDArray: work on a numpy copy, write back below
                if id(p) in out_ids:
                    write_back.append((a, arr))
            else:
                raise TypeError(f"argument {p.name}: expected a numpy array or NDArray, got "
                                f"{type(a).__name__}")
            if tuple(arr.shape) != p.shape:
                raise ValueError(f"argument {p.name}: expected shape {p.shape}, got "
                                 f"{tuple(arr.shape)}")
            if str(arr.dtype) != p.dtype:
                raise TypeError(f"argument {p.name}: expected dtype {p.dtype}, got {arr.dtype}")
            if id(p) in out_ids and not arr.flags.writeable:
                raise ValueError(f"argument {p.name} is written by {self.func.name} but the "
                                 "array is read-only")
            arrays.append(arr)
        return arrays, write_back

    def __call__(self, *args) -> None:
        arrays, write_back = self._prepare(args)
        self.entry(*arrays)
        for dst, arr in write_back:
            dst[...] = arr

    def time_evaluator(self, number: int | None = None, repeat: int = 5,
                       min_time: float = 0.2):
        """A function ``f(*args) -> Timing``: seconds per call, the median of ``repeat``
        rounds of :func:`mlc.perf.timeit` (after a warm-up call that also pays for
        compilation; ``number`` and ``min_time`` as there)."""
        from ..perf import timeit

        def f(*args):
            arrays, _ = self._prepare(args)  # checked and converted once, outside the clock
            return timeit(lambda: self.entry(*arrays), repeat=repeat, number=number,
                          min_time=min_time)

        return f

    def __repr__(self):
        return f"Module({self.func.name}, target={self.target!r})"


def build(func, target: str = "cpu") -> Module:
    """Compile a PrimFunc (or a Schedule's current PrimFunc) for ``target``."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")
    func = getattr(func, "func", func)
    if not isinstance(func, PrimFunc):
        raise TypeError(f"build takes a PrimFunc or a Schedule, got {type(func).__name__}")
    low = lower(func, target)
    if target == "cuda":
        from .cudasrc import CudaModule, cuda_source

        source, kernels = cuda_source(low)
        entry = compile_source(source, low.name, "cuda")
        return CudaModule(low, target, source, entry, kernels)
    from .pysrc import python_source

    source, parallel = python_source(low, target)
    return Module(low, target, source, compile_source(source, low.name, target, parallel))
