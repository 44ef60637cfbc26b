"""Handles to loops and blocks, and the tree surgery schedule primitives share.

IR nodes are immutable, so a primitive builds a new tree. Handles must survive that:

* a :class:`BlockRV` names a block (block names are unique in a PrimFunc);
* a :class:`LoopRV` holds the loop's variable object, which a rewrite keeps unless it
  removes the loop (``split`` and ``fuse`` replace loops by new ones, and return handles
  to them);
* an :class:`IntRV` is an ``int`` produced by a sampling primitive; it remembers where it
  came from so the trace can replay the schedule with another decision.

Schedule-time allocations all sit at the root, around the whole body; lowering later
moves each to where it is used and shrinks it (``mlc.codegen.lower``).
"""

from __future__ import annotations

from ..tir import expr as E
from ..tir.functor import IRMutator, blocks_in, collect_vars, stmt_children
from ..tir.region import block_reads, block_writes
from ..tir.stmt import Block, For, Stmt, children, join_root, seq, split_root
from .errors import ScheduleError


class BlockRV:
    """A handle to a block, by name."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return f"BlockRV({self.name!r})"


class LoopRV:
    """A handle to a loop, by its loop variable."""

    __slots__ = ("var",)

    def __init__(self, var: E.Var):
        self.var = var

    def __repr__(self):
        return f"LoopRV({self.var.name})"


class IntRV(int):
    """An int chosen by a sampling primitive (behaves, and prints, as the int it is)."""


# ------------------------------------------------------------------------ paths

def find_path(root: Stmt, pred) -> tuple:
    """``(node, ancestors)`` for the first statement satisfying ``pred`` (DFS order)."""
    stack = [(root, ())]
    while stack:
        node, anc = stack.pop()
        if node is None:
            continue
        if pred(node):
            return node, list(anc)
        if isinstance(node, Block):
            continue
        for c in reversed(stmt_children(node)):
            stack.append((c, anc + (node,)))
    return None, None


def same_loop(root: Stmt, loop: For | None) -> For | None:
    """The loop with ``loop``'s variable in the rebuilt tree ``root`` (None stays None)."""
    if loop is None:
        return None
    return find_path(root, lambda s: isinstance(s, For) and s.loop_var is loop.loop_var)[0]


def loops_of(ancestors) -> list:
    return [a for a in ancestors if isinstance(a, For)]


def contains(stmt: Stmt, node: Stmt) -> bool:
    """Whether ``node`` is ``stmt`` or inside it."""
    return find_path(stmt, lambda s: s is node)[0] is not None


class _Replace(IRMutator):
    def __init__(self, mapping: dict):
        self.mapping = mapping  # id(old) -> new (None removes)

    def visit_stmt(self, s):
        if s is not None and id(s) in self.mapping:
            return self.mapping[id(s)]
        if isinstance(s, Block):
            return s  # nothing to replace inside a leaf block
        return super().visit_stmt(s)


def replace(root: Stmt, mapping: dict) -> Stmt:
    """Replace statements (keys are ``id(old)``); a loop left empty disappears."""
    return _Replace(mapping).visit_stmt(root)


def scope_body(root: Stmt, loop: For | None) -> list:
    """The statements directly in ``loop``'s body, or at the root when ``loop`` is None."""
    if loop is None:
        return children(split_root(root)[1])
    return children(loop.body)


def insert_at(root: Stmt, loop: For | None, index: int, stmt: Stmt) -> Stmt:
    """Insert ``stmt`` as the ``index``-th statement of ``loop``'s body (or the root)."""
    kids = scope_body(root, loop)
    new_body = seq(kids[:index] + [stmt] + kids[index:])
    if loop is None:
        bufs, _ = split_root(root)
        return join_root(bufs, new_body)
    return replace(root, {id(loop): loop.with_(body=new_body)})


def child_index(kids: list, node: Stmt) -> int:
    """Index of the statement in ``kids`` that contains ``node`` (-1 if none)."""
    for i, k in enumerate(kids):
        if contains(k, node):
            return i
    return -1


# ------------------------------------------------------------------------ dataflow

def writers(root: Stmt, buffer, exclude=None) -> list:
    return [b for b in blocks_in(root) if b is not exclude and buffer in block_writes(b)]


def readers(root: Stmt, buffer, exclude=None) -> list:
    return [b for b in blocks_in(root) if b is not exclude and buffer in block_reads(b)]


def loop_ranges(root: Stmt) -> dict:
    """Every loop variable -> (0, extent - 1); loop variables are unique in a PrimFunc."""
    out = {}

    def walk(s):
        if isinstance(s, For):
            out[s.loop_var] = (0, s.extent - 1)
        if not isinstance(s, Block):
            for c in stmt_children(s):
                walk(c)

    walk(root)
    return out


def conjuncts(e: E.PrimExpr) -> list:
    """``a and b and c`` -> [a, b, c]; the constant True -> []."""
    if isinstance(e, E.And):
        return conjuncts(e.a) + conjuncts(e.b)
    if isinstance(e, E.IntImm) and e.value == 1:
        return []
    return [e]


def binds_reduce(block: Block, var: E.Var) -> E.Var | None:
    """The reduce iterator of ``block`` whose binding uses loop variable ``var``, if any."""
    for iv, b in zip(block.iter_vars, block.bindings, strict=True):
        if iv.kind == "reduce" and var in collect_vars(b):
            return iv.var
    return None


def unique_name(root: Stmt, params, base: str) -> str:
    """A block/buffer name not used yet in the program."""
    used = {b.name for b in blocks_in(root)} | {p.name for p in params}
    used |= {b.name for b in split_root(root)[0]}
    name, n = base, 0
    while name in used:
        n += 1
        name = f"{base}_{n}"
    return name


def fail(msg: str):
    raise ScheduleError(msg)
