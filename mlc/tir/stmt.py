"""Statements of the tensor IR, buffers, and the PrimFunc that holds them.

A program is a tree of statements:

* ``For(loop_var, extent, body, kind)`` — a loop ``0 <= loop_var < extent``. ``kind`` says
  how it runs: "serial", "parallel", "vectorized", "unrolled" or "thread_binding" (then
  ``thread_tag`` names the GPU axis, e.g. "blockIdx.x").
* ``Block`` — one computation instance, TVM style. Its iterators (``IterVar``) are marked
  "spatial" (they index the output) or "reduce" (summed over), and each is *bound* to an
  expression of the surrounding loop variables. The body only uses the iterators, never the
  loop variables, so loops can be rewritten (split, fused, reordered) by changing
  bindings alone. ``init`` runs before the first reduction step of each output element;
  ``predicate`` guards the instance (imperfect splits, regions that overhang).
* ``BufferStore``, ``SeqStmt``, ``IfThenElse`` and ``Allocate`` (an intermediate buffer
  with a memory scope "global", "shared" or "local").

Nodes are immutable; transformations build new trees and share unchanged parts.
"""

from __future__ import annotations

from typing import Sequence

from .expr import BufferLoad, Var, check_dtype, convert

FOR_KINDS = ("serial", "parallel", "vectorized", "unrolled", "thread_binding")
THREAD_TAGS = ("blockIdx.x", "blockIdx.y", "blockIdx.z",
               "threadIdx.x", "threadIdx.y", "threadIdx.z")
SCOPES = ("global", "shared", "local")


class Buffer:
    """A named n-d array with a static shape, a dtype and a memory scope."""

    __slots__ = ("name", "shape", "dtype", "scope")

    def __init__(self, name: str, shape: Sequence[int], dtype: str = "float32",
                 scope: str = "global"):
        shape = tuple(int(s) for s in shape)
        if any(s <= 0 for s in shape):
            raise ValueError(f"buffer {name}: shape {shape} must have positive extents")
        if scope not in SCOPES:
            raise ValueError(f"buffer {name}: unknown scope {scope!r}; expected {SCOPES}")
        self.name, self.shape, self.dtype, self.scope = name, shape, check_dtype(dtype), scope

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, indices) -> BufferLoad:
        if not isinstance(indices, tuple):
            indices = (indices,)
        if len(indices) != self.ndim:
            raise IndexError(f"buffer {self.name} has {self.ndim} dims, got "
                             f"{len(indices)} indices")
        return BufferLoad(self, indices)

    def with_(self, **kw) -> "Buffer":
        f = {s: getattr(self, s) for s in self.__slots__}
        f.update(kw)
        return Buffer(**f)

    def __repr__(self):
        return f"Buffer({self.name}, {self.shape}, {self.dtype!r}, scope={self.scope!r})"


class Stmt:
    """Base of statements."""

    __slots__ = ()
    _fields: tuple = ()

    def with_(self, **kw):
        """A copy with some fields replaced (nodes are immutable)."""
        f = {s: getattr(self, s) for s in self._fields}
        f.update(kw)
        return type(self)(**f)

    def script(self) -> str:
        from .printer import stmt_to_str

        return stmt_to_str(self)

    def __repr__(self):
        return self.script()


class BufferStore(Stmt):
    """``buffer[indices] = value``."""

    __slots__ = _fields = ("buffer", "value", "indices")

    def __init__(self, buffer: Buffer, value, indices):
        self.buffer = buffer
        self.value = convert(value, buffer.dtype)
        if self.value.dtype != buffer.dtype:
            raise TypeError(f"store to {buffer.name} ({buffer.dtype}) of a "
                            f"{self.value.dtype} value; cast it first")
        self.indices = tuple(convert(i) for i in indices)
        if len(self.indices) != buffer.ndim:
            raise IndexError(f"store to {buffer.name}: {buffer.ndim} dims but "
                             f"{len(self.indices)} indices")


class SeqStmt(Stmt):
    """Statements run one after another. Build with :func:`seq`, which flattens."""

    __slots__ = _fields = ("seq",)

    def __init__(self, seq):
        self.seq = tuple(seq)


def seq(*stmts) -> Stmt | None:
    """Flatten nested sequences, drop Nones; a single statement comes back as itself."""
    out = []
    for s in stmts:
        if s is None:
            continue
        if isinstance(s, (list, tuple)):
            s = seq(*s)
            if s is None:
                continue
        out.extend(s.seq if isinstance(s, SeqStmt) else [s])
    if not out:
        return None
    return out[0] if len(out) == 1 else SeqStmt(out)


def children(stmt: Stmt | None) -> list:
    """The statements of a body, as a list (a SeqStmt unfolds)."""
    if stmt is None:
        return []
    return list(stmt.seq) if isinstance(stmt, SeqStmt) else [stmt]


class IfThenElse(Stmt):
    __slots__ = _fields = ("condition", "then_case", "else_case")

    def __init__(self, condition, then_case: Stmt, else_case: Stmt | None = None):
        self.condition = convert(condition)
        if self.condition.dtype != "bool":
            raise TypeError(f"IfThenElse condition must be bool, got {self.condition.dtype}")
        self.then_case, self.else_case = then_case, else_case


class Allocate(Stmt):
    """Allocate ``buffer`` (in its scope) for the duration of ``body``."""

    __slots__ = _fields = ("buffer", "body")

    def __init__(self, buffer: Buffer, body: Stmt):
        self.buffer, self.body = buffer, body


def split_root(body: Stmt) -> tuple[list, Stmt]:
    """``(buffers allocated at the top, the statement inside those allocations)``."""
    bufs = []
    while isinstance(body, Allocate):
        bufs.append(body.buffer)
        body = body.body
    return bufs, body


def join_root(bufs, inner: Stmt) -> Stmt:
    """``inner`` under allocations of ``bufs`` (the first outermost): undoes split_root."""
    for b in reversed(bufs):
        inner = Allocate(b, inner)
    return inner


class For(Stmt):
    """``for loop_var in range(extent)``, run as ``kind`` says.

    Loops start at 0 (rewrites keep them that way); ``extent`` is a positive int.
    """

    __slots__ = _fields = ("loop_var", "extent", "body", "kind", "thread_tag")

    def __init__(self, loop_var: Var, extent: int, body: Stmt, kind: str = "serial",
                 thread_tag: str | None = None):
        if kind not in FOR_KINDS:
            raise ValueError(f"loop {loop_var.name}: unknown kind {kind!r}; expected {FOR_KINDS}")
        if (kind == "thread_binding") != (thread_tag is not None):
            raise ValueError(f"loop {loop_var.name}: a thread tag goes with kind "
                             "'thread_binding' and only with it")
        if thread_tag is not None and thread_tag not in THREAD_TAGS:
            raise ValueError(f"loop {loop_var.name}: unknown thread tag {thread_tag!r}; "
                             f"expected one of {THREAD_TAGS}")
        extent = int(getattr(extent, "value", extent))
        if extent <= 0:
            raise ValueError(f"loop {loop_var.name}: extent {extent} must be positive")
        self.loop_var, self.extent, self.body = loop_var, extent, body
        self.kind, self.thread_tag = kind, thread_tag


class IterVar:
    """A block iterator: a variable, its domain ``[min, min + extent)`` and its kind."""

    __slots__ = ("var", "dom_min", "extent", "kind")

    def __init__(self, var: Var, extent: int, kind: str = "spatial", dom_min: int = 0):
        if kind not in ("spatial", "reduce"):
            raise ValueError(f"iterator {var.name}: kind must be 'spatial' or 'reduce', "
                             f"got {kind!r}")
        self.var, self.extent, self.kind, self.dom_min = var, int(extent), kind, int(dom_min)

    def __repr__(self):
        return f"IterVar({self.var.name}, [{self.dom_min}, {self.dom_min + self.extent}), " \
               f"{self.kind})"


class Block(Stmt):
    """One computation instance under its loop nest (see the module docstring).

    ``bindings[i]`` is the value of ``iter_vars[i].var`` in terms of the loop variables.
    The buffers it reads and writes are derived from the body (``tir.region``).
    """

    __slots__ = _fields = ("name", "iter_vars", "bindings", "body", "init", "predicate")

    def __init__(self, name: str, iter_vars, bindings, body: Stmt, init: Stmt | None = None,
                 predicate=True):
        self.name = name
        self.iter_vars = tuple(iter_vars)
        self.bindings = tuple(convert(b) for b in bindings)
        if len(self.bindings) != len(self.iter_vars):
            raise ValueError(f"block {name}: {len(self.iter_vars)} iterators but "
                             f"{len(self.bindings)} bindings")
        self.body, self.init = body, init
        self.predicate = convert(predicate)

    @property
    def is_reduction(self) -> bool:
        return any(iv.kind == "reduce" for iv in self.iter_vars)


class PrimFunc:
    """A tensor program: buffer parameters (inputs and outputs) and a body.

    ``func.script()`` prints it; ``func.buffers`` lists every buffer it declares.
    """

    __slots__ = ("params", "body", "name", "attrs")

    def __init__(self, params: Sequence[Buffer], body: Stmt, name: str = "main", attrs=None):
        self.params, self.body, self.name = tuple(params), body, name
        self.attrs = dict(attrs or {})
        names = [b.name for b in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"PrimFunc {name}: parameter names repeat: {names}")

    def with_body(self, body: Stmt) -> "PrimFunc":
        return PrimFunc(self.params, body, self.name, self.attrs)

    @property
    def buffers(self) -> list:
        """Parameters, then allocated buffers in program order."""
        out = list(self.params)

        def walk(s):
            if isinstance(s, Allocate):
                out.append(s.buffer)
            for c in sub_stmts(s):
                walk(c)

        walk(self.body)
        return out

    def script(self) -> str:
        from .printer import func_to_str

        return func_to_str(self)

    def show(self) -> None:
        print(self.script())

    def __repr__(self):
        return self.script()


def sub_stmts(s: Stmt) -> list:
    """The direct child statements of ``s`` (not inside a block's body or init)."""
    if isinstance(s, SeqStmt):
        return list(s.seq)
    if isinstance(s, (For, Allocate)):
        return [s.body]
    if isinstance(s, IfThenElse):
        return [s.then_case] + ([s.else_case] if s.else_case is not None else [])
    return []
