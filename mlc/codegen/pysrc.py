"""PrimFunc -> Python source, for the "python" and "cpu" targets.

The generated function keeps the loop nest visible, one Python ``for`` per IR loop::

    def main(A, B, C):
        for i_0 in prange(4):                # parallel
            for j in range(12):
                for i_1 in range(2):
                    # block C
                    ...
                    C[i_0 * 2 + i_1, j] = C[i_0 * 2 + i_1, j] + A[...] * B[...]

Blocks are lowered here: their iterators are replaced by their bindings (and the result
simplified with the loop ranges), a predicate becomes an ``if``, and a reduction's
``init`` runs under ``if <all reduce iterators at their first value>``.

Intermediate buffers: lowering (:mod:`.lower`) places an allocation in the innermost loop
that holds all its uses, at the size one iteration needs (after ``reverse_compute_at`` a
1 x 1 ``C`` inside the ``(i, j)`` loops). Written there, ``np.empty`` would run once per
iteration, a heap allocation each time in Numba (there are no registers to put a "local"
buffer in, as TVM does on a GPU or in LLVM for a small array). Since a buffer's value never
outlives the iteration that made it, the generated code allocates it once instead: at the
top of the function, or, under a ``prange`` loop, at the top of that loop's body, so that
each thread has its own copy. The comment on the line says which loops it was taken out of.

Loop kinds: ``parallel`` -> ``prange`` (Numba runs it on threads; the "python" target
binds ``prange = range``); ``vectorized`` -> a plain innermost loop that LLVM vectorizes
under fastmath; ``unrolled`` -> the body written out once per iteration (extent up to
:data:`MAX_UNROLL`); thread-bound loops run as ordinary loops, so a GPU schedule can be
checked on the CPU. Buffers are indexed as multi-dimensional numpy arrays.

Intrinsics are ``math.*`` calls, except ``erf`` in float32 (GELU's): libm's ``erff`` is an
opaque call that keeps LLVM from vectorizing the loop around it (10 ns per element), so
the module gets its own ``erf_f32`` (:data:`ERF_F32`), a rational function that the loop
vectorizes (GELU over 32768 floats on one core: 332 us with ``math.erf``, 15 us with it).
"""

from __future__ import annotations

import keyword

from ..tir import expr as E
from ..tir.arith import simplify
from ..tir.functor import stmt_children, substitute
from ..tir.printer import Namer, format_float, show_binary
from ..tir.stmt import Allocate, Block, BufferStore, For, IfThenElse, PrimFunc, SeqStmt

MAX_UNROLL = 16
RESERVED = set(keyword.kwlist) | {"range", "prange", "min", "max", "abs", "np", "math",
                                  "numba", "cuda", "float", "int", "bool", "len", "print",
                                  "float32", "float64", "int8", "int16", "int32", "int64",
                                  "uint8", "uint16", "uint32", "uint64", "float16", "main"}


# erf(x) = x P(x^2) / Q(x^2) on x clamped to [-4, 4] (outside, erf is +-1 in float32):
# the rational approximation of Eigen's generic_fast_erf_float, which TVM's fast_erf and
# XLA also use. Multiply-adds and one division, so a loop calling it vectorizes; at most
# 3.3e-7 from math.erf (a few float32 ulps; measured over [-6, 6]).
ERF_F32 = """\
def erf_f32(x):
    x = min(max(x, np.float32(-4.0)), np.float32(4.0))
    x2 = x * x
    p = x2 * np.float32(-2.72614225801306e-10) + np.float32(2.77068142495902e-08)
    p = x2 * p + np.float32(-2.10102402082508e-06)
    p = x2 * p + np.float32(-5.69250639462346e-05)
    p = x2 * p + np.float32(-7.34990630326855e-04)
    p = x2 * p + np.float32(-2.95459980854025e-03)
    p = x2 * p + np.float32(-1.60960333262415e-02)
    q = x2 * np.float32(-1.45660718464996e-05) + np.float32(-2.13374055278905e-04)
    q = x2 * q + np.float32(-1.68282697438203e-03)
    q = x2 * q + np.float32(-7.37332916720468e-03)
    q = x2 * q + np.float32(-1.42647390514189e-02)
    return x * p / q
"""


class ExprPrinter:
    """Python text of an expression; ``dtype_fn`` spells a dtype cast (``np.float32``).
    With ``fast_erf``, a float32 ``erf`` calls the module's ``erf_f32`` (:data:`ERF_F32`)
    and ``used_erf_f32`` records that the module needs it."""

    def __init__(self, namer: Namer, dtype_fn, fast_erf: bool = False):
        self.namer, self.dtype_fn = namer, dtype_fn
        self.fast_erf, self.used_erf_f32 = fast_erf, False
        self.scalar = lambda buffer, indices: None  # a name for a load kept in a register

    def const(self, e) -> str:
        if e.dtype == "bool":
            return str(bool(e.value))
        if isinstance(e, E.IntImm):
            return str(e.value)
        s = format_float(e.value)
        s = {"inf": "math.inf", "-inf": "-math.inf", "nan": "math.nan"}.get(s, s)
        return f"{self.dtype_fn(e.dtype)}({s})"

    def __call__(self, e, prec: int = 0) -> str:
        if isinstance(e, E.Var):
            return self.namer(e)
        if isinstance(e, (E.IntImm, E.FloatImm)):
            s = self.const(e)
            return f"({s})" if s.startswith("-") and prec > 0 else s
        if isinstance(e, E.BinaryOp):
            return show_binary(e, self, prec)
        if isinstance(e, E.Not):
            return f"(not {self(e.a, 3)})"
        if isinstance(e, E.Cast):
            if e.dtype == "bool":
                return f"({self(e.value, 4)} != 0)"
            return f"{self.dtype_fn(e.dtype)}({self(e.value)})"
        if isinstance(e, E.Select):
            return f"({self(e.true_value)} if {self(e.condition)} else {self(e.false_value)})"
        if isinstance(e, E.BufferLoad):
            name = self.scalar(e.buffer, e.indices)
            if name is not None:
                return name
            idx = ", ".join(self(i) for i in e.indices) or "()"  # () indexes a 0-d array
            return f"{self.namer(e.buffer)}[{idx}]"
        if isinstance(e, E.Call):
            x = self(e.args[0])
            if e.op == "abs":
                return f"abs({x})"
            if e.op == "erf" and self.fast_erf and e.dtype == "float32":
                self.used_erf_f32 = True
                return f"erf_f32({x})"
            if e.op == "sigmoid":
                one = self.dtype_fn(e.dtype) + "(1.0)"
                return f"({one} / ({one} + math.exp(-{self(e.args[0], 7)})))"
            return f"math.{e.op}({x})"
        raise TypeError(f"cannot generate code for {type(e).__name__}")


class _Hoisted(list):
    """A place in the emitted lines (the top of the function, or of a prange loop's body)
    where allocations from the loops below it are written, once."""


class Emitter:
    """Walks a lowered PrimFunc and writes Python lines."""

    def __init__(self, target: str, dtype_fn=lambda d: f"np.{d}"):
        self.target = target
        self.namer = Namer(RESERVED)
        self.expr = ExprPrinter(self.namer, dtype_fn, fast_erf=target != "cuda")
        self.expr.scalar = self.scalar_name
        # "local" buffers to hold in scalar variables, and those found indexed by a loop
        self.scalars: set = set()
        self.not_scalar: set = set()
        self.lines: list = []
        self.ranges: dict = {}   # loop var -> (lo, hi): lets simplify fold index math
        self.vmap: dict = {}     # block iterator -> its binding, while inside the block
        self.has_parallel = False
        # (lines, indent, ids of buffers written there, loops entered below it) where
        # allocations go; None: write each one where it stands (the cuda target)
        self.hoist: list | None = None

    def hoist_here(self, ind: str) -> None:
        """Allocations below this point go here (see the module's docstring)."""
        place = _Hoisted()
        self.lines.append(place)
        self.hoist.append([place, ind, set(), []])

    def flat_lines(self) -> list:
        out = []
        for line in self.lines:
            out.extend(line) if isinstance(line, _Hoisted) else out.append(line)
        return out

    def scalar_name(self, buf, indices) -> str | None:
        """The variable that holds ``buf[indices]`` when ``buf`` is kept in scalars (see
        :func:`python_source`); None otherwise. A buffer indexed by a loop variable here
        cannot be: it is recorded, and the source is generated again without it."""
        if id(buf) not in self.scalars:
            return None
        if not all(isinstance(i, E.IntImm) for i in indices):
            self.not_scalar.add(id(buf))
            return None
        return "_".join([self.namer(buf)] + [str(i.value) for i in indices])

    def e(self, x) -> str:
        return self.expr(simplify(substitute(x, self.vmap), self.ranges))

    def line(self, ind: str, text: str) -> None:
        self.lines.append(ind + text)

    def body(self, s, ind: str) -> None:
        """An indented body; ``pass`` when nothing is left of it (a guard that is false
        for every iteration of an unrolled loop, say)."""
        n = len(self.lines)
        self.stmt(s, ind)
        if all(not isinstance(line, str) or line.lstrip().startswith("#")
               for line in self.lines[n:]):
            self.line(ind, "pass")

    def stmt(self, s, ind: str) -> None:
        if s is None:
            return
        if isinstance(s, SeqStmt):
            for c in s.seq:
                self.stmt(c, ind)
        elif isinstance(s, For):
            self.loop(s, ind)
        elif isinstance(s, Block):
            self.block(s, ind)
        elif isinstance(s, BufferStore):
            indices = [simplify(substitute(i, self.vmap), self.ranges) for i in s.indices]
            target = self.scalar_name(s.buffer, indices)
            if target is None:
                idx = ", ".join(self.expr(i) for i in indices) or "()"
                target = f"{self.namer(s.buffer)}[{idx}]"
            self.line(ind, f"{target} = {self.e(s.value)}")
        elif isinstance(s, IfThenElse):
            self.branch(s.condition, s.then_case, s.else_case, ind)
        elif isinstance(s, Allocate):
            self.allocate(s, ind)
        else:
            raise TypeError(f"cannot generate code for {type(s).__name__}")

    def branch(self, cond, then, other, ind) -> None:
        c = simplify(substitute(cond, self.vmap), self.ranges)
        if isinstance(c, E.IntImm):  # decided at compile time
            self.stmt(then if c.value else other, ind)
            return
        self.line(ind, f"if {self.expr(c)}:")
        self.body(then, ind + "    ")
        if other is not None:
            self.line(ind, "else:")
            self.body(other, ind + "    ")

    def allocate(self, s: Allocate, ind: str) -> None:
        b = s.buffer
        if id(b) in self.scalars:
            self.line(ind, f"# {self.namer(b)}: {b.shape} {b.scope}, held in scalar variables")
            self.stmt(s.body, ind)
            return
        text = f"{self.namer(b)} = np.empty({b.shape}, dtype=np.{b.dtype})  # {b.scope}"
        if not self.hoist:
            self.line(ind, text)
        else:
            place, place_ind, done, loops = self.hoist[-1]
            if id(b) not in done:
                done.add(id(b))
                if loops:
                    text += f", allocated once, not once per iteration of {', '.join(loops)}"
                place.append(place_ind + text)
        self.stmt(s.body, ind)

    def loop(self, s: For, ind: str) -> None:
        self.namer.push()
        v = self.namer.bind(s.loop_var)
        if s.kind == "unrolled" and s.extent <= MAX_UNROLL:
            self.line(ind, f"# unrolled: {v} in range({s.extent})")
            for k in range(s.extent):
                self.ranges[s.loop_var] = (k, k)
                self.stmt(s.body, ind)
            del self.ranges[s.loop_var]
            self.namer.pop()
            return
        rng = "range"
        note = ""
        if s.kind == "parallel" and self.target == "cuda":
            note = "  # parallel: serial inside a GPU thread"
        elif s.kind == "parallel":
            rng, self.has_parallel = "prange", True
        elif s.kind == "vectorized":
            note = "  # vectorized"
        elif s.kind == "unrolled":
            note = f"  # unroll (left to LLVM: extent above {MAX_UNROLL})"
        elif s.kind == "thread_binding":
            note = f"  # {s.thread_tag} (a plain loop on this target)"
        self.line(ind, f"for {v} in {rng}({s.extent}):{note}")
        self.ranges[s.loop_var] = (0, s.extent - 1)
        if self.hoist is not None and rng == "prange":  # one copy per thread
            self.hoist_here(ind + "    ")
            self.body(s.body, ind + "    ")
            self.hoist.pop()
        else:
            if self.hoist:
                self.hoist[-1][3].append(v)
            self.body(s.body, ind + "    ")
            if self.hoist:
                self.hoist[-1][3].pop()
        del self.ranges[s.loop_var]
        self.namer.pop()

    def block(self, b: Block, ind: str) -> None:
        self.line(ind, f"# block {b.name}")
        saved = dict(self.vmap)
        bind = {iv.var: simplify(x, self.ranges)
                for iv, x in zip(b.iter_vars, b.bindings, strict=True)}
        self.vmap.update(bind)
        body = b.body
        if b.init is not None:
            first = E.all_(*[E.EQ(iv.var, E.IntImm(iv.dom_min))
                             for iv in b.iter_vars if iv.kind == "reduce"])
            body = [IfThenElse(first, b.init), b.body] if b.is_reduction else [b.init, b.body]
            body = SeqStmt(body)
        pred = b.predicate
        if isinstance(pred, E.IntImm) and pred.value == 1:
            self.stmt(body, ind)
        else:
            self.branch(pred, body, None, ind)
        self.vmap = saved


def _local_buffers(func: PrimFunc) -> set:
    found = set()

    def walk(s):
        if isinstance(s, Allocate) and s.buffer.scope == "local":
            found.add(id(s.buffer))
        for c in stmt_children(s):
            walk(c)
    walk(func.body)
    return found


def _emit(func: PrimFunc, target: str, scalars: set) -> Emitter:
    em = Emitter(target)
    em.scalars = scalars
    params = [em.namer(b) for b in func.params]
    em.line("", f"def {func.name}({', '.join(params)}):")
    em.hoist = []
    em.hoist_here("    ")
    em.stmt(func.body, "    ")
    if len(em.flat_lines()) == 1:
        em.line("    ", "pass")
    return em


def python_source(func: PrimFunc, target: str) -> tuple[str, bool]:
    """``(source, has_parallel)`` for a lowered PrimFunc (targets "python" and "cpu").

    Scalar replacement: a "local" buffer that every access indexes with constants (after
    unrolling: the accumulators of a register tile, ``C_local[0, 0] ... C_local[3, 0]``)
    becomes one variable per element (``C_local_0_0``). Numba keeps an array in memory,
    and LLVM cannot tell that it aliases no argument, so an accumulator array is loaded
    and stored at every step of the reduction; a variable lives in a register, and a
    reduction loop over it vectorizes. Tried on every local buffer; one that some access
    indexes with a loop variable stays an array."""
    candidates = _local_buffers(func)
    while True:
        em = _emit(func, target, candidates)
        if not em.not_scalar:
            break
        candidates -= em.not_scalar
    header = [f"# generated by mlc.codegen for target \"{target}\" from PrimFunc {func.name}",
              "import math", "import numpy as np"]
    header.append("from numba import prange" if target == "cpu" else
                  "prange = range  # the python target runs parallel loops serially")
    if em.expr.used_erf_f32:  # inlined, so the loop that calls it still vectorizes
        header += ["", ""] + (["import numba", "", "",
                               "@numba.njit(fastmath=True, inline=\"always\")"]
                              if target == "cpu" else []) + ERF_F32.splitlines()
    return "\n".join(header + ["", ""] + em.flat_lines()) + "\n", em.has_parallel
