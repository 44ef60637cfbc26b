"""Tracing: run a model once on example tensors and keep the graph the tape recorded.

Every ``mlc.Tensor`` made by an op remembers the op (``t.op``) and its inputs
(``t.inputs``): the autodiff tape is already a dataflow graph. :func:`trace` runs one
forward pass, walks the tape back from the outputs and writes each tensor as a
:class:`~mlc.graph.ir.Node`: a leaf that is an example input becomes an ``input`` node,
any other leaf (a parameter, a buffer such as BatchNorm's running mean, a constant made
inside ``forward``) a ``constant`` node with its value, and every op tensor an op node::

    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    g = graph.trace(model, mlc.Tensor(np.zeros((8, 64), "float32")))
    print(g)

This is *tracing*, as in ``torch.jit.trace`` and ``torch.fx``'s concrete mode: Python
control flow is run, not recorded, so the graph is the one path taken for these example
shapes. Modules run in eval mode (dropout is the identity, batch norm uses its running
statistics), and the model is put back in the mode it was in.

Two ops are rewritten on the way: ``logsumexp`` (one op on the tape) becomes the
primitive ops that compute it stably (``reduce_max``, subtract, ``exp``, ``summation``,
``log``, add), so that fusion sees its reductions; ``BatchNorm1d`` in eval mode is kept
as one ``batch_norm`` node so that :func:`~mlc.graph.passes.fold_batch_norm` can fold it
into the layer before it.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .. import ops
from ..autograd import Tensor, TensorTuple, enable_grad
from .ir import Graph, Node
from .ops import infer, traced_op
from .ops.basic import BatchNormEval


class TraceError(TypeError):
    """An op on the tape that the graph cannot represent."""


def _attrs_of(op) -> tuple[str, dict]:
    """The graph op (name, attributes) of an ``mlc.ops`` op object, from the registry."""
    found = traced_op(op)
    if found is None:
        raise TraceError(f"cannot trace op {type(op).__name__} ({op!r}): mlc.graph has no "
                         "node for it (tuples, stack and split are not supported)")
    return found


def _bn_forward(module, x):
    if x.ndim != 2 or x.shape[1] != module.dim:
        raise ValueError(f"BatchNorm1d({module.dim}) expects (batch, {module.dim}), got "
                         f"shape {x.shape}")
    return BatchNormEval(module.eps)(x, module.running_mean, module.running_var,
                                      module.weight, module.bias)


def _bn_hook(module, args, out):
    """Forward hook: BatchNorm1d in eval mode as one ``batch_norm`` node."""
    return _bn_forward(module, args[0])


@contextlib.contextmanager
def _tracing_hooks(model, pnames):
    """Forward hooks for one trace: BatchNorm1d kept whole, and every module checked to
    compute on the tape (:func:`_check_on_tape`), so a refusal names the module."""
    from ..nn import BatchNorm1d, Module

    handles = []
    if isinstance(model, Module):
        for name, m in model.named_modules():
            if isinstance(m, BatchNorm1d):
                handles.append(m.register_forward_hook(_bn_hook))
            where = f"module {name or '(the model)'} ({type(m).__name__})"
            handles.append(m.register_forward_hook(
                lambda m, args, out, where=where: _check_on_tape(where, args, out, pnames)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _check_on_tape(where, args, out, pnames) -> None:
    """Refuse an output computed off the tape from traced inputs.

    A forward pass that takes its input's values into numpy (``x.numpy()``) and wraps
    the result into a new Tensor leaves a leaf on the tape: traced, it would be a
    constant, and the compiled graph would return the example's answer for every input.
    Such an output does not reach the call's traced arguments on the tape and does
    reach a leaf made during the call (neither a parameter, a buffer nor an input).
    An output that only depends on parameters (a positional embedding) is fine.
    """
    ins = {id(a) for a in args if isinstance(a, Tensor) and a.requires_grad}
    outs = out if isinstance(out, (tuple, list)) else [out]
    if not ins:
        return
    for o in outs:
        if not isinstance(o, Tensor):
            continue
        leaves = [t for t in _tape_order([o]) if id(t) in ins or not t.inputs]
        if any(id(t) in ins for t in leaves):
            continue
        if any(id(t) not in pnames for t in leaves):
            raise TraceError(
                f"cannot trace {where}: its output of shape {o.shape} does not depend on "
                "its input on the tape; it is computed outside mlc's ops (numpy, a custom "
                "kernel) and wrapped into a new Tensor, which a graph could only keep as "
                "a constant. Write its forward with mlc.ops or as an op that graph.OPS "
                "knows (compress.SparseLinear's kernel is an extern op), or trace the model "
                "it was made from; a value that depends only on shapes (positions, a "
                "causal mask) can be a buffer (register_buffer) or an argument")


def _as_input(x) -> Tensor:
    data = x.realize_cached_data() if isinstance(x, Tensor) else x
    if not isinstance(x, Tensor) and not hasattr(data, "numpy"):
        data = np.asarray(data)
        if data.dtype == np.float64:
            data = data.astype(np.float32)
        # integer arrays (token ids) keep their dtype: Tensor() would make them float32
        return Tensor(data, dtype=str(data.dtype), requires_grad=True)
    return Tensor(data, requires_grad=True)


def _tape_order(outputs):
    """The tensors the outputs depend on, each after its inputs (iterative DFS)."""
    order, done, stack = [], set(), [(t, False) for t in reversed(outputs)]
    while stack:
        t, expanded = stack.pop()
        if id(t) in done:
            continue
        if expanded:
            done.add(id(t))
            order.append(t)
            continue
        stack.append((t, True))
        for x in reversed(t.inputs):
            if id(x) not in done:
                stack.append((x, False))
    return order


def trace(model, *example_inputs, input_names=None, batch_axis: bool = True) -> Graph:
    """The :class:`~mlc.graph.ir.Graph` of one forward pass of ``model``.

    ``model`` is an ``nn.Module`` or any callable taking and returning ``mlc.Tensor`` s
    (one, or a tuple/list); ``example_inputs`` are Tensors or numpy arrays. The graph's
    inputs are named ``x`` (one input) or ``x0, x1, ...`` unless ``input_names`` says.
    With ``batch_axis`` (the default) the leading axis of the inputs is the batch axis, a
    symbol ``N`` in the graph's shapes (:mod:`mlc.graph.symbolic`): the model is run a
    second time at batch ``N + 1`` to tell which extents follow the batch.
    """
    from ..nn import Module

    if not example_inputs:
        raise ValueError("trace needs at least one example input")
    xs = [_as_input(x) for x in example_inputs]
    names = list(input_names) if input_names is not None else (
        ["x"] if len(xs) == 1 else [f"x{i}" for i in range(len(xs))])
    if len(names) != len(xs):
        raise ValueError(f"input_names has {len(names)} names for {len(xs)} inputs")
    pnames: dict = {}
    was_training = None
    if isinstance(model, Module):
        was_training = model.training
        for n, t in model.named_parameters() + model.named_buffers():
            pnames.setdefault(id(t), n)
        model.eval()
    try:
        with enable_grad(), _tracing_hooks(model, pnames):
            out = model(*xs)
    finally:
        if was_training is not None:
            model.train(was_training)
    single = isinstance(out, Tensor)
    outs = [out] if single else list(out) if isinstance(out, (tuple, list)) else None
    if not outs or not all(isinstance(t, Tensor) for t in outs):
        raise TraceError(f"the model must return a Tensor or a tuple of Tensors, got "
                         f"{type(out).__name__}")
    _check_on_tape("the model", xs, outs, pnames)
    g = _to_graph(xs, names, outs, pnames)
    return _find_batch_axis(model, xs, names, g) if batch_axis else g


def _find_batch_axis(model, xs, names, g) -> Graph:
    """``g`` with its batch axis (see :func:`mlc.graph.symbolic.with_batch_axis`): the
    model traced again on the example inputs' rows repeated to one more row."""
    from .symbolic import with_batch_axis

    lead = {x.shape[0] if x.shape else None for x in xs}
    if len(lead) != 1 or None in lead:
        g.batch_reason = ("no batch axis: the inputs do not share a leading axis "
                          f"({', '.join(str(x.shape) for x in xs)})")
        return g
    b = lead.pop()
    rows = np.arange(b + 1) % b
    more = [np.take(x.numpy(), rows, axis=0) for x in xs]
    try:
        g2 = trace(model, *more, input_names=names, batch_axis=False)
    except (ValueError, TypeError, IndexError) as e:
        g.batch_reason = f"no batch axis: the model fails at batch {b + 1} ({e})"
        return g
    return with_batch_axis(g, g2)


def _to_graph(xs, names, outs, pnames) -> Graph:
    node_of: dict = {}
    nodes, inputs = [], []
    for x, nm in zip(xs, names, strict=True):
        n = Node("input", (), {}, x.shape, x.dtype, nm)
        node_of[id(x)] = n
        nodes.append(n)
        inputs.append(n)
    for t in _tape_order(outs):
        if id(t) in node_of:
            continue
        if isinstance(t, TensorTuple):
            raise TraceError(f"cannot trace op {type(t.op).__name__}: it makes a tuple of "
                             "tensors, which mlc.graph does not represent")
        if t.op is None:
            n = Node("constant", (), {}, t.shape, t.dtype, pnames.get(id(t), "const"),
                     t.numpy().copy())
            nodes.append(n)
        else:
            ins = [node_of[id(x)] for x in t.inputs]
            if type(t.op) is ops.LogSumExp:
                n = _logsumexp(nodes, ins[0], t.op)
            else:
                op, attrs = _attrs_of(t.op)
                shape, dtype = infer(op, [x.shape for x in ins], [x.dtype for x in ins], attrs)
                n = Node(op, ins, attrs, shape, dtype, op)
                nodes.append(n)
            if n.shape != tuple(t.shape) or n.dtype != t.dtype:
                raise AssertionError(f"traced {n.op} is {n.signature()}, the tape has "
                                     f"{t.dtype}{list(t.shape)}")
        node_of[id(t)] = n
    return Graph(nodes, inputs, [node_of[id(t)] for t in outs])


def _logsumexp(nodes, z, op) -> Node:
    """``max + log(sum(exp(z - max)))`` as primitive nodes (appended to ``nodes``)."""
    axes = tuple(op.axes)

    def add(o, *ins, **attrs):
        shape, dtype = infer(o, [x.shape for x in ins], [x.dtype for x in ins], attrs)
        n = Node(o, ins, attrs, shape, dtype, o)
        nodes.append(n)
        return n

    m = add("reduce_max", z, axes=axes, keepdims=True)
    mb = add("broadcast_to", m, shape=z.shape) if m.shape != z.shape else m
    e = add("exp", add("add", z, add("negate", mb)))
    out = add("add", add("log", add("summation", e, axes=axes, keepdims=True)), m)
    if not op.keepdims:
        kept = tuple(n for i, n in enumerate(z.shape) if i not in axes)
        out = add("reshape", out, shape=kept)
    return out
