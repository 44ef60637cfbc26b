"""The registry itself: :class:`OpDef`, the table :data:`OPS`, and the lookups on it.

Every other part of the compiler asks this table about an op and keeps no list of its
own: tracing (which ``mlc.ops`` class is which graph op, and its attributes), shape and
dtype inference (``GraphBuilder.op``, passes), the reference interpreter, lowering to
``te``, FLOP counting, fusion (the pattern) and grading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from ...ndarray.reduce import output_dtype
from ..lower_ops import load, te_shape
from ... import te

# TVM's OpPatternKind, in its order: a kind fuses into anything "above" it more easily.
PATTERNS = ("elemwise", "broadcast", "injective", "reduce", "out_elemwise_fusable", "opaque")
RANK = {p: i for i, p in enumerate(PATTERNS)}


def _no_attrs(op) -> dict:
    return {}


def _per_element(node) -> int:
    return node.size


def same_dtype(dtypes, attrs) -> str:
    """The inputs' common dtype (binary ops of ``mlc.ops`` never mix dtypes)."""
    if len(set(dtypes)) > 1:
        raise TypeError(f"inputs must have one dtype, got {', '.join(dtypes)}")
    return dtypes[0]


@dataclass(frozen=True)
class OpDef:
    """Every fact about one graph op.

    ``shape(shapes, attrs)`` and ``dtype(dtypes, attrs)`` give the output's shape and dtype
    (:meth:`infer` checks the arity and calls both); ``reference(attrs, *ndarrays)`` is
    what :func:`mlc.graph.interpret` runs; ``te(node, args, name)`` is the loop-level
    meaning lowering runs (``args`` are the te tensors of ``node.inputs``; None for an
    opaque op that runs as a kernel of its own); ``flops(node)``
    counts its arithmetic; ``traces`` are the ``mlc.ops`` classes that trace to this op and
    ``attrs_of(tensor_op)`` reads their attributes; ``decompose(op, node, ins)``, when
    given, writes the op as other registered ops (``op(name, *inputs, **attrs)`` makes a
    node; see :func:`mlc.graph.decompose`); ``doc`` says in a line what the op computes.
    ``extern(node, *arrays)`` (numpy in, numpy out), when given, is the library kernel a
    built graph calls for an opaque op instead of its reference (as a compiler calls
    cuBLAS; ``mlc.quant``'s integer ops use it). ``inplace``, when given, is the input
    whose buffer the output is (the op updates it in place in a built graph: a KV cache's
    write, :mod:`.state`); the executor keeps that input as state between calls.
    """

    name: str
    pattern: str
    shape: Callable
    reference: Callable
    te: Callable | None = None
    dtype: Callable = same_dtype
    arity: int | None = 1
    flops: Callable = _per_element
    traces: tuple = ()
    attrs_of: Callable = _no_attrs
    decompose: Callable | None = None
    extern: Callable | None = None
    inplace: int | None = None
    doc: str = field(default="", compare=False)

    def __post_init__(self):
        if self.pattern not in RANK:
            raise ValueError(f"op {self.name}: pattern {self.pattern!r} is not one of "
                             f"{PATTERNS}")

    def infer(self, shapes, dtypes, attrs) -> tuple[tuple, str]:
        """``(output shape, output dtype)`` of this op on inputs of ``shapes``/``dtypes``."""
        return infer_shape(self.name, shapes, attrs), str(self.dtype(list(dtypes), attrs))


OPS: dict[str, OpDef] = {}


def register(d: OpDef) -> OpDef:
    """Add ``d`` to :data:`OPS` (an op is registered once: a second entry is a bug)."""
    if d.name in OPS:
        raise ValueError(f"graph op {d.name!r} is already registered")
    OPS[d.name] = d
    _BY_CLASS.clear()
    return d


# Layers above the graph compiler add ops of their own (the quantizer's integer ops, the
# sparse layer's kernel) when they are imported. A graph read from disk may name one before
# its layer was imported in this process, so unknown names are looked up here: each entry is
# "module:function", imported and called at most once. This is data, as a package's entry
# points are; the graph compiler itself never imports these layers.
PROVIDERS = {
    **dict.fromkeys(("quantize", "dequantize", "qlinear", "qadd", "qmatmul", "wmatmul",
                     "observe"), "mlc.quant.graph_ops:register_all"),
    "sparse_matmul": "mlc.compress.sparse_layers:_register_graph_op",
}


def known(op: str) -> bool:
    """Whether ``op`` is registered, importing the layer that provides it if need be."""
    if op not in OPS and op in PROVIDERS:
        import importlib

        module, func = PROVIDERS[op].split(":")
        getattr(importlib.import_module(module), func)()
    return op in OPS


def opdef(op: str) -> OpDef:
    """The :class:`OpDef` of ``op``; a clear error for an op the graph does not know."""
    try:
        if known(op):
            return OPS[op]
        raise KeyError(op)
    except KeyError:
        raise ValueError(f"unknown graph op {op!r}; known ops: {', '.join(sorted(OPS))}") \
            from None


def infer(op: str, shapes, dtypes, attrs) -> tuple[tuple, str]:
    """``(shape, dtype)`` of ``op`` applied to inputs of ``shapes`` and ``dtypes``."""
    return opdef(op).infer(shapes, dtypes, attrs)


def infer_shape(op: str, shapes, attrs) -> tuple:
    """The output shape alone (for re-inferring shapes whose dtypes are known, e.g. at
    another batch size)."""
    d = opdef(op)
    if d.arity is not None and len(shapes) != d.arity:
        raise ValueError(f"{op} takes {d.arity} input(s), got {len(shapes)}")
    return tuple(int(s) for s in d.shape([tuple(int(n) for n in s) for s in shapes], attrs))


def reference(op: str, attrs: dict, *arrays):
    """Run ``op`` on NDArrays with its reference implementation."""
    return opdef(op).reference(attrs, *arrays)


def compute_of(node, args, name):
    """The te tensor computing ``node`` from the te tensors ``args`` of its inputs."""
    d = opdef(node.op)
    if d.te is None:
        raise ValueError(f"{node.op} has no te lowering: a built graph runs it as its own "
                         f"kernel ({'extern' if d.extern else 'reference'}), outside any "
                         f"fused group")
    return d.te(node, args, name)


def flops(node) -> int:
    """Floating-point operations of one application of ``node`` (0 for leaves)."""
    return 0 if node.is_leaf else int(opdef(node.op).flops(node))


_BY_CLASS: dict = {}


def traced_op(tensor_op) -> tuple[str, dict] | None:
    """``(graph op name, attrs)`` for an ``mlc.ops`` op object, None when none traces it.

    A subclass traces as its base (``Transpose`` is a ``Permute``)."""
    if not _BY_CLASS:
        _BY_CLASS.update({c: d for d in OPS.values() for c in d.traces})
    for cls in type(tensor_op).__mro__:
        d = _BY_CLASS.get(cls)
        if d is not None:
            return d.name, d.attrs_of(tensor_op)
    return None


# -- building blocks for entries ---------------------------------------------------------

def from_op(make: Callable) -> Callable:
    """A reference from an ``mlc.ops`` class: ``make(attrs)`` builds the op, whose
    ``compute`` (NDArrays in, NDArray out) is the reference."""
    return lambda attrs, *arrays: make(attrs).compute(*arrays)


def first_shape(shapes, attrs):
    return shapes[0]


def same_shape(shapes, attrs):
    if len(set(shapes)) != 1:
        raise ValueError(f"elementwise op needs equal shapes, got {shapes}")
    return shapes[0]


def attr_shape(shapes, attrs):
    return tuple(attrs["shape"])


def reduced_shape(shapes, attrs):
    axes, keep = attrs["axes"], attrs.get("keepdims", False)
    return tuple(1 if i in axes else n for i, n in enumerate(shapes[0])
                 if keep or i not in axes)


def sum_dtype(dtypes, attrs):
    return output_dtype("sum", dtypes[0])


def elementwise(name: str, expr: Callable, traces=(), arity: int = 1, make=None,
                attrs_of=_no_attrs, flops: int = 1, reference=None, dtype=same_dtype,
                doc: str = "") -> OpDef:
    """An elementwise op from its scalar expression ``expr(xs, attrs, dtype)`` (te
    expressions in, one out): the te compute, the shape rule (equal shapes) and the FLOP
    count (``flops`` per element) follow. The reference is ``make(attrs).compute`` (an
    ``mlc.ops`` class) unless ``reference`` is given."""
    if reference is None:
        reference = from_op(make)

    def lower(node, args, out_name):
        def f(*i):
            idx = i if node.shape else ()
            return expr([load(t, x, idx) for t, x in zip(args, node.inputs, strict=True)],
                        node.attrs, node.dtype)
        return te.compute(te_shape(node.shape), f, name=out_name)

    return OpDef(name, "elemwise", same_shape if arity > 1 else first_shape, reference,
                 lower, dtype=dtype, arity=arity, flops=lambda n: flops * n.size,
                 traces=tuple(traces), attrs_of=attrs_of, doc=doc)


def row_reduce_flops(per_element: int) -> Callable:
    return lambda node: per_element * math.prod(node.inputs[0].shape)
