"""The quantized ops' kernels *bound to a graph node*: what a built graph calls.

A built graph runs an extern op at every call, on buffers whose shapes and dtypes the
graph already checked when it was built. The checked entry points (``quant.qlinear``,
:func:`.graph_ops.qadd_kernel`) validate, convert and allocate on each call: right for a
user's call, a waste in a loop that runs the same node a million times (at batch 1 they
cost more than the arithmetic). So :mod:`mlc.graph.program` asks the op's extern for a
``bind(node)``, once per node, and calls what it returns with the step's buffers::

    call = BINDERS["qlinear"](node)     # attributes read, parameters converted: once
    call(a, w, s_w, bias, m0, shift, out)   # per call: pack the input, one kernel, no copy

Everything that depends only on the node (the code range, the packed weight, the int32
parameter arrays, the int16 panel of the input for a batch size) is made on the first
call and kept; each call writes into ``out``, the step's own buffer (in the arena when
the graph is planned). Integer results equal the checked kernels' bit for bit (the same
routines, :mod:`.routines`); tests compare them with the reference.
"""

from __future__ import annotations

import numpy as np

from .affine import qrange
from .graph_ops import QDTYPE, packed_weight, qadd_params, qmatmul_operands, qmatmul_scale


def _flat(out: np.ndarray) -> np.ndarray:
    if not out.flags.c_contiguous:      # a reshape would copy and the result be lost
        raise ValueError(f"an extern kernel needs a contiguous output buffer, got strides "
                         f"{out.strides}")
    return out.reshape(-1)


def _code_range(attrs, relu=False) -> tuple[int, int]:
    q_min, q_max = qrange(QDTYPE, attrs.get("bits"))
    return (max(q_min, attrs["z_out"]) if relu else q_min), q_max


def bind_quantize(node):
    from .kernels_graph import quantize_kernel

    lo, hi = (float(v) for v in qrange(QDTYPE, node.attrs.get("bits")))
    scale, zero = float(node.attrs["scale"]), float(node.attrs["zero_point"])

    def call(x, out):
        quantize_kernel(x.reshape(-1), scale, zero, lo, hi, _flat(out))
    return call


def bind_dequantize(node):
    from .kernels_graph import dequantize_kernel

    scale, zero = float(node.attrs["scale"]), float(node.attrs["zero_point"])

    def call(q, out):
        dequantize_kernel(q.reshape(-1), scale, zero, _flat(out))
    return call


def bind_qadd(node):
    from .kernels_graph import qadd_kernel

    params = qadd_params(node.attrs)

    def call(a, b, out):
        qadd_kernel(a.reshape(-1), b.reshape(-1), params, _flat(out))
    return call


def bind_qlinear(node):
    """Per call: the input widened into an int16 panel made once per batch size (its
    padding stays zero), then one fused kernel writing int8 into ``out``. The kernel and
    the weight's form are picked once per batch size (``kernels_cpu.qlinear``): the int8
    codes for a few rows, the int16 panel otherwise, threads only for a large product
    (at batch 1 starting them costs more than the product). The weight is packed here,
    when the graph is built, from the constant the node reads."""
    from .kernels_cpu import MR, VL, pack_input
    from .kernels_cpu import qlinear as kernel_for

    attrs = node.attrs
    k, n = node.inputs[1].shape
    lo, hi = (np.int32(v) for v in _code_range(attrs, attrs["relu"]))
    za, z_out = np.int32(attrs["z_in"]), np.int32(attrs["z_out"])
    k_pad = max(VL, -(-k // VL) * VL)
    state: dict = {}

    def constants(w, bias, m0, shift):
        state.clear()
        state.update(key=w.__array_interface__["data"][0], pw=packed_weight(w.reshape(k, n)),
                     params=[np.ascontiguousarray(np.reshape(p, n), np.int32)
                             for p in (bias, m0, shift)])

    def same(w, bias, m0, shift):
        return (state.get("key") == w.__array_interface__["data"][0] or "pw" in state
                and np.array_equal(state["pw"].wt.T, w.reshape(k, n))
                and all(np.array_equal(p, np.reshape(q, n))
                        for p, q in zip(state["params"], (bias, m0, shift), strict=True)))

    if all(x.value is not None for x in node.inputs[1:]):
        constants(node.inputs[1].value, *(x.value for x in node.inputs[3:]))

    def call(a, w, s_w, bias, m0, shift, out):
        if w is not state.get("w"):            # a buffer not seen: compared once
            if not same(w, bias, m0, shift):
                constants(w, bias, m0, shift)
            state["w"] = w
        pw = state["pw"]
        a2 = a.reshape(-1, k)
        m = a2.shape[0]
        run = state.get(m)
        if run is None:                        # per batch size: panel, row sums, kernel
            run = state[m] = (np.zeros((-(-m // MR) * MR, k_pad), np.int16),
                              np.empty(m, np.int32), kernel_for(m, n, k), pw.panel(m))
        a16, rowsum, kernel, panel = run
        pack_input(a2, a16, rowsum)
        kernel(a16, panel, za, pw.zero_point, pw.colsum, rowsum, k, *state["params"], z_out, lo,
               hi, _flat(out).reshape(m, n))
    return call


def bind_qmatmul(node):
    from .kernels_graph import qmatmul_batched

    attrs = node.attrs
    scale, acc = qmatmul_scale(attrs), np.empty(node.shape[-1])
    sa, sb = node.inputs[0].shape, node.inputs[1].shape

    def call(a, b, out):
        qmatmul_batched(*qmatmul_operands(attrs, a.reshape(sa), b.reshape(sb)), scale, acc,
                        _flat(out).reshape(-1, *node.shape[-2:]))
    return call


def bind_wmatmul(node):
    """Per call: one kernel writing float32 into ``out``. The :class:`GroupWeight` (its
    fp16 scales widened once) is made on the first call, and the kernel, serial or
    parallel, picked once per batch size: the checked ``quant.wmatmul`` did both at
    every call."""
    from .graph_ops import _group_weight
    from .kernels_weightonly import wmatmul_kernel

    attrs = node.attrs
    k, n = attrs["k"], node.shape[-1]
    state: dict = {}

    def call(x, codes, scales, out):
        key = codes.__array_interface__["data"][0]     # the constants' place: fixed
        if state.get("key") != key:
            state.clear()
            state.update(key=key, gw=_group_weight(attrs, codes.reshape(node.inputs[1].shape),
                                                   scales.reshape(node.inputs[2].shape)))
        x2 = x.reshape(-1, k)
        m = x2.shape[0]
        kernel = state.get(m)
        if kernel is None:
            kernel = state[m] = wmatmul_kernel(m * k * n)
        gw = state["gw"]
        kernel(x2, gw.codes, gw.scales32, gw.group_size, gw.bits, _flat(out).reshape(m, n))
    return call


BINDERS = {"quantize": bind_quantize, "dequantize": bind_dequantize, "qadd": bind_qadd,
           "qlinear": bind_qlinear,
           "qmatmul": bind_qmatmul, "wmatmul": bind_wmatmul}
