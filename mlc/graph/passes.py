"""Graph passes: functions from a graph to a new, equivalent graph.

Each pass is *pure*: it returns a new :class:`~mlc.graph.ir.Graph` and leaves its
argument alone, so passes compose like functions and a pass manager can show what each
one changed. The four classics, each the graph-level cousin of a compiler textbook
optimisation:

* :func:`fold_constants` evaluates, once, every op whose inputs are all constants;
* :func:`eliminate_dead_code` drops nodes no output depends on;
* :func:`eliminate_common_subexpressions` merges nodes that compute the same thing;
* :func:`fold_batch_norm` folds an inference-mode batch norm into the weights and bias
  of the Linear/Conv before it (one affine map composed into another).

:class:`PassManager` (or :func:`run_passes`) runs a list of them and reports each one.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .. import ndarray as nd
from .ir import Graph, Node, rewrite
from .ops import reference


def fold_constants(g: Graph) -> Graph:
    """Replace every op node whose inputs are all constants by a constant.

    Before and after (the weight's reshape, done at every call, now done once)::

        %w = constant                           %w.reshape = constant   # float32[9, 8]
        %r = reshape(%w, shape=(9, 8))    ->    %mm = matmul(%x, %w.reshape)
        %mm = matmul(%x, %r)

    The value is computed with the op's reference (``mlc.ops``) implementation. A folded
    node is named after its constant input when it has one (``w.reshape``). An op whose
    result is bigger than its inputs is left alone:
    folding ``broadcast_to(bias)`` would replace a vector by a whole matrix of copies.
    """
    def fold(n: Node, ins):
        if n.is_leaf or not ins or not all(x.op == "constant" for x in ins):
            return None
        if n.size > sum(x.size for x in ins):
            return None  # folding broadcast_to would store a big array instead of a small one
        dev = nd.cpu_numpy()
        args = [nd.array(x.value, dtype=x.dtype, device=dev) for x in ins]
        value = np.array(reference(n.op, n.attrs, *args).numpy(), dtype=n.dtype)
        name = f"{ins[0].name}.{n.op}" if len(ins) == 1 else n.name
        return Node("constant", (), {}, value.shape, n.dtype, name, value)

    return rewrite(g, fold)


def eliminate_dead_code(g: Graph) -> Graph:
    """Keep only the nodes the outputs depend on (and the inputs).

    Before and after (``%b`` is computed but never used)::

        %a = exp(%x)                         %a = exp(%x)
        %b = log(%x)                   ->    return %a
        return %a
    """
    return rewrite(g)


def _key(n: Node, ins) -> tuple:
    attrs = tuple(sorted((k, repr(v)) for k, v in n.attrs.items()))
    return (n.op, tuple(id(x) for x in ins), attrs, n.shape, n.dtype)


def eliminate_common_subexpressions(g: Graph, max_const_size: int = 4096) -> Graph:
    """Compute each distinct expression once: a node equal to an earlier one (same op,
    same attributes, same inputs after merging) is replaced by it.

    Before and after (softmax written twice by hand)::

        %e1 = exp(%x)                        %e1 = exp(%x)
        %e2 = exp(%x)                  ->    %s = add(%e1, %e1)
        %s = add(%e1, %e2)

    Constants with equal values are merged too when they hold at most
    ``max_const_size`` elements (comparing large weights costs more than it saves).
    """
    seen: dict = {}
    consts: list = []

    def merge(n: Node, ins):
        if n.op == "input":
            return None
        if n.op == "constant":
            if n.size > max_const_size:
                return None
            for c in consts:
                if c.shape == n.shape and c.dtype == n.dtype and np.array_equal(c.value, n.value):
                    return c
            c = Node("constant", (), {}, n.shape, n.dtype, n.name, n.value)
            consts.append(c)
            return c
        key = _key(n, ins)
        if key in seen:
            return seen[key]
        new = Node(n.op, ins, n.attrs, n.shape, n.dtype, n.name, sym=n.sym)
        seen[key] = new
        return new

    return rewrite(g, merge)


def _bias_of(add: Node, users):
    """(matmul-side node, bias constant, broadcast or None) when ``add`` is
    ``P + broadcast_to(const)`` or, as a batch-1 trace gives (the broadcast is a no-op,
    so it is not recorded), ``P + const`` with a per-channel ``const`` (shape ``(1, c)``
    or ``(c,)``)."""
    if add.op != "add":
        return None
    for p, q in (add.inputs, add.inputs[::-1]):
        if q.op == "broadcast_to" and q.inputs[0].op == "constant" and len(users[q]) == 1:
            return p, q.inputs[0], q
        if (q.op == "constant" and p.op != "constant" and q.value is not None
                and q.value.ndim >= 1 and q.shape[-1] == add.shape[-1]
                and q.value.size == q.shape[-1]):
            return p, q, None
    return None


def _matmul_of(p: Node, users):
    """(reshape or None, matmul) when ``p`` is ``matmul(a, W)`` or a reshape of one that
    keeps the last axis, ``W`` a constant and each used only on this path."""
    reshape = None
    if p.op == "reshape" and len(users[p]) == 1:
        reshape, p = p, p.inputs[0]
        if p.shape[-1] != reshape.shape[-1]:
            return None
    if p.op == "matmul" and p.inputs[1].op == "constant" and p.inputs[1].value.ndim == 2 \
            and len(users[p]) == 1:
        return reshape, p
    return None


def fold_batch_norm(g: Graph) -> Graph:
    """Fold ``batch_norm`` (inference form) into the Linear or Conv that feeds it.

    In eval mode a batch norm is an affine map per channel ``c``,
    ``y = (x - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``, and so is the
    layer before it, ``x = a @ W + b``. Their composition is one affine map:
    ``y = a @ (W * s) + ((b - mean) * s + beta)``. Before and after::

        %mm = matmul(%a, %W)                       %mm = matmul(%a, %W.bn)
        %b1 = broadcast_to(%b, shape=(n, c))       %b1 = broadcast_to(%b.bn, shape=(n, c))
        %y = add(%mm, %b1)                   ->    %y = add(%mm, %b1)
        %z = batch_norm(%y, %mean, %var, %gamma, %beta, eps=1e-05)

    The bias may also be added without a broadcast (``add(%mm, %b)``: a batch-1 trace,
    where broadcasting ``(1, c)`` to ``(1, c)`` records nothing; the folded graph keeps
    that form) or be absent (``Linear(bias=False)``: the fold creates one).
    A conv is an im2col, a matmul and a reshape to NHWC, so the same rewrite applies
    (run :func:`fold_constants` first so that the conv's weight reshape is a constant).
    The layer's intermediate results must have no other users; batch norms that do not
    follow a foldable layer are left as they are.
    """
    users = g.users()
    consts = [n.inputs[1:] for n in g.nodes if n.op == "batch_norm"]
    plans: dict = {}
    for n, stats in zip([n for n in g.nodes if n.op == "batch_norm"], consts, strict=True):
        if not all(s.op == "constant" for s in stats):
            continue
        x = n.inputs[0]
        if len(users[x]) != 1:
            continue
        bias = _bias_of(x, users)
        head, b, bcast = (bias if bias is not None else (x, None, None))
        mm = _matmul_of(head, users)
        if mm is None:
            continue
        plans[n] = (x if bias is not None else None, head, mm, b, bcast)

    if not plans:
        return rewrite(g)
    new_nodes: dict = {}

    def fold(n: Node, ins):
        if n not in plans:
            return None
        add, head, (reshape, mm), b, bcast = plans[n]
        mean, var, gamma, beta = (s.value.astype(np.float64) for s in n.inputs[1:])
        scale = gamma / np.sqrt(var + n.attrs["eps"])
        W = mm.inputs[1]
        w_new = (W.value.astype(np.float64) * scale).astype(W.dtype)
        b_old = np.zeros_like(scale) if b is None else b.value.astype(np.float64).reshape(-1)
        b_shape = (b.shape if b is not None else (scale.size,))
        b_new = ((b_old - mean) * scale + beta).astype(n.dtype).reshape(b_shape)
        a = new_nodes[mm.inputs[0]]
        wn = Node("constant", (), {}, w_new.shape, W.dtype, f"{W.name}.bn", w_new)
        out = Node("matmul", (a, wn), {}, mm.shape, mm.dtype, mm.name, sym=mm.sym)
        if reshape is not None:
            out = Node("reshape", (out,), reshape.attrs, reshape.shape, reshape.dtype,
                       reshape.name, sym=reshape.sym)
        bn_ = Node("constant", (), {}, b_new.shape, n.dtype,
                   f"{b.name}.bn" if b is not None else f"{n.name}.bias", b_new)
        if b is not None and bcast is None and tuple(b_shape) == tuple(n.shape):
            bb = bn_                        # batch 1: add(%mm, %b) stays that form
        else:
            # the batch axis (if any) follows the batch norm's own shape
            sym = (n.sym[0], {"shape": n.sym[0]}) if n.sym is not None else None
            bb = Node("broadcast_to", (bn_,), {"shape": n.shape}, n.shape, n.dtype,
                      "broadcast_to", sym=sym)
        return Node("add", (out, bb), {}, n.shape, n.dtype, add.name if add else "add",
                    sym=n.sym)

    def record(n, ins):
        out = fold(n, ins)
        new_nodes[n] = out if out is not None else Node(n.op, ins, n.attrs, n.shape, n.dtype,
                                                        n.name, n.value, n.sym)
        return new_nodes[n]

    return rewrite(g, record)


DEFAULT_PASSES = (fold_constants, fold_batch_norm, eliminate_common_subexpressions,
                  eliminate_dead_code)


def _summary(before: Graph, after: Graph) -> str:
    cb = Counter(n.op for n in before.ops)
    ca = Counter(n.op for n in after.ops)
    diff = []
    for op in sorted(set(cb) | set(ca)):
        d = ca[op] - cb[op]
        if d:
            diff.append(f"{d:+d} {op}")
    nc = len(after.params) - len(before.params)
    if nc:
        diff.append(f"{nc:+d} constant")
    return ", ".join(diff) if diff else "no change"


class PassManager:
    """Run passes in order: ``PassManager([fold_constants, eliminate_dead_code]).run(g)``.

    With ``verbose=True`` it prints, per pass, the number of op nodes before and after
    and which ops were added or removed. ``pm.log`` keeps those lines.
    """

    def __init__(self, passes=DEFAULT_PASSES, verbose: bool = False):
        self.passes = list(passes)
        for p in self.passes:
            if not callable(p):
                raise TypeError(f"a pass must be a function Graph -> Graph, got {p!r}")
        self.verbose = verbose
        self.log: list[str] = []

    def run(self, g: Graph) -> Graph:
        self.log = []
        for p in self.passes:
            new = p(g)
            if not isinstance(new, Graph):
                raise TypeError(f"pass {p.__name__} returned {type(new).__name__}, not a Graph")
            name = getattr(p, "__name__", repr(p))
            line = f"{name}: {len(g.ops)} -> {len(new.ops)} ops ({_summary(g, new)})"
            self.log.append(line)
            if self.verbose:
                print(line)
            g = new
        return g


def run_passes(g: Graph, passes=DEFAULT_PASSES, verbose: bool = True) -> Graph:
    """``PassManager(passes, verbose).run(g)``."""
    return PassManager(passes, verbose).run(g)
