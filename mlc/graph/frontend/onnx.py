"""``graph.from_onnx``: an ONNX model as an mlc graph.

::

    from mlc import graph
    g = graph.from_onnx("model.onnx")         # or a ModelProto, or the file's bytes
    print(g)
    exe = graph.build(g, target="cpu")

How it works, the way TVM's ``relax.frontend.onnx`` and tinygrad's ONNX runner do it:

* **A converter table keyed by op type**, each entry a list of ``(since_opset, fn)``: the
  converter used is the newest one whose opset is <= the model's (``Reduce*`` took its
  ``axes`` as an attribute before opset 18 and as an input after, ``Softmax`` changed its
  meaning at 13, ...). Models older than opset 13 are first brought to 13 with
  ``onnx.version_converter``. An op with no converter raises :class:`UnsupportedOpError`
  naming the op type, the node and the opset; an attribute value a converter does not
  handle raises :class:`OnnxImportError` naming the attribute and the node.
* **Static values are folded at import.** Every value is either a graph node or a numpy
  array known now (initializers, ``Constant``, ``Shape`` of a static shape). A node whose
  inputs are all known is evaluated at once with ``onnx.reference`` (one node at a time),
  so the ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` chains that exporters
  write become one constant shape, and ``Reshape`` receives plain numbers.
* **Every converted value is checked against ``onnx.shape_inference``** (where ONNX
  pins its shape down): a converter that got a shape wrong fails at its own node, not
  later, inside codegen.
* **Broadcasting is made explicit**: ONNX's ``Add`` of ``(4, 1, 8)`` and ``(3, 1)`` becomes
  ``reshape`` + ``broadcast_to`` of each operand to ``(4, 3, 8)``, then mlc's ``add`` of
  equal shapes, which is what mlc's elementwise ops (and their loop nests) require.
* **NCHW convolution and pooling by layout transposes** around mlc's NHWC ``im2col`` (see
  ``onnx_nn``): a ``permute`` in and one out per conv. A layout pass that moves the whole
  graph to NHWC would save those copies, but the transposes are injective ops that fusion
  folds into the neighbouring kernels' loads, and keeping ONNX's layout makes every
  imported node's shape the one a student sees in Netron.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, GraphBuilder, Node
from ..passes import eliminate_dead_code
from .onnx_load import (MAX_TENSOR_BYTES, OnnxImportError, _onnx, dtype_of, load_model,
                        tensor_to_numpy)

MIN_OPSET = 13


class StaticInputRequired(OnnxImportError):
    """A graph input is used where a value known at import is needed (a shape, axes):
    ``from_onnx(model, bind={name: value})`` specialises the graph to that value."""

    def __init__(self, name: str, msg: str):
        self.name = name
        super().__init__(f"{msg}; it is the graph input {name!r}: bind it with "
                         f"from_onnx(..., bind={{{name!r}: value}})")


class UnsupportedOpError(OnnxImportError):
    """An ONNX op with no converter: names the op type, the node and the opset."""

    def __init__(self, op_type: str, node_name: str, opset: int, detail: str = ""):
        self.op_type, self.node_name, self.opset = op_type, node_name, opset
        super().__init__(f"ONNX op {op_type!r} (node {node_name!r}, opset {opset}) is not "
                         f"supported{': ' + detail if detail else ''}; supported ops: "
                         f"{', '.join(sorted(CONVERTERS))}")


CONVERTERS: dict[str, list[tuple[int, object]]] = {}


def converter(*op_types: str, since: int = 1):
    """Register ``fn(ctx)`` as the converter of ``op_types`` from opset ``since`` on."""
    def wrap(fn):
        for t in op_types:
            CONVERTERS.setdefault(t, []).append((since, fn))
            CONVERTERS[t].sort(key=lambda e: e[0])
        return fn
    return wrap


def find_converter(op_type: str, opset: int, node_name: str = "?"):
    best = None
    for since, fn in CONVERTERS.get(op_type, ()):
        if since <= opset:
            best = fn
    if best is None:
        raise UnsupportedOpError(op_type, node_name, opset)
    return best


class Ctx:
    """What a converter sees of one ONNX node: its inputs (graph nodes or numpy arrays
    known at import), its attributes, and a builder to emit mlc ops with."""

    def __init__(self, imp: "Importer", node):
        self.imp, self.node, self.b, self.opset = imp, node, imp.b, imp.opset
        self.name = node.name or (node.output[0] if node.output else node.op_type)
        onnx = _onnx()
        self.attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        self.values = [imp.env[x] if x else None for x in node.input]
        self.made: set = set()

    # -- inputs ---------------------------------------------------------------------------
    def __len__(self):
        return len(self.values)

    def has(self, i: int) -> bool:
        return i < len(self.values) and self.values[i] is not None

    def is_static(self, i: int) -> bool:
        return self.has(i) and isinstance(self.values[i], np.ndarray)

    def static(self, i: int, what: str = "") -> np.ndarray:
        """Input ``i`` as a numpy array; an error if it is computed at run time."""
        if not self.is_static(i):
            err = self.error(f"input {i} ({what or self.node.input[i]!r}) must be a constant "
                             f"known at import (a static shape), but it is computed at run "
                             f"time")
            if self.node.input[i] in self.imp.graph_inputs:
                raise StaticInputRequired(self.node.input[i], str(err))
            raise err
        return self.values[i]

    def input(self, i: int) -> Node:
        """Input ``i`` as a graph node (a known array becomes a constant node)."""
        v = self.values[i]
        return self.const(v, self.node.input[i]) if isinstance(v, np.ndarray) else v

    def shape(self, i: int) -> tuple:
        v = self.values[i]
        return tuple(v.shape)

    def dtype(self, i: int) -> str:
        v = self.values[i]
        return str(v.dtype)

    def attr(self, name: str, default=None):
        v = self.attrs.get(name, default)
        return v.decode() if isinstance(v, bytes) else v

    # -- output -------------------------------------------------------------------------
    def op(self, op: str, *inputs: Node, **attrs) -> Node:
        if op == "permute" and inputs[0].op == "permute":
            # NCHW -> NHWC right after NHWC -> NCHW (pool after conv): the two cancel
            inner = inputs[0].attrs["axes"]
            if tuple(inner[a] for a in attrs["axes"]) == tuple(range(len(inner))):
                return inputs[0].inputs[0]
        out = self.b.op(op, *inputs, name=f"{self.name}.{op}", **attrs)
        self.made.add(out)
        return out

    def const(self, value, name: str | None = None) -> Node:
        arr = np.asarray(value)
        return self.b.constant(arr, name=name or f"{self.name}_c", dtype=str(arr.dtype))

    def error(self, msg: str) -> OnnxImportError:
        return OnnxImportError(f"ONNX node {self.name!r} ({self.node.op_type}, opset "
                               f"{self.opset}): {msg}")

    def unsupported(self, attr: str, value, why: str = "") -> OnnxImportError:
        return self.error(f"attribute {attr}={value!r} is not supported"
                          f"{' (' + why + ')' if why else ''}")


class Importer:
    def __init__(self, model, base_dir, input_shapes, bind, batch=None):
        onnx = _onnx()
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                         default=MIN_OPSET)
        self.model, self.base_dir = model, base_dir
        self.input_shapes = dict(input_shapes or {})
        self.batch = batch
        self.bind = dict(bind or {})
        self.graph_inputs: set = set()
        self.b = GraphBuilder()
        self.env: dict = {}
        self.onnx = onnx
        self.inferred = {} if (bind or batch is not None or input_shapes) else \
            _inferred_shapes(model)

    def run(self) -> Graph:
        g = self.model.graph
        for t in g.initializer:
            self.env[t.name] = tensor_to_numpy(t, "initializer", self.base_dir)
        for t in g.sparse_initializer:
            raise OnnxImportError(f"sparse initializer {t.values.name!r} is not supported")
        for vi in g.input:
            if vi.name in self.bind:
                dtype = dtype_of(vi.type.tensor_type.elem_type, f"graph input {vi.name!r}")
                self.env[vi.name] = np.asarray(self.bind[vi.name], dtype=dtype)
            elif vi.name not in self.env:
                self.env[vi.name] = self._input(vi)
                self.graph_inputs.add(vi.name)
        for node in g.node:
            self._convert(node)
        outs = []
        for vi in g.output:
            if vi.name not in self.env:
                raise OnnxImportError(f"graph output {vi.name!r} is produced by no node")
            v = self.env[vi.name]
            outs.append(self.b.constant(v, name=vi.name, dtype=str(v.dtype))
                        if isinstance(v, np.ndarray) else v)
        # a converter may leave a node unused (a transpose cancelled by the next one)
        return eliminate_dead_code(self.b.graph(*outs))

    def _input(self, vi) -> Node:
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            raise OnnxImportError(f"graph input {vi.name!r}: only tensor inputs are supported")
        dtype = dtype_of(tt.elem_type, f"graph input {vi.name!r}")
        if vi.name in self.input_shapes:
            shape = tuple(int(s) for s in self.input_shapes[vi.name])
        else:
            shape = []
            for k, d in enumerate(tt.shape.dim):
                if not d.HasField("dim_value") and k == 0 and self.batch is not None:
                    shape.append(self.batch)        # a dynamic leading axis: the batch
                    continue
                if not d.HasField("dim_value"):
                    raise OnnxImportError(
                        f"graph input {vi.name!r}: axis {k} is symbolic ({d.dim_param or '?'})"
                        f"; give its size with from_onnx(..., input_shapes={{{vi.name!r}: "
                        f"(...)}})")
                shape.append(d.dim_value)
        return self.b.input(tuple(shape), dtype=dtype, name=vi.name)

    def _convert(self, node) -> None:
        where = node.name or (node.output[0] if node.output else node.op_type)
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(f"{node.domain}.{node.op_type}", where, self.opset)
        fn = find_converter(node.op_type, self.opset, where)
        for x in node.input:
            if x and x not in self.env:
                raise OnnxImportError(f"ONNX node {where!r} ({node.op_type}) reads {x!r}, "
                                      f"which no earlier node or initializer produces")
        ctx = Ctx(self, node)
        known = [v for v in ctx.values if v is not None]
        if known and all(isinstance(v, np.ndarray) for v in known) and \
                node.op_type not in NO_FOLD:
            outs = self._fold(node, ctx.values)
        else:
            outs = fn(ctx)
        if not isinstance(outs, (tuple, list)):
            outs = (outs,)
        for name, v in zip(node.output, outs, strict=False):
            if name:
                if isinstance(v, Node) and v in ctx.made:
                    v.name = name       # the node computing an ONNX value keeps its name
                self._check_shape(node, name, v)
                self.env[name] = v

    def _check_shape(self, node, name, v) -> None:
        """Each converted value against ONNX's own shape inference (where it gives a
        static shape): a converter that got a shape wrong is caught at its node."""
        nbytes = int(np.prod(v.shape, dtype=object)) * np.dtype(v.dtype).itemsize
        if nbytes > MAX_TENSOR_BYTES:
            raise OnnxImportError(f"ONNX node {node.name or name!r} ({node.op_type}): value "
                                  f"{name!r} of shape {tuple(v.shape)} would take {nbytes} "
                                  f"bytes, more than the {MAX_TENSOR_BYTES} allowed")
        want = self.inferred.get(name)
        if want is None or tuple(v.shape) == want:
            return
        raise OnnxImportError(f"ONNX node {node.name or name!r} ({node.op_type}): the "
                              f"converted value {name!r} has shape {tuple(v.shape)}, ONNX's "
                              f"shape inference says {want}")

    def _fold(self, node, values):
        """Evaluate a node whose inputs are all known now (shape arithmetic, a weight's
        transpose) with ONNX's own reference implementation."""
        onnx = self.onnx
        from onnx.reference import ReferenceEvaluator

        for out in node.output:      # a hostile Expand of a constant must not fold to 4 TiB
            shape = self.inferred.get(out)
            if shape is not None and int(np.prod(shape, dtype=object)) * 8 > MAX_TENSOR_BYTES:
                raise OnnxImportError(f"ONNX node {node.name or out!r} ({node.op_type}): "
                                      f"folding it would make {out!r} of shape {shape}, "
                                      f"larger than the {MAX_TENSOR_BYTES} bytes allowed")
        names = [f"in{i}" if x else "" for i, x in enumerate(node.input)]
        n2 = onnx.helper.make_node(node.op_type, names, list(node.output), domain=node.domain)
        n2.attribute.extend(node.attribute)
        feeds = {f"in{i}": v for i, v in enumerate(values) if v is not None}
        try:
            outs = ReferenceEvaluator(n2).run(None, feeds)
        except Exception as e:
            raise OnnxImportError(f"ONNX node {node.name or node.output[0]!r} "
                                  f"({node.op_type}): folding its constant inputs failed: "
                                  f"{e}") from None
        return [np.asarray(o) if o.dtype != np.bool_ else np.asarray(o, dtype=np.uint8)
                for o in outs]


# Ops whose converter already returns a known array (or that must not be folded).
NO_FOLD = {"Constant", "Shape", "Identity"}


def _embed_checked(model, base_dir):
    """Read every initializer through the size and location checks (before the checker or
    anything else touches their data), and return a copy of the model that holds them
    inline, so the checker and the version converter never open a side file."""
    onnx = _onnx()
    external = [t for t in model.graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL]
    for t in model.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            tensor_to_numpy(t, "initializer", base_dir)
    if not external:
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for t in copy.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            arr = tensor_to_numpy(t, "initializer", base_dir)
            t.ClearField("external_data")
            t.data_location = onnx.TensorProto.DEFAULT
            t.raw_data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
    return copy


def _inferred_shapes(model) -> dict:
    """``{value name: static shape}`` from ``onnx.shape_inference`` (values whose shape it
    cannot pin down, or a model it cannot infer, give no entry: nothing to check)."""
    onnx = _onnx()
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001  (inference is a cross-check, not a requirement)
        return {}
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            out[vi.name] = tuple(int(d.dim_value) for d in tt.shape.dim)
    return out


def _prepare(model, base_dir):
    onnx = _onnx()
    model = _embed_checked(model, base_dir)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                default=MIN_OPSET)
    if opset < MIN_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, MIN_OPSET)
        except Exception as e:
            raise OnnxImportError(f"model has opset {opset}; converting it to opset "
                                  f"{MIN_OPSET} failed: {e}") from None
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid"
        raise OnnxImportError(f"the ONNX checker rejects the model: {first}") from None
    return model


def _dynamic_batch(model, input_shapes, bind) -> bool:
    """Whether some graph input has a symbolic leading axis that nothing sizes."""
    inits = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits or vi.name in (input_shapes or {}) or vi.name in (bind or {}):
            continue
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            return True
    return False


def from_onnx(model_or_path, input_shapes: dict | None = None, bind: dict | None = None,
              batch: int = 2) -> Graph:
    """Import an ONNX model (a path, the file's bytes, or an ``onnx.ModelProto``).

    A symbolic *leading* axis (an exporter's dynamic batch axis, ``"N"``) becomes mlc's
    batch symbol: the model is imported at ``batch`` and at ``batch + 1`` and the two
    graphs compared, as :func:`~mlc.graph.trace` does (:mod:`mlc.graph.symbolic`), so
    the graph runs at any batch (``g.batch_reason`` says why not, when it cannot).
    ``input_shapes`` gives sizes for other symbolic axes (``{"x": (4, 128)}``);
    ``bind`` gives values to graph inputs, which then become constants (a model that
    takes its target shape as an input must be specialised to one, as a compiler of
    static shapes does: :class:`StaticInputRequired` names such an input).
    ONNX ``bool`` tensors are carried as ``uint8`` (0/1). Raises :class:`UnsupportedOpError`
    for an op it cannot convert and :class:`OnnxImportError` for anything else wrong with
    the model, naming the node or tensor.
    """
    from . import onnx_math, onnx_nn, onnx_shape  # noqa: F401  (they fill CONVERTERS)

    model, base = load_model(model_or_path)
    model = _prepare(model, base)
    if not _dynamic_batch(model, input_shapes, bind):
        return Importer(model, base, input_shapes, bind).run()
    from ..symbolic import with_batch_axis

    g1 = Importer(model, base, input_shapes, bind, batch).run()
    g2 = Importer(model, base, input_shapes, bind, batch + 1).run()
    return with_batch_axis(g1, g2)
