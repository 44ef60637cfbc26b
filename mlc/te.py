"""The tensor-expression frontend: describe *what* to compute, get a loop program.

::

    A = te.placeholder((n, k), "float32", name="A")
    B = te.placeholder((k, m), "float32", name="B")
    r = te.reduce_axis((0, k), name="k")
    C = te.compute((n, m), lambda i, j: te.sum(A[i, r] * B[r, j], axis=r), name="C")
    func = te.create_prim_func([A, B, C])

``compute`` names its loops after the lambda's parameters. ``create_prim_func`` turns
each compute into a ``Block`` under its own loop nest: spatial iterators for the output
axes, reduce iterators for the reduction axes, and for a reduction an ``init`` that
stores the reducer's identity (0 for sum, -inf for max). Tensors that are neither inputs
nor outputs become intermediate buffers (``Allocate``). How the loops run is the
schedule's business (``tir.Schedule``), not this module's.
"""

from __future__ import annotations

import builtins
import inspect

from . import tir
from .tir import expr as E
from .tir.functor import replace_buffers
from .tir.stmt import Allocate, Block, Buffer, BufferStore, For, IterVar, PrimFunc, seq

# elementwise helpers, re-exported for writing compute bodies
exp, log, sqrt, tanh, sigmoid, erf, abs = tir.exp, tir.log, tir.sqrt, tir.tanh, tir.sigmoid, \
    tir.erf, tir.abs_  # noqa: A001
const, floordiv, floormod, max_value, min_value = tir.const, tir.floordiv, tir.floormod, \
    tir.max_value, tir.min_value
all, any = tir.all_, tir.any_  # noqa: A001


def if_then_else(cond, true_value, false_value) -> E.PrimExpr:
    """``true_value`` where ``cond`` holds, else ``false_value`` (only one side is read)."""
    return E.Select(cond, true_value, false_value)


def var(name: str = "v", dtype: str = "int32") -> E.Var:
    return E.Var(name, dtype)


class ReduceAxis(E.Var):
    """A reduction axis: a variable ranging over ``[dom_min, dom_min + extent)``."""

    __slots__ = ("dom_min", "extent")

    def __init__(self, dom_min: int, extent: int, name: str):
        super().__init__(name, "int32")
        self.dom_min, self.extent = int(dom_min), int(extent)


def reduce_axis(dom, name: str = "rv") -> ReduceAxis:
    """A reduction axis over ``dom = (lo, hi)`` (half-open)."""
    lo, hi = dom
    if int(hi) <= int(lo):
        raise ValueError(f"reduce_axis {name}: empty range ({lo}, {hi})")
    return ReduceAxis(lo, int(hi) - int(lo), name)


class Reduce(E.PrimExpr):
    """``combiner`` of ``source`` over ``axis``; only valid as a whole compute body."""

    __slots__ = ("combiner", "source", "axis", "identity")

    def __init__(self, combiner: str, source, axis):
        source = E.convert(source)
        self.combiner, self.source, self.axis, self.dtype = combiner, source, tuple(axis), \
            source.dtype
        ident = {"sum": lambda d: E.const(0, d), "max": E.min_value, "min": E.max_value}
        self.identity = ident[combiner](source.dtype)

    def combine(self, acc, x) -> E.PrimExpr:
        return {"sum": E.Add, "max": E.Max, "min": E.Min}[self.combiner](acc, x, acc.dtype)


def _reducer(name, elementwise):
    def f(expr, axis=None, *rest):
        if axis is not None and not isinstance(axis, (ReduceAxis, list, tuple)):
            return elementwise(expr, axis)  # te.max(a, b): elementwise form
        if axis is None:
            raise ValueError(f"te.{name} needs axis= (one reduce_axis or a list of them)")
        axes = [axis] if isinstance(axis, ReduceAxis) else list(axis)
        if not axes or not builtins_all(isinstance(a, ReduceAxis) for a in axes):
            raise TypeError(f"te.{name}: axis must be reduce_axis objects, got {axis!r}")
        return Reduce(name, expr, axes)

    f.__name__ = name
    f.__doc__ = (f"``te.{name}(expr, axis=r)`` reduces ``expr`` over reduce axes ``r``; "
                 f"``te.{name}(a, b)`` is the elementwise form.")
    return f


builtins_all = builtins.all
sum = _reducer("sum", lambda a, b: E.binary(E.Add, a, b))  # noqa: A001
max = _reducer("max", E.max_)  # noqa: A001
min = _reducer("min", E.min_)  # noqa: A001


class Tensor:
    """The result of ``placeholder`` or ``compute``: index it to read an element."""

    def __init__(self, buffer: Buffer, op):
        self.buffer, self.op = buffer, op

    shape = property(lambda self: self.buffer.shape)
    dtype = property(lambda self: self.buffer.dtype)
    name = property(lambda self: self.buffer.name)
    ndim = property(lambda self: self.buffer.ndim)

    def __getitem__(self, indices) -> E.BufferLoad:
        if not isinstance(indices, tuple):
            indices = (indices,)
        if len(indices) != self.ndim:
            raise IndexError(f"tensor {self.name} has {self.ndim} dims {self.shape}, "
                             f"indexed with {len(indices)} indices")
        load = E.BufferLoad(self.buffer, indices)
        _TENSORS[id(self.buffer)] = self  # so compute() can find the producer of a load
        return load

    def __repr__(self):
        return f"te.Tensor({self.name}, shape={self.shape}, dtype={self.dtype!r})"


_TENSORS: dict = {}


class PlaceholderOp:
    inputs: tuple = ()


class ComputeOp:
    def __init__(self, axis, body, inputs):
        self.axis, self.body, self.inputs = axis, body, inputs


def _shape(shape, what):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not builtins_all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"{what}: shape must be positive ints, got {shape}")
    return shape


def placeholder(shape, dtype: str = "float32", name: str = "placeholder") -> Tensor:
    """An input tensor of the given shape and dtype."""
    return Tensor(Buffer(name, _shape(shape, f"placeholder {name}"), dtype), PlaceholderOp())


def compute(shape, fcompute, name: str = "compute") -> Tensor:
    """The tensor whose element at ``idx`` is ``fcompute(*idx)``."""
    what = f"compute {name}" if name != "compute" else "te.compute (no name= given)"
    shape = _shape(shape, what)
    params = list(inspect.signature(fcompute).parameters.values())
    if params and params[0].kind == inspect.Parameter.VAR_POSITIONAL:
        names = [f"i{d}" for d in range(len(shape))]
    else:
        names = [p.name for p in params]
    if len(names) != len(shape):
        raise ValueError(f"{what}: shape {shape} has {len(shape)} dims but the "
                         f"function takes {len(names)} indices ({', '.join(names)})")
    axis = [E.Var(n) for n in names]
    body = fcompute(*axis)
    body = E.convert(body) if not isinstance(body, E.PrimExpr) else body
    src = body.source if isinstance(body, Reduce) else body
    _check_reduce_on_top(src, name)
    inputs, seen = [], set()

    def collect(n):
        if isinstance(n, E.BufferLoad) and id(n.buffer) not in seen:
            seen.add(id(n.buffer))
            inputs.append(_TENSORS[id(n.buffer)])

    tir.post_order_visit(src, collect)
    return Tensor(Buffer(name, shape, body.dtype), ComputeOp(axis, body, tuple(inputs)))


def _check_reduce_on_top(src, name):
    """``src`` (the body, or what a whole-body reduction reduces) holds no reduction."""
    what = f"compute {name}" if name != "compute" else "te.compute (no name= given)"
    def f(n):
        if isinstance(n, Reduce):
            raise ValueError(f"{what}: a reduction (te.sum/max/min) must be the "
                             "whole body, not part of a larger expression")
    tir.post_order_visit(src, f)


def _block_for(t: Tensor, block_name: str):
    """The loop nest and block computing ``t`` (fresh loop and iterator variables)."""
    op, buf = t.op, t.buffer
    body = op.body
    red = list(body.axis) if isinstance(body, Reduce) else []
    ivs = [IterVar(E.Var("v" + a.name), ext, "spatial")
           for a, ext in zip(op.axis, buf.shape, strict=True)]
    ivs += [IterVar(E.Var("v" + r.name), r.extent, "reduce", r.dom_min) for r in red]
    loops = [E.Var(a.name) for a in op.axis] + [E.Var(r.name) for r in red]
    vmap = {a: iv.var for a, iv in zip(list(op.axis) + red, ivs, strict=True)}
    out_idx = [iv.var for iv in ivs[:len(op.axis)]]
    if isinstance(body, Reduce):
        src = tir.substitute(body.source, vmap)
        init = BufferStore(buf, body.identity, out_idx)
        update = BufferStore(buf, body.combine(E.BufferLoad(buf, out_idx), src), out_idx)
        bindings = [lv if iv.dom_min == 0 else lv + iv.dom_min
                    for lv, iv in zip(loops, ivs, strict=True)]
        stmt = Block(block_name, ivs, bindings, update, init=init)
    else:
        stmt = Block(block_name, ivs, loops, BufferStore(buf, tir.substitute(body, vmap), out_idx))
    for lv, iv in reversed(list(zip(loops, ivs, strict=True))):
        stmt = For(lv, iv.extent, stmt)
    return stmt


def create_prim_func(args, name: str = "main") -> PrimFunc:
    """A PrimFunc whose parameters are ``args`` (inputs and outputs, in this order).

    Every compute reachable from the outputs gets its own loop nest, in dependence
    order; computes not in ``args`` get intermediate buffers.
    """
    args = list(args)
    for a in args:
        if not isinstance(a, Tensor):
            raise TypeError(f"create_prim_func takes te Tensors, got {type(a).__name__}")
    order, state = [], {}

    def visit(t: Tensor):
        s = state.get(id(t))
        if s == "done":
            return
        if s == "active":
            raise ValueError(f"compute {t.name} depends on itself")
        state[id(t)] = "active"
        for x in t.op.inputs:
            visit(x)
        state[id(t)] = "done"
        order.append(t)

    for a in args:
        visit(a)
    in_args = {id(a) for a in args}
    for t in order:
        if isinstance(t.op, PlaceholderOp) and id(t) not in in_args:
            raise ValueError(f"placeholder {t.name} is used but not passed to "
                             "create_prim_func")
    # block and buffer names must be unique: repeats become name_1, name_2, ...
    used, uname, renamed = set(), {}, {}
    for t in order:
        nm, n = t.name, 0
        while nm in used:
            n += 1
            nm = f"{t.name}_{n}"
        used.add(nm)
        uname[id(t)] = nm
        if nm != t.name:
            renamed[t.buffer] = t.buffer.with_(name=nm)
    body = seq([_block_for(t, uname[id(t)]) for t in order if isinstance(t.op, ComputeOp)])
    for t in reversed(order):
        if id(t) not in in_args:
            body = Allocate(t.buffer, body)
    params = [a.buffer for a in args]
    if renamed:
        body = replace_buffers(body, renamed)
        params = [renamed.get(b, b) for b in params]
    func = PrimFunc(params, body, name)
    tir.verify(func)
    return func
