"""Unit 04, GPU operators: grids and blocks, 2-D indexing, shared-memory reductions and tiles.

Each check follows the grader's split (see :mod:`mlc.grading.registry`): ``cases`` and
``judge`` run in the grader, ``observe`` next to the student's code.

The grader sends hidden tiny inputs and launch configurations chosen to catch the usual
mistakes: more threads than elements (a missing bounds test), fewer threads than
elements (a missing grid-stride loop), shapes that are no multiple of the tile. Outputs
start as NaN, so an element never written shows. Every case is measured, so every case is
observed in a fresh process that holds only the student's definitions (``fresh="traffic"``,
:mod:`mlc.grading.fresh`), not in the worker, whose cells may have patched the counting:
there the student's ``@cuda.jit`` kernel is launched; in Numba's simulator through
:func:`mlc.perf.count_memory` and reports the *traffic* as counts per argument (in the
order of the kernel's parameters), which the judge bounds and compares: a reduction must
read each input element once, a tiled matmul must read global memory about ``2 n^3 / T``
times instead of ``2 n^3``, a 2-D kernel must coalesce. A shared-memory reduction must be a
tree (about ``2 * THREADS`` shared reads per block, ``log2(THREADS)`` steps) with a barrier
between its steps: a second simulated launch (:func:`.gpu_launch.barrier_probe`) records
which thread touched which shared element between which two ``syncthreads()``, so a
missing barrier is a race found for certain, not a wrong sum that shows only under an
unlucky interleaving; the same launch finds a shared element read before it was written
(a tile never zeroed past the matrix's edge: garbage on a GPU, often zeros here). On a
real GPU the results are judged but traffic cannot be counted: the exercises that grade
traffic say so.
That the kernels are ``@cuda.jit`` kernels is read from the notebook's source; that they
run only what a GPU runs (device functions, math, CUDA's API: in the simulator a kernel is
Python, which could edit its own count) from their bytecode before each launch. The
launching and the bounding of what a launch reports live in :mod:`.gpu_launch`.
"""

from __future__ import annotations

import math

import numpy as np

from ..registry import exercise, first_line, hidden_seed, need
from .gpu_launch import (KernelCheck, all_written, barrier_probe, counts_of,
                         float_array, int_value, is_count, launch, once, per_request, ran,
                         simulated)

NB = "04_gpu_operators"
MAX_TILE = 16  # the operand pools of matmul_tiled cover shapes up to 2 * 16 + 4


def _rand(rng, *shape):
    return rng.uniform(-1, 1, shape).astype(np.float32)


# ---- the exercises ------------------------------------------------------------------------------

@exercise("gpu_operators.vector_add", points=1, notebook=NB, needs=("vector_add",),
          fresh="traffic",
          hint="a launch may have more threads than elements, or fewer: every thread must "
               "stay inside the array, and a thread may have to handle several elements "
               "(the lecture's grid-stride loop)")
class _VectorAdd(KernelCheck):
    kernel = "vector_add"

    def cases(self):
        rng = np.random.default_rng(hidden_seed(10))
        out = []
        for n, blocks, threads, why in [(300, 3, 128, "more threads than elements"),
                                        (1000, 2, 64, "fewer threads than elements"),
                                        (1, 1, 32, "a single element")]:
            x, y = _rand(rng, n), _rand(rng, n)
            out.append({"what": f"vector_add[{blocks}, {threads}] on {n} elements ({why})",
                        "blocks": blocks, "threads": threads, "x": x, "y": y,
                        "out": np.full(n, np.nan, np.float32), "trace": n == 1000,
                        "traffic": True})
        return out

    def observe(self, ns, case):
        out = case["out"]
        obs = launch(need(ns, "vector_add"), case["blocks"], case["threads"], case["x"],
                     case["y"], out, trace=((0, "r"), (2, "w")) if case["trace"] else ())
        return {**obs, "out": out}

    def judge(self, case, obs, t):
        what, x, y = case["what"], case["x"], case["y"]
        ran(t, obs, self.kernel, what)
        out = float_array(t, obs.get("out"), x.shape, what)
        all_written(t, out, what)
        t.close(out, x + y, what)
        c = counts_of(t, obs, 3, what, required=False)
        if c is not None:  # on a real GPU traffic is not counted, and not asked for
            n, g = x.size, c["global"]
            t.equal((g[0]["reads"], g[1]["reads"], g[2]["writes"]), (n, n, n),
                    f"{what}: reads each of x and y once and writes out once")
            # a contiguous chunk per thread reads and writes each element once too, but
            # the 32 threads of a warp then touch 32 addresses a chunk apart
            for name, key in (("x", "0r"), ("out", "2w")) if case["trace"] else ():
                per = per_request(t, c, key, n, what)
                t.true(per <= 1.5, f"{what}: accesses to {name} coalesce (one 128-byte "
                       "segment per warp)",
                       f"a warp touches {per:.1f} segments of {name} per access: at each "
                       "step of a grid-stride loop neighbouring threads touch neighbouring "
                       "elements, which a chunk per thread does not")


BIAS_BLOCK = (32, 4)  # x runs along columns (j), y along rows (i)


@exercise("gpu_operators.indexing_2d", points=2, notebook=NB, needs=("add_bias",),
          simulator=True, fresh="traffic",
          hint="cuda.grid(2) gives the x coordinate first, and threads next to each other "
               "in a warp differ in x: which axis of the matrix should x walk so that a "
               "warp reads neighbouring addresses? Threads outside the matrix must do nothing")
class _AddBias(KernelCheck):
    kernel = "add_bias"

    def cases(self):
        rng = np.random.default_rng(hidden_seed(11))
        bx, by = BIAS_BLOCK
        out = []
        for rows, cols in [(5, 37), (1, 1), (9, 64)]:
            X, b = _rand(rng, rows, cols), _rand(rng, cols)
            grid = (math.ceil(cols / bx), math.ceil(rows / by))
            out.append({"what": f"add_bias[{grid}, {BIAS_BLOCK}] on X of shape {(rows, cols)}",
                        "grid": grid, "X": X, "b": b,
                        "out": np.full((rows, cols), np.nan, np.float32),
                        "trace": rows == 9,  # the coalescing case (768 threads traced)
                        "traffic": True})
        return out

    def observe(self, ns, case):
        out = case["out"]
        obs = launch(need(ns, "add_bias"), case["grid"], BIAS_BLOCK, case["X"], case["b"],
                     out, trace=((0, "r"), (2, "w")) if case["trace"] else ())
        return {**obs, "out": out}

    def judge(self, case, obs, t):
        what, X, b = case["what"], case["X"], case["b"]
        ran(t, obs, self.kernel, what)
        out = float_array(t, obs.get("out"), X.shape, what)
        all_written(t, out, what)
        t.close(out, X + b, what)
        c = counts_of(t, obs, 3, what, required=case["trace"])
        if c is None:
            return
        g = c["global"]
        t.equal((g[0]["reads"], g[2]["writes"]), (X.size, X.size),
                f"{what}: reads X and writes out once per element")
        if case["trace"]:
            for name, key in (("X", "0r"), ("out", "2w")):
                per = per_request(t, c, key, X.size, what)
                t.true(per <= 1.5, f"{what}: accesses to {name} coalesce (one 128-byte "
                       "segment per warp)",
                       f"a warp touches {per:.1f} segments of {name} per access; the "
                       "threads of a warp (consecutive threadIdx.x) should touch consecutive "
                       "addresses")


@exercise("gpu_operators.reduce_shared", points=3, notebook=NB, simulator=True,
          needs=("block_sum",), values=("THREADS",), fresh="traffic",
          hint="read each element of x once (a grid-stride loop into a register), then "
               "combine the block's values in a shared array by halving the number of "
               "active threads at each step, with a barrier between steps (the lecture's "
               "reduction section); one thread per block writes the block's result")
class _BlockSum(KernelCheck):
    kernel = "block_sum"

    def cases(self):
        rng = np.random.default_rng(hidden_seed(12))
        out = []
        for n, blocks in [(1000, 2), (100, 1), (0, 1), (3001, 3)]:
            x = _rand(rng, n) if n else np.zeros(0, np.float32)
            out.append({"what": f"block_sum[{blocks}, THREADS] on {n} elements",
                        "blocks": blocks, "x": x, "traffic": True,
                        "partial": np.full(blocks, np.nan, np.float32)})
        return out

    def observe(self, ns, case):
        threads = int_value(ns, "THREADS")
        kernel = need(ns, "block_sum")
        partial = case["partial"]
        if threads["value"] is None or not 1 <= threads["value"] <= 1024:
            return {"threads": threads}  # no launch can have that many threads per block
        obs = launch(kernel, case["blocks"], threads["value"], case["x"], partial)
        _probe_barriers(obs, kernel, case["blocks"], threads["value"], case["x"], partial)
        return {**obs, "threads": threads, "partial": partial}

    def judge(self, case, obs, t):
        if not isinstance(obs, dict) or not isinstance(obs.get("threads"), dict):
            t.fail(f"{case['what']}: malformed observation")
        T = obs["threads"].get("value")
        if not (type(T) is int and 32 <= T <= 256 and T & (T - 1) == 0):
            t.fail("THREADS is a power of two between 32 and 256: failed "
                   f"(THREADS = {str(obs['threads'].get('repr'))[:80]})")
        once(t, "THREADS is a power of two between 32 and 256")
        x, blocks = case["x"], case["blocks"]
        n = x.size
        what = f"block_sum[{blocks}, {T}] on {n} elements"
        ran(t, obs, self.kernel, what)
        c = counts_of(t, obs, 2, what, required=True)
        if n:  # a race explains a wrong sum better than the sum does: judge it first
            _judge_races(t, obs.get("barriers"), blocks, what)
        partial = float_array(t, obs.get("partial"), (blocks,), what)
        t.close(partial.sum(), x.sum(dtype=np.float64),
                f"{what}: the partial sums add up to sum(x)", rtol=1e-4, atol=1e-4)
        g = c["global"]
        t.equal(g[0]["reads"], n, f"{what}: reads each element of x exactly once")
        t.equal((g[1]["writes"], g[1]["reads"]), (blocks, 0),
                f"{what}: one write of partial per block (and no reads)")
        if n:  # (with nothing to sum, a kernel may just write zeros)
            t.true(c["shared_reads"] > 0 and c["shared_writes"] > 0,
                   f"{what}: the block reduces in shared memory",
                   "combine the threads' values in a cuda.shared.array of THREADS elements")
            _judge_tree(t, obs.get("barriers"), T, blocks, what)


def _probe_barriers(obs, kernel, griddim, blockdim, *args) -> None:
    """Where the case is observed, after a launch that ran in the simulator: a second launch,
    on copies of ``args``, that sees the barriers (which thread touched which shared element
    between which two syncthreads()), into ``obs["barriers"]``."""
    if not (simulated() and obs.get("raised") is None and obs.get("kernel") == "kernel"):
        return
    try:
        obs["barriers"] = barrier_probe(kernel, griddim, blockdim, *(a.copy() for a in args))
    except Exception as err:  # noqa: BLE001 - the first launch ran; this one may not
        obs["barriers"] = {"raised": f"{type(err).__name__}: {first_line(err)}"}


def _probe(t, probe, blocks, what):
    """The barrier probe's report, after bounding it."""
    if not isinstance(probe, dict) or "raised" in probe:
        t.fail(f"{what}: the second launch, which watches the barriers, failed "
               f"({str((probe or {}).get('raised', 'no observation'))[:200]})")
    reads, per_thread = probe.get("shared_reads"), probe.get("thread_reads")
    barriers, races = probe.get("barriers"), probe.get("races")
    unwritten = probe.get("unwritten")
    if not (isinstance(reads, list) and isinstance(per_thread, list)
            and len(reads) == len(per_thread) <= blocks and is_count(barriers)
            and all(is_count(v) for v in reads + per_thread)
            and all(isinstance(v, list) and all(isinstance(r, dict) for r in v)
                    for v in (races, unwritten))):
        t.fail(f"{what}: the worker's barrier observation is malformed")
    return reads, per_thread, barriers, races, unwritten


def _judge_races(t, probe, blocks, what):
    """No two threads touch one shared element (one of them writing) between the same two
    barriers (on a GPU either may run first), and no thread reads a shared element before
    its block wrote it (on a GPU it holds garbage: a tile's part outside the matrix must be
    zeroed, not skipped)."""
    *_, races, unwritten = _probe(t, probe, blocks, what)

    def raced(r):
        return (f"thread {str(r.get('writer'))[:8]} wrote {str(r.get('array'))[:40]}"
                f"{str(r.get('index'))[:40]} and thread {str(r.get('other'))[:8]} touched it "
                f"after the same {str(r.get('barriers_before'))[:8]} syncthreads(): on a GPU "
                "the second may run first, a race; a cuda.syncthreads() is missing")

    def unset(u):
        return (f"thread {str(u.get('thread'))[:8]} read {str(u.get('array'))[:40]}"
                f"{str(u.get('index'))[:40]} before any thread of its block wrote it: on a "
                "GPU shared memory holds what an earlier block left there")

    for found, verdict, tell in (
            (races, "the threads of a block synchronise between the steps (no race on "
                    "shared memory)", raced),
            (unwritten, "every shared element is written before it is read", unset)):
        if found:
            t.fail(f"{what}: {verdict.split(' (')[0]}: failed ({tell(found[0])})")
        once(t, verdict)


def _judge_tree(t, probe, T, blocks, what):
    """The block's combining is a tree: per block about 2 * THREADS shared reads
    (THREADS - 1 additions of two values), no thread reading more than a few per step of
    the log2(THREADS) steps, and at least log2(THREADS) barriers."""
    steps = T.bit_length() - 1
    reads, per_thread, barriers, _, _ = _probe(t, probe, blocks, what)
    t.true(len(reads) == blocks and all(1.5 * T <= r <= 4 * T for r in reads),
           f"{what}: each block reads shared memory about 2 * THREADS times, as a tree does",
           f"the blocks read shared memory {reads} times; a tree reads 2 * THREADS - 1: "
           "THREADS - 1 additions of two values and the final read of the result")
    t.true(max(per_thread, default=0) <= 3 * steps + 2 and barriers >= steps,
           f"{what}: the block combines in log2(THREADS) = {steps} steps",
           f"one thread read shared memory {max(per_thread, default=0)} times and a thread "
           f"passed {barriers} syncthreads(); a tree halves the active threads at each "
           "step, so every thread does at most a few reads per step, with a barrier after "
           "each step")


# (n, k, m) as (a, b) pairs meaning a * TILE + b: square, ragged, smaller than a tile
_MATMUL_SHAPES = [((2, 0), (2, 0), (2, 0)), ((1, 4), (2, 4), (1, 2)), ((0, 1), (0, 3), (0, 1))]


def _dims(spec, T):
    return tuple(a * T + b for a, b in spec)


@exercise("gpu_operators.matmul_tiled", points=4, notebook=NB, simulator=True,
          needs=("matmul_tiled",), values=("TILE",), fresh="traffic",
          hint="each block stages one tile of A and one of B in shared memory per step, "
               "waits until the whole block has loaded them, uses them TILE times, and waits "
               "again before the next step overwrites them; parts of a tile outside the "
               "matrix count as zeros (the lecture's tiled-matmul section)",
          rebuilds=("mlc.ndarray.backends.cuda:matmul_tiled",))
class _MatmulTiled(KernelCheck):
    kernel = "matmul_tiled"

    def cases(self):
        # The shapes depend on the student's TILE, so the grader sends operand pools large
        # enough for every TILE allowed; the worker and the judge cut the same corner.
        rng = np.random.default_rng(hidden_seed(13))
        big = 2 * MAX_TILE + 4
        return [{"what": "matmul_tiled on ({}T+{} x {}T+{}) @ ({}T+{} x {}T+{})".format(
                     *spec[0], *spec[1], *spec[1], *spec[2]),
                 "spec": [list(s) for s in spec], "A": _rand(rng, big, big),
                 "B": _rand(rng, big, big), "traffic": True} for spec in _MATMUL_SHAPES]

    def observe(self, ns, case):
        tile = int_value(ns, "TILE")
        kernel = need(ns, "matmul_tiled")
        T = tile["value"]
        if T is None or not 2 <= T <= MAX_TILE:
            return {"tile": tile}  # the pools cover TILE <= 16 only (and so does the judge)
        n, k, m = _dims(case["spec"], T)
        A, B = case["A"][:n, :k].copy(), case["B"][:k, :m].copy()
        C = np.full((n, m), np.nan, np.float32)
        grid = (math.ceil(m / T), math.ceil(n / T))
        obs = launch(kernel, grid, (T, T), A, B, C)
        _probe_barriers(obs, kernel, grid, (T, T), A, B, C)
        return {**obs, "tile": tile, "C": C}

    def judge(self, case, obs, t):
        if not isinstance(obs, dict) or not isinstance(obs.get("tile"), dict):
            t.fail(f"{case['what']}: malformed observation")
        T = obs["tile"].get("value")
        if not (type(T) is int and 2 <= T <= MAX_TILE):
            t.fail("TILE is an int between 2 and 16: failed "
                   f"(TILE = {str(obs['tile'].get('repr'))[:80]}; the simulator runs "
                   "TILE*TILE threads per block: keep it small)")
        once(t, "TILE is an int between 2 and 16")
        n, k, m = _dims(case["spec"], T)
        A = case["A"][:n, :k].astype(np.float64)
        B = case["B"][:k, :m].astype(np.float64)
        grid = (math.ceil(m / T), math.ceil(n / T))
        what = f"matmul_tiled[{grid}, {(T, T)}] on ({n}x{k}) @ ({k}x{m})"
        ran(t, obs, self.kernel, what)
        # before the values: whether a missing barrier gives a wrong C in the simulator
        # depends on how its threads happened to interleave; the race is certain
        _judge_races(t, obs.get("barriers"), grid[0] * grid[1], what)
        C = float_array(t, obs.get("C"), (n, m), what)
        all_written(t, C, what)
        t.close(C, A @ B, what, rtol=1e-4, atol=1e-5)
        c = counts_of(t, obs, 3, what, required=True)
        reads = sum(g["reads"] for g in c["global"])
        # each element of A is loaded once per block column, each of B once per block row
        tiled = n * k * math.ceil(m / T) + k * m * math.ceil(n / T)
        naive = 2 * n * k * m
        t.true(reads <= 1.1 * tiled,
               f"{what}: reads global memory like a tiled kernel (at most {tiled}; "
               f"the naive kernel reads {naive})",
               f"your kernel read global memory {reads} times: load each tile "
               "into shared memory once and read it from there TILE times")
        t.equal(c["global"][2]["writes"], n * m, f"{what}: writes each element of C once")
