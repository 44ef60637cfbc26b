"""Post-training quantization as graph passes: ``prepare``, ``calibrate``, ``convert``.

Each pass is a function from a graph to a new graph (or, for ``calibrate``, to the
observers it filled); :func:`quantize_graph` runs the three::

    pg = quant.prepare(g)                        # fold BN, mark what to observe
    observers = quant.calibrate(pg, batches)     # run it; each observe node feeds one
    qg = quant.convert(pg, observers)            # rewrite the matches into integer ops

A two-layer MLP, before and after (``N`` is the batch)::

    %mm = matmul(%x, %w1)               %x.q = quantize(%x, scale=0.0235, zero_point=-128)
    %add = add(%mm, %b1)                %mm = qlinear(%x.q, %w1.q, %w1.s, %b1.q, ..., relu=True)
    %relu = relu(%add)            ->    %mm_1 = qlinear(%mm, %w2.q, ...)
    %mm_1 = matmul(%relu, %w2)          %add_1 = dequantize(%mm_1, scale=0.187, zero_point=9)
    %add_1 = add(%mm_1, %b2)            return %add_1
    return %add_1

:func:`simulate` runs a quantized graph with every integer op replaced by its fake-quant
simulation (:mod:`.graph_ops`); :func:`run` runs it with the integer kernels.
:func:`.weightonly.quantize_weights` is the other kind of quantization: weights only,
group-wise.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .. import graph as G
from .. import ndarray as nd
from .affine import as_numpy
from .fixedpoint import quantize_multiplier
from .graph_ops import QUANTIZED_OPS, add_params
from .graph_ops import run as run_op
from .observers import make_observer
from .rules import ON_CODES, RULES, SAME_GRID, bias_input, constant_value, match_rules


def _sym(like, attrs=False):
    """The symbolic (batch) shape of a node made in ``like``'s shape (see graph.symbolic)."""
    if like.sym is None:
        return None
    return (like.sym[0], like.sym[1] if attrs else {})


def fold(g):
    """The graph the quantizer reads: constants folded, batch norm folded into the layer
    before it, dead code gone."""
    return G.eliminate_dead_code(G.fold_batch_norm(G.fold_constants(g)))


def observed(g, rules=RULES) -> list:
    """The tensors calibration must watch: each match's operands and its output."""
    seen: dict = {}
    for m in match_rules(g, rules).values():
        for n in [*m.operands, m.output]:
            seen[n] = True
    return list(seen)


def prepare(g, rules=RULES):
    """Fold ``g`` and put an ``observe`` node after every tensor to watch.

    Before and after::

        %mm = matmul(%x, %w)          %x.obs = observe(%x, key='x')
        %add = add(%mm, %b)     ->    %mm = matmul(%x.obs, %w)
        return %add                   %add = add(%mm, %b)
                                      %add.obs = observe(%add, key='add')
                                      return %add.obs
    """
    g = fold(g)
    watch = set(observed(g, rules))
    new, seen = {}, {}          # old node -> its copy; -> what its readers read
    for n in g.nodes:
        new[n] = G.Node(n.op, [seen[x] for x in n.inputs], n.attrs, n.shape, n.dtype, n.name,
                        n.value, n.sym)
        seen[n] = new[n]
        if n in watch:
            seen[n] = G.Node("observe", [new[n]], {"key": n.name}, n.shape, n.dtype,
                             f"{n.name}.obs", sym=_sym(n))
    ins, outs = [new[n] for n in g.inputs], [seen[n] for n in g.outputs]
    return G.Graph(G.topo_sort(outs, ins), ins, outs)


def strip_observers(pg):
    """``pg`` without its ``observe`` nodes (each read is of the tensor it watched)."""
    return G.rewrite(pg, lambda n, ins: ins[0] if n.op == "observe" else None)


class QuantInterpreter(G.Interpreter):
    """The graph interpreter with the quantized ops run in ``mode``: ``"reference"``
    (integer numpy), ``"kernel"`` (the extern kernels on ``device``), ``"simulate"`` or
    ``"simulate_float"`` (fake-quant); every other op runs its reference."""

    def __init__(self, g, mode="reference", kernel_device=None):
        super().__init__(g)
        self.mode, self.kernel_device = mode, kernel_device

    def run_node(self, node, inputs):
        if node.op not in QUANTIZED_OPS:
            return super().run_node(node, inputs)
        out = run_op(node.op, node.attrs, [a.numpy() for a in inputs], self.mode,
                     self.kernel_device)
        return nd.array(out, dtype=str(out.dtype), device=self.device)

    def values(self) -> dict:
        """``{node name: numpy value}`` of the last run."""
        return {n.name: v.numpy() for n, v in self.env.items()}


class Calibrator(QuantInterpreter):
    """Feeds each ``observe`` node's value to its observer (``observers[key]``)."""

    def __init__(self, g, observers):
        super().__init__(g)
        self.observers = observers

    def run_node(self, node, inputs):
        out = super().run_node(node, inputs)
        if node.op == "observe":
            self.observers[node.attrs["key"]](out.numpy())
        return out


def batches_of(calibration):
    """The float32 arrays of ``calibration`` (arrays, Tensors, or ``(x, y)`` pairs)."""
    for b in calibration:
        if isinstance(b, (tuple, list)):
            b = b[0]
        yield np.asarray(as_numpy(b), np.float32)


def calibrate(pg, calibration, observer="minmax", act_bits=None) -> dict:
    """Run prepared graph ``pg`` on each calibration batch; ``{key: filled observer}``."""
    keys = [n.attrs["key"] for n in pg.nodes if n.op == "observe"]
    observers = {k: make_observer(observer, dtype="int8", symmetric=False, num_bits=act_bits)
                 for k in keys}
    run = Calibrator(pg, observers)
    count = 0
    for xb in batches_of(calibration):
        run.run(xb)
        count += 1
    if not count:
        raise ValueError("calibrate: calibration is empty (it needs at least one batch)")
    return observers


def quantize_weight(w: np.ndarray, per_channel: bool = True, num_bits: int | None = None):
    """Symmetric int8 codes of a ``(K, N)`` weight, a scale per column (or one): ``(q, s)``."""
    from .affine import qparams, quantize

    amax = np.abs(w).max(axis=0) if per_channel else np.full(w.shape[1], np.abs(w).max())
    scale, _ = qparams(-amax, amax, "int8", symmetric=True, num_bits=num_bits)
    q = quantize(w, scale, np.zeros_like(scale, np.int32), "int8", axis=1, num_bits=num_bits)
    return q, scale


class _Converter:
    """The state of one :func:`convert`: each float tensor's float and int8 versions."""

    def __init__(self, qparams, per_channel, weight_bits, act_bits):
        self.qparams, self.per_channel = qparams, per_channel
        self.weight_bits, self.act_bits = weight_bits, act_bits
        self.f: dict = {}      # old node -> its float32 value in the new graph
        self.q: dict = {}      # old node -> (int8 node, scale, zero point)
        self.primary: dict = {}   # old node -> "f" or "q": the form its producer made

    def grid(self, n):
        if n in self.q:
            return self.q[n][1:]
        try:
            return self.qparams[n.name]
        except KeyError:
            raise ValueError(f"convert: no observer for %{n.name}; run prepare and calibrate "
                             "on this graph first") from None

    def get_q(self, n):
        if n not in self.q:
            s, z = self.grid(n)
            node = G.Node("quantize", [self.get_f(n)], self._qattrs(s, z), n.shape, "int8",
                          f"{n.name}.q", sym=_sym(n))
            self.q[n] = (node, s, z)
        return self.q[n][0]

    def get_f(self, n):
        if n not in self.f:
            node, s, z = self.q[n]
            self.f[n] = G.Node("dequantize", [node], {"scale": s, "zero_point": z}, n.shape,
                               "float32", f"{n.name}.dq", sym=_sym(n))
        return self.f[n]

    def _qattrs(self, s, z):
        a = {"scale": float(s), "zero_point": int(z)}
        if self.act_bits is not None:
            a["bits"] = int(self.act_bits)
        return a

    def const(self, value, name):
        value = np.ascontiguousarray(value)
        return G.Node("constant", (), {}, value.shape, str(value.dtype), name, value)

    def qlinear(self, m):
        mm = m.nodes[0]
        x, w_node = mm.inputs
        s_in, z_in = self.grid(x)
        s_out, z_out = self.qparams[m.output.name]
        w = np.asarray(w_node.value, np.float32)
        w_q, s_w = quantize_weight(w, self.per_channel, self.weight_bits)
        bias = np.zeros(w.shape[1], np.float32)
        if "add" in m.params:
            bias = np.asarray(constant_value(bias_input(m)), np.float32).reshape(-1)
        acc_scale = np.float64(s_in) * s_w.astype(np.float64)
        bias_q = np.clip(np.rint(bias / acc_scale), -2**31, 2**31 - 1).astype(np.int32)
        m0, shift = quantize_multiplier(acc_scale / np.float64(s_out))
        name = w_node.name
        consts = [self.const(v, f"{name}.{k}") for k, v in
                  (("q", w_q), ("s", s_w), ("bias", bias_q), ("m0", m0), ("shift", shift))]
        attrs = {"s_in": float(s_in), "z_in": int(z_in), "s_out": float(s_out),
                 "z_out": int(z_out), "relu": "relu" in m.params}
        if self.act_bits is not None:
            attrs["bits"] = int(self.act_bits)
        out = G.Node("qlinear", [self.get_q(x), *consts], attrs, mm.shape, "int8", mm.name,
                     sym=_sym(mm))
        if "reshape" in m.params:
            r = m.params["reshape"]
            out = G.Node("reshape", [out], r.attrs, r.shape, "int8", r.name, sym=_sym(r, True))
        self._made_q(m.output, out, s_out, z_out)

    def qadd(self, m):
        a, b = m.operands
        (s_a, z_a), (s_b, z_b) = self.grid(a), self.grid(b)
        s_out, z_out = self.qparams[m.output.name]
        attrs = {"s_a": float(s_a), "z_a": int(z_a), "s_b": float(s_b), "z_b": int(z_b),
                 "s_out": float(s_out), "z_out": int(z_out), "relu": "relu" in m.params,
                 **add_params(float(s_a), float(s_b), float(s_out))}
        if self.act_bits is not None:
            attrs["bits"] = int(self.act_bits)
        add = m.nodes[0]
        out = G.Node("qadd", [self.get_q(a), self.get_q(b)], attrs, add.shape, "int8",
                     add.name, sym=_sym(add))
        self._made_q(m.output, out, s_out, z_out)

    def _made_q(self, old, node, s, z):
        self.q[old] = (node, s, z)
        self.primary[old] = "q"

    def other(self, n):
        """A node outside every match: on codes, on its input's grid, or in float."""
        data = n.inputs[0] if n.inputs else None
        rest_const = all(x.op == "constant" for x in n.inputs[1:])
        if data is not None and self.primary.get(data) == "q" and rest_const:
            if n.op in ON_CODES:
                node, s, z = self.q[data]
                ins = [node] + [self.f.get(x) or self._copy(x) for x in n.inputs[1:]]
                self._made_q(n, G.Node(n.op, ins, n.attrs, n.shape, "int8", n.name,
                                       sym=_sym(n, True)), s, z)
                return
            if n.op in SAME_GRID:        # exact on the input's grid: max(q, z), pad with z
                s, z = self.q[data][1:]
                node = G.Node("quantize", [self.float_op(n)], self._qattrs(s, z), n.shape,
                              "int8", f"{n.name}.q", sym=_sym(n))
                self._made_q(n, node, s, z)
                return
        self.float_op(n)
        self.primary[n] = "f"

    def float_op(self, n):
        """``n`` in float32, on the float values of its inputs (a float island)."""
        self.f[n] = G.Node(n.op, [self.get_f(x) for x in n.inputs], n.attrs, n.shape, n.dtype,
                           n.name, n.value, n.sym)
        return self.f[n]

    def _copy(self, n):
        self.f[n] = G.Node(n.op, [], n.attrs, n.shape, n.dtype, n.name, n.value, n.sym)
        return self.f[n]


def convert(pg, observers, per_channel=True, weight_bits=None, act_bits=None, rules=RULES):
    """Rewrite prepared graph ``pg`` into integer ops with the observers' qparams
    (``{key: Observer}`` from :func:`calibrate`, or ``{key: (scale, zero_point)}``).

    Every rule match becomes its integer op, data movement after an integer op stays on
    codes, and every other op is a float island between ``dequantize`` and ``quantize``
    (see :mod:`.rules`); the graph's outputs are float32, as before.
    """
    g = strip_observers(pg)
    qparams = {k: (o.qparams() if hasattr(o, "qparams") else tuple(o))
               for k, o in observers.items()}
    c = _Converter(qparams, per_channel, weight_bits, act_bits)
    matches = match_rules(g, rules)
    inside = {n for m in matches.values() for n in m.nodes}
    for n in g.nodes:
        if n.is_leaf:
            c._copy(n)
            c.primary[n] = "f"
        elif n in matches:
            getattr(c, matches[n].rule.makes)(matches[n])
        elif n not in inside:
            c.other(n)
    ins = [c.f[n] for n in g.inputs]
    outs = [c.get_f(n) for n in g.outputs]
    return G.Graph(G.topo_sort(outs, ins), ins, outs)


def quantize_graph(g, calibration, per_channel=True, observer="minmax", weight_bits=None,
                   act_bits=None, observers=None, rules=RULES):
    """``convert(prepare(g), calibrate(...))``: W8A8 post-training quantization of any
    graph. ``observers`` (``{tensor name: Observer}``, e.g. what QAT learned) skips
    calibration; ``calibration`` is then unused and may be None."""
    pg = prepare(g, rules)
    if observers is None:
        observers = calibrate(pg, calibration, observer, act_bits)
    return fold_dequantize(convert(pg, observers, per_channel, weight_bits, act_bits, rules))


def fold_dequantize(qg):
    """Every float ``matmul`` of two activations that reads a ``dequantize`` becomes a
    ``qmatmul`` that reads the codes: the dequantize is folded into the product (its
    scale applied once to the sum), so no float copy of the operand is made or kept
    live. Attention's ``Q K^T`` reads two int8 operands (an integer sum); ``P V`` reads
    softmax's float probabilities and V's codes. A ``divide_scalar`` or
    ``multiply_scalar`` that alone reads the product (attention's ``1 / sqrt(d)``) joins
    the scale (``alpha``). The values equal the float island's up to rounding.

    Before and after::

        %q.dq = dequantize(%q)   %k.dq = dequantize(%k)
        %s = matmul(%q.dq, %k.dq)   %t = divide_scalar(%s, scalar=2.83)
            ->    %t = qmatmul(%q, %k, s_a=.., z_a=.., s_b=.., z_b=.., alpha=0.354)
    """
    users = Counter(x for n in qg.nodes for x in n.inputs)

    def fn(n, ins):
        if (n.op in ("divide_scalar", "multiply_scalar") and ins[0].op == "qmatmul"
                and users[n.inputs[0]] == 1 and n.inputs[0] not in qg.outputs):
            s = float(n.attrs["scalar"])
            alpha = ins[0].attrs.get("alpha", 1.0) * (1.0 / s if n.op == "divide_scalar" else s)
            return G.Node("qmatmul", ins[0].inputs, {**ins[0].attrs, "alpha": alpha}, n.shape,
                          "float32", n.name, sym=_sym(n))
        if n.op != "matmul" or not any(x.op == "dequantize" for x in ins):
            return None
        if len(ins[0].shape) < 2 or ins[0].shape[:-2] != ins[1].shape[:-2]:
            return None                   # broadcasting batch axes: left to the float op
        attrs, operands = {}, []
        for key, x in zip("ab", ins, strict=True):
            if x.op == "dequantize":
                attrs.update({f"s_{key}": x.attrs["scale"], f"z_{key}": x.attrs["zero_point"]})
                x = x.inputs[0]
            operands.append(x)
        return G.Node("qmatmul", operands, attrs, n.shape, "float32", n.name, sym=_sym(n))
    return G.rewrite(qg, fn)


def simulate(qg, *inputs, rounding="fixedpoint"):
    """``qg``'s outputs with every integer op run as its fake-quant simulation: float
    arithmetic on dequantized values, the same fixed-point rounding (``rounding=
    "float"``: one float rounding, as fake-quant training does)."""
    mode = {"fixedpoint": "simulate", "float": "simulate_float"}.get(rounding)
    if mode is None:
        raise ValueError(f"rounding must be 'fixedpoint' or 'float', got {rounding!r}")
    return QuantInterpreter(qg, mode).run(*inputs)


def run(qg, *inputs, device=None):
    """``qg``'s outputs, the integer ops run by their kernels on ``device`` (``nd.cpu()``
    by default)."""
    return QuantInterpreter(qg, "kernel", device).run(*inputs)
