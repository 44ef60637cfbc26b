"""Features of a scheduled loop nest: the numbers a cost model reads instead of running it.

A measurement costs a compilation and several runs; a cost model guesses the run time
from a handful of numbers that describe the loop nest around the block being tuned.
The features follow what makes loops fast on a CPU:

* **data movement** — for each cache size (L1 32 KiB, L2 256 KiB, L3 8 MiB) the bytes that
  must come in from the level below: take the outermost loop whose body touches at most
  the cache's size (the *tile* that fits) and multiply its footprint (in whole 64-byte
  cache lines) by how often it runs.
  Footprints come from the index expressions: a buffer dimension indexed by
  ``i_0 * 32 + i_1 * 4 + i_2`` spans ``32`` elements when ``i_1, i_2`` run and ``i_0`` is
  fixed (``mlc.tir.arith.bound``);
* **the innermost loop** (the innermost that really iterates: extent above 1, not
  unrolled) — its extent, whether it is vectorized or runs a reduce iterator, how many
  statements its body holds once the loops inside are unrolled, and how many of the
  buffers it walks contiguously (stride 1), not at all (stride 0, a value kept in a
  register) or with a large stride (a new cache line per step);
* **parallelism** — the extent of the parallel loops and how evenly it divides among the
  cores; **unrolling** — how many copies of the body sit inside one loop iteration;
* **structure** — loop depth, the position of the first reduce loop, whether the block
  accumulates into a "local" tile, and how many times the innermost loop is entered.

All are on a log scale where they span orders of magnitude. :data:`FEATURE_NAMES` names
the columns of :func:`extract`.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..schedule.state import find_path, loops_of
from ..tir import arith
from ..tir.expr import Var
from ..tir.functor import collect_vars, reduce_loop_vars, substitute
from ..tir.region import block_accesses
from ..tir.stmt import Block, PrimFunc

LINE = 64  # bytes in a cache line
CACHES = (("l1", 32 * 1024), ("l2", 256 * 1024), ("l3", 8 * 1024 * 1024))

FEATURE_NAMES = (
    "log_traffic_l1", "log_traffic_l2", "log_traffic_l3", "log_footprint_outer_tile",
    "log_inner_extent", "inner_vectorized", "inner_stride1", "inner_stride0",
    "inner_strided", "log_parallel", "parallel_balance", "log_unroll", "n_loops",
    "reduce_depth", "inner_is_reduce", "log_inner_body", "local_accumulator",
    "log_inner_entries", "log_total_iters",
    "log_extent_2nd_inner", "log_extent_3rd_inner",
)


def _log2(x: float) -> float:
    return math.log2(max(float(x), 1.0))


def find_block(func: PrimFunc, name: str):
    """``(block, loops)``: the block called ``name`` and its enclosing For loops,
    outermost first; ``(None, [])`` when there is none."""
    blk, anc = find_path(func.body, lambda s: isinstance(s, Block) and s.name == name)
    return (blk, loops_of(anc)) if blk is not None else (None, [])


def _itemsize(dtype: str) -> int:
    return np.dtype(dtype).itemsize if dtype != "bool" else 1


def _accesses(block: Block) -> list:
    """``(buffer, indices in loop variables)`` for each distinct access of the body."""
    vmap = {iv.var: b for iv, b in zip(block.iter_vars, block.bindings, strict=True)}
    seen, out = set(), []
    for buf, idx, _ in block_accesses(block.with_(init=None)):
        idx = tuple(substitute(i, vmap) for i in idx)
        key = (id(buf), tuple(arith.expr_key(i) for i in idx))
        if key not in seen:
            seen.add(key)
            out.append((buf, idx))
    return out


def _footprint_bytes(accesses, loops, level: int) -> float:
    """Bytes touched by one iteration of ``loops[level - 1]`` (all loops from ``level``
    inward run, the ones outside are held at 0)."""
    ranges = {lp.loop_var: (0, lp.extent - 1 if d >= level else 0)
              for d, lp in enumerate(loops)}
    per_buffer: dict = {}
    for buf, idx in accesses:
        spans = []
        for dim, e in zip(buf.shape, idx, strict=True):
            lo, hi = arith.bound(e, ranges)
            span = dim if (math.isinf(lo) or math.isinf(hi)) else min(dim, hi - lo + 1)
            spans.append(max(span, 1))
        # Memory moves in cache lines: each row of the box (a run along the last, contiguous
        # dimension) costs whole lines, so a column of B costs a line per element.
        row_bytes = spans[-1] * _itemsize(buf.dtype) if spans else _itemsize(buf.dtype)
        lines = math.ceil(row_bytes / LINE) * math.prod(spans[:-1])
        # Several accesses to one buffer overlap (C read and written): keep the largest.
        per_buffer[id(buf)] = max(per_buffer.get(id(buf), 0), lines * LINE)
    return float(sum(per_buffer.values()))


def _stride(buf, idx, var: Var) -> float:
    """Elements the address moves when ``var`` grows by one (inf when not affine)."""
    stride, row = 0, 1
    for dim, e in reversed(list(zip(buf.shape, idx, strict=True))):
        lin = arith.linear(e)
        for atom, c in lin.terms.values():
            if atom is var:
                stride += c * row
            elif any(v is var for v in collect_vars(atom)):
                return math.inf
        row *= dim
    return abs(stride)


def extract(func: PrimFunc, block: str, cores: int | None = None) -> np.ndarray:
    """The feature vector (see :data:`FEATURE_NAMES`) of block ``block`` in ``func``."""
    blk, loops = find_block(func, block)
    if blk is None:
        raise ValueError(f"extract: PrimFunc {func.name} has no block named {block!r}")
    cores = cores or os.cpu_count() or 1
    accesses = _accesses(blk)
    ext = [lp.extent for lp in loops]
    total = math.prod(ext)
    # runs[d]: how many times loop d's body starts, i.e. the product of the extents above.
    runs = [math.prod(ext[:d]) for d in range(len(loops) + 1)]
    foot = [_footprint_bytes(accesses, loops, d) for d in range(len(loops) + 1)]
    feats = {}
    for name, size in CACHES:
        level = next((d for d in range(len(loops) + 1) if foot[d] <= size), len(loops))
        feats[f"log_traffic_{name}"] = _log2(foot[level] * runs[level])
    outer_par = next((d for d, lp in enumerate(loops) if lp.kind != "parallel"), len(loops))
    feats["log_footprint_outer_tile"] = _log2(foot[outer_par])

    # Loops of extent 1 run once and vanish in the compiled code: the "innermost loop" is
    # the innermost one that really iterates (and is not unrolled away).
    body_loops = [lp for lp in loops if lp.kind != "unrolled" and lp.extent > 1]
    inner = body_loops[-1] if body_loops else None
    strides = [_stride(b, i, inner.loop_var) for b, i in accesses] if inner else []
    feats["log_inner_extent"] = _log2(inner.extent if inner else 1)
    feats["inner_vectorized"] = float(inner is not None and inner.kind == "vectorized")
    feats["inner_stride1"] = float(sum(s == 1 for s in strides))
    feats["inner_stride0"] = float(sum(s == 0 for s in strides))
    feats["inner_strided"] = float(sum(s > 1 for s in strides))
    par = math.prod(lp.extent for lp in loops if lp.kind == "parallel")
    feats["log_parallel"] = _log2(par)
    feats["parallel_balance"] = par / (math.ceil(par / cores) * cores)
    feats["log_unroll"] = _log2(math.prod(lp.extent for lp in loops if lp.kind == "unrolled"))
    feats["n_loops"] = float(sum(lp.extent > 1 for lp in loops))
    reduce_vars = reduce_loop_vars(blk)
    first_r = next((d for d, lp in enumerate(loops) if id(lp.loop_var) in reduce_vars),
                   len(loops))
    feats["reduce_depth"] = first_r / max(len(loops), 1)
    feats["inner_is_reduce"] = float(inner is not None and id(inner.loop_var) in reduce_vars)
    inner_at = next((d for d, lp in enumerate(loops) if lp is inner), -1)
    feats["log_inner_body"] = _log2(math.prod(lp.extent for lp in loops[inner_at + 1:]))
    writes = {id(b) for b, _, st in block_accesses(blk) if st}
    feats["local_accumulator"] = float(any(b.scope == "local" for b, _ in accesses
                                           if id(b) in writes))
    feats["log_inner_entries"] = _log2(total / (inner.extent if inner else 1))
    feats["log_total_iters"] = _log2(total)
    feats["log_extent_2nd_inner"] = _log2(body_loops[-2].extent if len(body_loops) > 1 else 1)
    feats["log_extent_3rd_inner"] = _log2(body_loops[-3].extent if len(body_loops) > 2 else 1)
    return np.array([feats[n] for n in FEATURE_NAMES], dtype=np.float64)
