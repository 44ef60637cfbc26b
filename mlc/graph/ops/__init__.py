"""One op registry: every fact about every graph op, in one place.

``OPS[name]`` is an :class:`OpDef` holding, for the op ``name`` (``node.op``):

* ``pattern``: how an output element depends on the input elements, TVM's
  ``OpPatternKind`` (see :mod:`mlc.graph.pattern`); fusion reads it;
* ``shape`` / ``dtype`` (``infer`` calls both): the output's shape and dtype from the
  inputs' shapes and dtypes and the attributes; tracing, ``GraphBuilder`` and passes use it;
* ``reference``: NDArrays in, NDArray out, what :func:`mlc.graph.interpret` runs;
* ``te``: the loop-level meaning, a ``te.compute`` over the te tensors of the inputs;
  what lowering runs;
* ``flops``; ``traces`` (the ``mlc.ops`` classes that trace to it) and ``attrs_of``
  (their attributes); optionally ``decompose`` (the op as other registered ops).

**Adding an op.** Write its ``mlc.ops`` class (``compute`` on NDArrays and, if training
needs it, ``gradient``), then one entry. An elementwise op needs only its scalar
expression::

    register(elementwise("erf", lambda x, attrs, dtype: te.erf(x[0]), (ops.Erf,),
                         make=lambda attrs: ops.Erf()))

Anything else gives its rules explicitly::

    register(OpDef("slice", "injective", shape=_slice_shape, reference=..., te=_slice_te,
                   traces=(ops.Slice,), attrs_of=lambda op: {"starts": ..., "stops": ...}))

Tracing, the interpreter, lowering, FLOP counting and fusion then know the op; nothing
else keeps a list of ops. The entries live in ``basic.py`` (the ops of units 08-11) and
``transformer.py`` (gather, cast, concat, slice, where, erf, gelu, softmax, layer norm,
mean), ``onnx_extra.py`` (the comparisons ``equal``, ``greater``, ``less`` that ONNX masks
need, and ``subtract``, ``minimum``), ``state.py`` (``cache_write``, the KV cache's
in-place update); a later unit adds its own file and imports it below.
"""

from __future__ import annotations

from ..ir import Graph, Node, rewrite
from .registry import (OPS, PATTERNS, RANK, OpDef, compute_of, elementwise, flops, infer,
                       infer_shape, opdef, reference, register, traced_op)
from . import basic, transformer  # noqa: F401  (the entries register themselves)
from . import onnx_extra  # noqa: F401,E402  (comparisons; subtract, minimum)
from . import state  # noqa: F401,E402  (cache_write: state updated in place)


def decompose(g: Graph, ops=None) -> Graph:
    """A new graph where each composite op (one with a ``decompose``; only those named in
    ``ops`` when given) is written as the primitive ops it is made of.

    Before / after, for a softmax over the last axis::

        %y = softmax(%x) {axis: 1}            float32[4, 8]

        %m = reduce_max(%x) {axes: (1,), keepdims: True}   float32[4, 1]
        %b = broadcast_to(%m) ...                          float32[4, 8]
        %e = exp(add(%x, negate(%b)))                      float32[4, 8]
        %s = broadcast_to(summation(%e) ...)               float32[4, 8]
        %y = divide(%e, %s)                                float32[4, 8]

    The arithmetic is the same (one ``exp`` per element): what changes is that fusion now
    decides how many kernels the pieces become.
    """
    wanted = None if ops is None else set(ops)

    def fn(n, ins):
        d = OPS.get(n.op)
        if d is None or d.decompose is None or (wanted is not None and n.op not in wanted):
            return None

        def op(name, *xs, **attrs):
            shape, dtype = infer(name, [x.shape for x in xs], [x.dtype for x in xs], attrs)
            return Node(name, xs, attrs, shape, dtype, f"{n.name}.{name}")
        out = d.decompose(op, n, ins)
        if out.shape != n.shape or out.dtype != n.dtype:
            raise AssertionError(f"decomposing {n.op} gave {out.signature()}, not "
                                 f"{n.signature()}")
        return out
    return rewrite(g, fn)


__all__ = ["OPS", "PATTERNS", "RANK", "OpDef", "compute_of", "decompose", "elementwise",
           "flops", "infer", "infer_shape", "opdef", "reference", "register", "traced_op"]
