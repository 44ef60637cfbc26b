"""Count the memory traffic of a CUDA kernel by running it in Numba's simulator.

The simulator cannot teach speed: it runs every CUDA thread as a Python thread, so a
tiled matmul is no faster there than a naive one. What it *can* show exactly is the
quantity that decides speed on a real GPU: how many elements each thread loads from
and stores to global memory (the kernel's array arguments, in DRAM) and to shared memory
(the arrays made by ``cuda.shared.array``, on chip). :func:`count_memory` launches a
``@cuda.jit`` kernel once in the simulator with every array wrapped so that each element
read or written is counted::

    counts = count_memory(add_kernel, blocks, threads, x, y, out)
    counts.global_reads, counts.global_writes      # 2n and n for a vector add
    print(counts)                                  # a table per array

What is counted, and what is not:

- an element read ``a[i]`` / ``a[i, j]`` is one read, ``a[i] = v`` one write,
  ``a[i] += v`` one read and one write. Taking a view (``row = a[i]`` of a 2-D ``a``) moves
  no data: only the later element accesses through the view count.
- atomics (``cuda.atomic.add(a, i, v)``) count one read and one write, and as one atomic.
- local arrays (``cuda.local.array``) and scalars live in registers (or thread-private
  local memory) and are not counted.
- the host-to-device copies that the simulator (and a real launch with numpy
  arguments) makes are not kernel traffic and are not counted.

With ``trace=True`` every access is also recorded with its block, thread and byte
address, which :meth:`MemoryCounts.transactions` groups per warp to show coalescing:
32 threads reading 32 neighbouring floats touch one 128-byte segment, 32 threads reading
down a column touch 32 segments.

Only the simulator can count this way. On a real GPU (``NUMBA_ENABLE_CUDASIM`` unset and
a driver present) the kernel runs as machine code on the device, where Python cannot see
its loads; :func:`count_memory` then raises :class:`MemCountError` — use a profiler
(Nsight Compute's ``dram__bytes_read.sum``) there, or run this module in a separate
process with ``NUMBA_ENABLE_CUDASIM=1``.

This module does the counting; the result types (:class:`MemoryCounts` and what it holds)
live in ``traffic.py``.
"""

from __future__ import annotations

import inspect
import linecache
import re
import sys
import threading
from contextlib import contextmanager

import numpy as np

from .traffic import Access, ArrayTraffic, MemoryCounts

__all__ = ["count_memory", "MemoryCounts", "ArrayTraffic", "Access", "MemCountError"]

_LAUNCH_LOCK = threading.Lock()  # the simulator runs one kernel at a time; so do we
_SWITCH_INTERVAL = 1e-4  # seconds; see _instrumented_simulator


class MemCountError(RuntimeError):
    """Memory traffic cannot be counted here (not the simulator, or not a kernel)."""


class _Recorder:
    """Thread-safe counters for one launch; the simulator's threads all call into it."""

    def __init__(self, trace: bool):
        self.lock = threading.Lock()
        self.arrays: dict[str, ArrayTraffic] = {}
        self.accesses: list | None = [] if trace else None

    def register(self, name: str, space: str, ary: np.ndarray) -> ArrayTraffic:
        base, k = name, 2
        while name in self.arrays:  # e.g. a shared array named like an argument
            name, k = f"{base}#{k}", k + 1
        slot = ArrayTraffic(name, space, tuple(ary.shape), ary.dtype)
        self.arrays[name] = slot
        return slot

    def count(self, slot: ArrayTraffic, kind: str, n: int, offset: int = 0) -> None:
        with self.lock:
            if kind == "r":
                slot.reads += n
            else:
                slot.writes += n
            if self.accesses is not None and n:
                t = threading.current_thread()
                seqs = t.__dict__.setdefault("_mlc_seq", {})
                key = (slot.name, kind)
                seq = seqs.get(key, 0)
                seqs[key] = seq + 1
                self.accesses.append(Access(slot.name, kind, tuple(getattr(t, "blockIdx", ())),
                                            getattr(t, "thread_id", 0), seq, offset))


class CountingArray:
    """A numpy array seen from inside a simulated kernel, counting each element access.

    Supports what kernels do with arrays: indexing with ints, tuples and slices (a slice
    gives a counting view of the same array), ``shape``, ``size``, ``ndim``, ``dtype``,
    ``strides`` and ``len``. Anything else is refused, since it would move data without
    being counted.
    """

    __slots__ = ("_ary", "_slot", "_rec", "_origin")

    def __init__(self, ary: np.ndarray, slot: ArrayTraffic, rec: _Recorder, origin: int):
        self._ary, self._slot, self._rec, self._origin = ary, slot, rec, origin

    # metadata: free, no memory traffic
    shape = property(lambda self: self._ary.shape)
    size = property(lambda self: self._ary.size)
    ndim = property(lambda self: self._ary.ndim)
    dtype = property(lambda self: self._ary.dtype)
    strides = property(lambda self: self._ary.strides)
    itemsize = property(lambda self: self._ary.itemsize)
    nbytes = property(lambda self: self._ary.nbytes)

    def __len__(self) -> int:
        return len(self._ary)

    def _offset(self, view: np.ndarray) -> int:
        return view.__array_interface__["data"][0] - self._origin

    def _element_offset(self, idx) -> int:
        idx = idx if isinstance(idx, tuple) else (idx,)
        off = self._offset(self._ary)
        # an index that reads one element names every axis, so the lengths agree
        for i, n, s in zip(idx, self._ary.shape, self._ary.strides, strict=False):
            i = int(i)
            off += (i + n if i < 0 else i) * s
        return off

    def __getitem__(self, idx):
        res = self._ary[idx]
        if isinstance(res, np.ndarray):  # a view: no data moves until it is indexed
            return CountingArray(res, self._slot, self._rec, self._origin)
        tracing = self._rec.accesses is not None
        self._rec.count(self._slot, "r", 1, self._element_offset(idx) if tracing else 0)
        return res

    def __setitem__(self, idx, value) -> None:
        if isinstance(value, CountingArray):  # a[...] = b[...] reads b's elements
            value._rec.count(value._slot, "r", value._ary.size)
            value = value._ary
        target = self._ary[idx]
        if isinstance(target, np.ndarray):
            n, off = target.size, self._offset(target)
        else:
            n = 1
            off = self._element_offset(idx) if self._rec.accesses is not None else 0
        self._ary[idx] = value
        self._rec.count(self._slot, "w", n, off)

    def __iter__(self):
        for i in range(len(self._ary)):
            yield self[i]

    def __getattr__(self, name):
        raise AttributeError(
            f"count_memory: kernels may use an array's shape, size, ndim, dtype and "
            f"elements; .{name} would move data without being counted")

    def __repr__(self) -> str:
        return f"CountingArray({self._slot.name}, shape={self._ary.shape}, {self._ary.dtype})"


def _wrap(ary: np.ndarray, name: str, space: str, rec: _Recorder) -> CountingArray:
    slot = rec.register(name, space, ary)
    return CountingArray(ary, slot, rec, ary.__array_interface__["data"][0])


_ASSIGNED = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?::[^=]*)?=")


def _shared_name(frame) -> str:
    """The variable a ``cuda.shared.array(...)`` call is assigned to, from its source line."""
    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno, frame.f_globals)
    m = _ASSIGNED.match(line)
    return m.group(1) if m else f"shared@line{frame.f_lineno}"


@contextmanager
def _instrumented_simulator(rec: _Recorder):
    """Patch the simulator's shared-array factory and atomics for the launch's duration."""
    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    shared_cls, module_cls = kernelapi.FakeCUDAShared, kernelapi.FakeCUDAModule
    orig_array, orig_atomic = shared_cls.array, module_cls.atomic
    made: dict[tuple, CountingArray] = {}

    def shared_array(self, shape, dtype):
        # The simulator identifies an allocation by the kernel's source line (one array
        # per line, shared by every thread of the block); we look one frame further
        # up than it does, since this wrapper sits in between.
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)
        if key not in made:
            with rec.lock:
                if key not in made:
                    if isinstance(dtype, types.Type):
                        dtype = numpy_support.as_dtype(dtype)
                    if shape == 0:
                        raise MemCountError("count_memory does not support dynamic shared "
                                            "memory (cuda.shared.array(0, ...)); give the "
                                            "shared array a static shape")
                    ary = np.empty(shape, dtype)
                    made[key] = _wrap(ary, _shared_name(caller), "shared", rec)
        return made[key]

    class CountingAtomics:
        """cuda.atomic.*: one read and one write per call on a counted array."""

        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, op):
            fn = getattr(self._inner, op)

            def atomic(array, *rest):
                if isinstance(array, CountingArray):
                    with rec.lock:
                        array._slot.atomics += 1
                    rec.count(array._slot, "r", 1)
                    rec.count(array._slot, "w", 1)
                    array = array._ary
                return fn(array, *rest)

            return atomic

    shared_cls.array = shared_array
    module_cls.atomic = property(lambda self: CountingAtomics(self._atomic))
    # At a barrier the simulator's block manager busy-polls its threads while holding the
    # GIL; a shorter switch interval (default 5 ms) lets the waiting threads run sooner,
    # which makes kernels with many syncthreads() several times faster to simulate.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, _SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        shared_cls.array = orig_array
        module_cls.atomic = orig_atomic


def _as_numpy(arg):
    """The host view of an array argument (numpy or a simulated device array), else None."""
    if isinstance(arg, np.ndarray) and arg.ndim > 0:
        return arg
    ary = getattr(arg, "_ary", None)  # the simulator's FakeCUDAArray wraps a numpy array
    if getattr(arg, "__cuda_ndarray__", False) and isinstance(ary, np.ndarray):
        return ary
    return None


def count_memory(kernel, griddim, blockdim, *args, trace: bool = False) -> MemoryCounts:
    """Launch ``kernel[griddim, blockdim](*args)`` in the simulator and count its traffic.

    ``args`` are what the kernel takes: numpy arrays or ``cuda.to_device`` arrays (both
    are updated in place, as a launch would) and scalars. Global arrays are named after
    the kernel's parameters, shared arrays after the variable they are assigned to.
    With ``trace=True`` every access is kept in ``.accesses`` (for
    :meth:`MemoryCounts.transactions`; keep launches tiny).

    Raises :class:`MemCountError` when CUDA is not simulated: on a real GPU the loads
    happen in machine code that Python cannot observe.
    """
    import numba

    if not numba.config.ENABLE_CUDASIM:
        raise MemCountError(
            "count_memory needs Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1 before numba "
            "is first imported): on a real GPU the kernel's loads and stores run as machine "
            "code that Python cannot count. Use a profiler there (Nsight Compute), or run "
            "the counting in a process started with NUMBA_ENABLE_CUDASIM=1.")
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    if not isinstance(kernel, FakeCUDAKernel):
        raise MemCountError(f"count_memory expects a @cuda.jit kernel, got "
                            f"{type(kernel).__name__}")
    if kernel._device:
        raise MemCountError("count_memory launches kernels; "
                            f"{kernel.__name__} is a device function (device=True)")
    try:
        params = list(inspect.signature(kernel.py_func).parameters)
    except (TypeError, ValueError):
        params = []
    if len(args) != len(params):
        raise TypeError(f"{kernel.__name__} takes {len(params)} arguments "
                        f"({', '.join(params)}), got {len(args)}")
    rec = _Recorder(trace)
    wrapped = []
    for name, arg in zip(params, args, strict=True):
        ary = _as_numpy(arg)
        wrapped.append(arg if ary is None else _wrap(ary, name, "global", rec))
    with _LAUNCH_LOCK, _instrumented_simulator(rec):
        kernel[griddim, blockdim](*wrapped)
    gd = tuple(griddim) if isinstance(griddim, tuple) else (griddim,)
    bd = tuple(blockdim) if isinstance(blockdim, tuple) else (blockdim,)
    if rec.accesses is not None:
        rec.accesses.sort(key=lambda a: (a.block, a.thread, a.array, a.seq))
    return MemoryCounts(gd, bd, rec.arrays, rec.accesses)
