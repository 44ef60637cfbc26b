"""Launching a student's CUDA kernel and judging what the launch did, for unit 04's checks.

Where a case is observed (a fresh process holding only the student's definitions, see
:mod:`mlc.grading.fresh`), :func:`launch` runs the kernel (in Numba's simulator through
:func:`mlc.perf.count_memory`) and reports, as plain data, what the kernel was, what it
raised and its memory traffic per array argument, in the order of the kernel's
parameters (the student may name them as they like). In the grader, the other helpers
turn such a report into verdicts: they refuse counts that cannot be true (negative, not
whole numbers, absurdly large, a trace that coalesces better than hardware can) and say
so as the worker's measurement. :class:`KernelCheck` reads from the notebook's source
that a kernel is a ``@cuda.jit`` kernel. This module registers no exercise.
"""

from __future__ import annotations

import ast
import builtins
import dis
import threading
import types

import numpy as np

from ...perf import count_memory
from ..registry import Check, first_line, need

MAX_COUNT = 10 ** 8  # elements moved by one of unit 04's tiny launches; more is not a count

NO_SIMULATOR = ("memory traffic can only be counted in Numba's CUDA simulator; grade this "
                "exercise with NUMBA_ENABLE_CUDASIM=1 set before Python starts")


def simulated() -> bool:
    import numba

    return bool(numba.config.ENABLE_CUDASIM)


# ---- where the case is observed ------------------------------------------------------------------

def kind_of(k) -> str:
    """"kernel", "device" (a device function), or the type of what is not a kernel."""
    if not (hasattr(k, "py_func") and hasattr(k, "__getitem__")):
        return type(k).__name__
    return "device" if getattr(k, "_device", False) else "kernel"


def traffic(counts, trace) -> dict:
    """A launch's counts as data: per global argument in parameter order, shared totals,
    and for ``trace`` ((position, "r" or "w"), ...) how the warps' accesses coalesce."""
    glob = [a for a in counts.arrays.values() if a.space == "global"]
    out = {"global": [{"reads": a.reads, "writes": a.writes, "atomics": a.atomics}
                      for a in glob],
           "shared_reads": counts.shared_reads, "shared_writes": counts.shared_writes}
    if counts.accesses is not None:
        out["coalescing"] = {}
        for pos, kind in trace:
            tr = counts.transactions(glob[pos].name, kind=kind)
            out["coalescing"][f"{pos}{kind}"] = {"requests": tr["requests"],
                                                 "transactions": tr["transactions"]}
    return out


# What a kernel may name besides its own device functions: on a GPU there is no Python
_BUILTINS = {"range", "len", "min", "max", "abs", "float", "int", "bool", "round", "pow",
             "complex", "divmod", "print"}
_LIBRARIES = {"numba", "math", "cmath", "numpy"}
_CHANGES = {"STORE_ATTR", "DELETE_ATTR", "STORE_GLOBAL", "DELETE_GLOBAL", "IMPORT_NAME"}


def _gpu_value(v) -> bool:
    """A value a kernel may name: a number, a library's module, type or function."""
    if v is None or isinstance(v, (int, float, complex, str)):
        return True
    if isinstance(v, tuple):
        return all(_gpu_value(x) for x in v)
    home = v.__name__ if isinstance(v, types.ModuleType) else (
        getattr(v, "__module__", None) or type(v).__module__)
    return str(home).split(".")[0] in _LIBRARIES


def python_in_kernel(kernel) -> str | None:
    """Why ``kernel`` (or a device function it calls) runs Python that no GPU runs, or None.

    In the simulator a kernel *is* Python and could, while it is counted, change what
    counts it; on a GPU it can only call device functions, math and CUDA's API. So its
    code (read from its bytecode) may name only those, numbers and the builtins Numba
    compiles, and may not assign attributes or globals, import, or reach ``_`` names."""
    todo, seen = [kernel], set()
    while todo:
        fn = getattr(todo.pop(), "py_func", None)
        if not isinstance(fn, types.FunctionType) or fn in seen:
            continue
        seen.add(fn)
        cells = dict(zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True))
        codes = [fn.__code__]
        while codes:
            code = codes.pop()
            codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
            for ins in dis.get_instructions(code):
                name = str(ins.argval)
                if ins.opname in _CHANGES or (ins.opname in ("LOAD_ATTR", "LOAD_METHOD")
                                              and name.startswith("_")):
                    return (f"`{fn.__name__}` {ins.opname.split('_')[0].lower()}s "
                            f"`{name}`, which kernel code cannot do")
                if ins.opname == "LOAD_DEREF":  # a factory's value, or a local of fn's
                    if name not in cells:
                        continue
                    value = cells[name].cell_contents
                elif ins.opname not in ("LOAD_GLOBAL", "LOAD_NAME"):
                    continue
                elif name in fn.__globals__:
                    value = fn.__globals__[name]
                elif name in _BUILTINS or isinstance(getattr(builtins, name, None), type) \
                        and issubclass(getattr(builtins, name), BaseException):  # raise X
                    continue
                else:
                    return f"`{fn.__name__}` calls `{name}`, which Numba's CUDA target lacks"
                if kind_of(value) in ("kernel", "device"):
                    todo.append(value)
                elif not _gpu_value(value):
                    return (f"`{fn.__name__}` uses `{name}` (a {type(value).__name__}), "
                            "which no GPU runs: a kernel calls only device functions, math "
                            "and cuda's API")
    return None


def launch(kernel, griddim, blockdim, *args, trace=()) -> dict:
    """Launch the student's kernel; report what it was, what it raised and its traffic
    (None on a real GPU, where Python cannot see the loads)."""
    kind = kind_of(kernel)
    if kind != "kernel":
        return {"kernel": kind}
    if simulated() and (why := python_in_kernel(kernel)):
        return {"kernel": kind, "python": why}
    try:
        if simulated():  # the counter bound at import, before the student's code existed
            counts = traffic(count_memory(kernel, griddim, blockdim, *args,
                                          trace=bool(trace)), trace)
        else:
            kernel[griddim, blockdim](*args)
            counts = None
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001 - the student's code may raise anything
        return {"kernel": kind, "raised": f"{type(err).__name__}: {first_line(err)}",
                "mro": [c.__name__ for c in type(err).__mro__]}
    return {"kernel": kind, "raised": None, "counts": counts}


def int_value(ns, name) -> dict:
    """A value such as TILE as data: the int itself (None if it is no int) and its repr."""
    v = need(ns, name, callable_=False)
    return {"value": v if type(v) is int else None, "repr": repr(v)[:80]}


# ---- in the grader ------------------------------------------------------------------------------

def once(t, what: str) -> None:
    """Record a fact of the exercise that every case repeats (it is a kernel) once."""
    if what not in t.passed:
        t.passed.append(what)


def ran(t, obs, name: str, what: str) -> dict:
    """The launch observation, after failing on a non-kernel or a kernel that raised."""
    if not isinstance(obs, dict):
        t.fail(f"{what}: malformed observation")
    kind = obs.get("kernel")
    if kind == "device":
        t.fail(f"`{name}` is a device function (device=True); it should be a kernel, "
               "launched as name[blocks, threads](...)")
    if kind != "kernel":
        t.fail(f"`{name}` should be a CUDA kernel (it is a {str(kind)[:40]}): put @cuda.jit "
               f"on the line above `def {name}`")
    once(t, f"`{name}` is a @cuda.jit kernel")
    if obs.get("python"):
        t.fail(f"{what}: runs only what a GPU runs: failed ({str(obs['python'])[:300]})")
    if obs.get("raised") is not None:
        mro = obs.get("mro") if isinstance(obs.get("mro"), list) else []
        nudge = (" (a thread indexed past the end of an array: does every thread check its "
                 "index against the array's size?)" if "IndexError" in mro else "")
        t.fail(f"{what}: your kernel raised {str(obs['raised'])[:300]}{nudge}")
    return obs


def float_array(t, v, shape, what: str) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        a = None
    if a is None or a.shape != tuple(shape):
        t.fail(f"{what}: expected the output array of shape {tuple(shape)} back from the "
               f"worker, got {type(v).__name__}" + (f" of shape {a.shape}" if a is not None
                                                    else ""))
    return a


def all_written(t, out: np.ndarray, what: str) -> None:
    """Outputs start as NaN: any NaN left means some element was never written."""
    missing = int(np.isnan(out).sum())
    t.true(missing == 0, f"{what}: writes every element of the output",
           f"{missing} of {out.size} elements were never written; does every thread find its "
           "element(s), and do the launched threads cover the whole array?")


def is_count(v) -> bool:
    return type(v) is int and 0 <= v <= MAX_COUNT


def counts_of(t, obs, n_args: int, what: str, required: bool):
    """The worker's traffic counts, bounded; None (when not required) on a real GPU."""
    c = obs.get("counts")
    if c is None:
        if required:
            t.fail(f"{what}: {NO_SIMULATOR}")
        return None
    glob = c.get("global") if isinstance(c, dict) else None
    if not (isinstance(glob, list) and len(glob) == n_args
            and all(isinstance(g, dict) and all(is_count(g.get(k)) for k in
                                                ("reads", "writes", "atomics")) for g in glob)
            and is_count(c.get("shared_reads")) and is_count(c.get("shared_writes"))):
        t.fail(f"{what}: the worker's memory counts are malformed or out of range (each "
               f"must be a whole number between 0 and {MAX_COUNT}, for each of the kernel's "
               f"{n_args} array arguments)")
    return c


def per_request(t, c, key: str, accessed: int, what: str) -> float:
    """Segments per warp-wide access, from the worker's trace, after bounding it."""
    co = c.get("coalescing")
    tr = co.get(key) if isinstance(co, dict) else None
    req = tr.get("requests") if isinstance(tr, dict) else None
    tx = tr.get("transactions") if isinstance(tr, dict) else None
    if not (is_count(req) and is_count(tx) and 32 * req >= accessed > 0
            and req <= tx <= 32 * req):
        t.fail(f"{what}: the worker's coalescing measurement is missing or cannot be true "
               f"(requests {req!r}, transactions {tx!r} for {accessed} accesses)")
    return tx / req


def decorator_names(tree) -> tuple[set, bool]:
    """Names in a definition's decorators (or in the call a kernel is assigned from), and
    whether any of them passes device=True."""
    nodes = getattr(tree, "decorator_list", None)
    if nodes is None:
        nodes = [tree.value] if isinstance(getattr(tree, "value", None), ast.AST) else []
    names, device = set(), False
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name):
                names.add(sub.id)
            elif isinstance(sub, ast.Attribute):
                names.add(sub.attr)
            elif isinstance(sub, ast.keyword) and sub.arg == "device":
                device = device or not (isinstance(sub.value, ast.Constant)
                                        and sub.value.value is False)
    return names, device


class KernelCheck(Check):
    """A check of one kernel: its source must show a @cuda.jit kernel."""

    kernel = ""

    def inspect(self, src, t):
        d = src.definition(self.kernel)
        if d is None:
            t.fail(f"`{self.kernel}` is decorated with @cuda.jit: failed (no top-level "
                   f"definition of `{self.kernel}` was found in the notebook)")
        names, device = decorator_names(d.tree)
        t.true("jit" in names and not device, f"`{self.kernel}` is decorated with @cuda.jit",
               "a device function (device=True) cannot be launched" if device else
               f"put @cuda.jit on the line above `def {self.kernel}`")


# ---- barriers and races (where the case is observed, in the simulator) ---------------------------

MAX_RACES = 3  # races reported per launch: the first few say enough


class _RaceArray:
    """A shared array seen from a simulated thread: each element access is recorded with
    the thread's block, its index in the block and the number of barriers it has passed."""

    __slots__ = ("_ary", "_name", "_log")

    def __init__(self, ary, name, log):
        self._ary, self._name, self._log = ary, name, log

    def _note(self, idx, kind):
        t = threading.current_thread()
        key = idx if isinstance(idx, tuple) else (idx,)
        try:
            key = tuple(int(i) for i in key)
        except TypeError:  # a slice: the whole array, conservatively
            key = ("*",)
        self._log.append((tuple(getattr(t, "blockIdx", ())), self._name, key, kind,
                          getattr(t, "thread_id", 0), getattr(t, "_mlc_barriers", 0)))

    def __getitem__(self, idx):
        self._note(idx, "r")
        res = self._ary[idx]
        return _RaceArray(res, self._name, self._log) if isinstance(res, np.ndarray) else res

    def __setitem__(self, idx, value):
        self._note(idx, "w")
        self._ary[idx] = value._ary if isinstance(value, _RaceArray) else value

    def __len__(self):
        return len(self._ary)

    def __getattr__(self, name):
        return getattr(self._ary, name)


def barrier_probe(kernel, griddim, blockdim, *args) -> dict:
    """Launch ``kernel`` once more in the simulator, recording every access to its shared
    arrays with the number of ``syncthreads()`` its thread has passed (its *phase*).

    Returns plain data: ``barriers`` (the most barriers a thread passed), per block the
    ``shared_reads`` and the most shared reads by one thread (``thread_reads``), and
    ``races``: elements of a shared array that one thread wrote and another thread read
    or wrote in the same phase, i.e. with no barrier between them (a data race on a GPU,
    whatever order the simulator happened to run the threads in), and ``unwritten``:
    elements read before any thread of the block wrote them (shared memory starts with
    whatever the last block left there on a GPU; here it starts as zeros, so such a read
    would otherwise go unseen). ``args`` are used as given: pass copies."""
    import sys

    from numba.cuda.simulator import kernel as sim_kernel
    from numba.cuda.simulator import kernelapi

    log: list = []
    made: dict = {}
    shared_cls, thread_cls = kernelapi.FakeCUDAShared, sim_kernel.BlockThread
    orig_array, orig_sync = shared_cls.array, thread_cls.syncthreads

    def shared_array(self, shape, dtype):
        from numba.core import types
        from numba.np import numpy_support

        caller = sys._getframe(1)
        key = (tuple(getattr(threading.current_thread(), "blockIdx", ())),
               caller.f_code.co_filename, caller.f_lineno)
        with lock:
            if key not in made:
                dt = numpy_support.as_dtype(dtype) if isinstance(dtype, types.Type) else dtype
                made[key] = _RaceArray(np.zeros(shape, dt), f"shared@line{caller.f_lineno}",
                                       log)
        return made[key]

    def syncthreads(self):
        self._mlc_barriers = getattr(self, "_mlc_barriers", 0) + 1
        return orig_sync(self)

    lock = threading.Lock()
    shared_cls.array, thread_cls.syncthreads = shared_array, syncthreads
    try:
        kernel[griddim, blockdim](*args)
    finally:
        shared_cls.array, thread_cls.syncthreads = orig_array, orig_sync
    return _summarise(log)


def _summarise(log) -> dict:
    barriers = max((rec[5] for rec in log), default=0)
    blocks: dict = {}
    cells: dict = {}
    for block, name, key, kind, thread, phase in log:
        b = blocks.setdefault(block, {"reads": 0, "per_thread": {}})
        if kind == "r":
            b["reads"] += 1
            b["per_thread"][thread] = b["per_thread"].get(thread, 0) + 1
        c = cells.setdefault((block, name, key, phase), {"w": set(), "any": set()})
        c["any"].add(thread)
        if kind == "w":
            c["w"].add(thread)
    unwritten, written = [], set()
    for block, name, key, kind, thread, _ in log:  # in the order the accesses happened
        if kind == "w":
            written.add((block, name, key))
        elif (block, name, key) not in written and (block, name, ("*",)) not in written:
            if key != ("*",) and len(unwritten) < MAX_RACES:
                unwritten.append({"array": name, "index": list(key), "thread": thread,
                                  "block": list(block)})
    races = []
    for (block, name, key, phase), c in cells.items():
        if c["w"] and len(c["any"]) > 1:
            writer = min(c["w"])
            other = min(c["any"] - {writer})
            races.append({"array": name, "index": list(key) if key != ("*",) else "*",
                          "writer": writer, "other": other, "barriers_before": phase,
                          "block": list(block)})
            if len(races) >= MAX_RACES:
                break
    return {"barriers": barriers,
            "shared_reads": [b["reads"] for b in blocks.values()],
            "thread_reads": [max(b["per_thread"].values(), default=0)
                             for b in blocks.values()],
            "races": races, "unwritten": unwritten}
