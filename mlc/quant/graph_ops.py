"""The quantized ops of a graph, registered in ``graph.OPS`` like any other op.

========== =========================================== ===============================
op         inputs -> output                            meaning
========== =========================================== ===============================
quantize   x float32 -> int8                           ``clamp(rint(x / s) + z)``
dequantize q int8 -> float32                           ``s * (q - z)``
qlinear    a int8 [..., K], w int8 (K, N), s_w f32     ``requantize((a - z_a) @ w + bias)``
           (N,), bias/m0/shift int32 (N,) -> int8      (+ ReLU as a clamp at ``z_out``)
qadd       a int8, b int8 (same shape) -> int8         ``a + b`` on their own scales (TFLite)
qmatmul    a, b (..., M, K), (..., K, N) int8 or f32 ``dequantize(a) @ dequantize(b)``, one scale
           -> float32                                  (attention's products, unit 09)
wmatmul    x float32 [..., K], codes, scales -> f32    ``x @ W``, W stored group-wise in
                                                       4 or 8 bits (:mod:`.weightonly`)
observe    x -> x                                      identity; calibration watches it
========== =========================================== ===============================

Each op has three implementations, here, side by side:

* its **reference** (``graph.interpret`` runs it): the bit-exact integer arithmetic in
  numpy int64, the definition the others are tested against;
* its **extern kernel** (what a built graph runs, as a compiler calls a library such as
  cuBLAS): the Numba kernels of :mod:`.qops` and :mod:`.weightonly`;
* its **simulation** (what :func:`mlc.quant.simulate` runs): float arithmetic on
  dequantized values, put back on the integer grid with the same fixed-point rounding
  rule, so the two agree code for code.

Scales and zero points are attributes (Python numbers: a graph saves as JSON);
per-channel arrays (weight scales, int32 biases and multipliers) are constant inputs.
"""

from __future__ import annotations

import weakref

import numpy as np

from .. import ndarray as nd
from .affine import dequantize as _dequantize
from .affine import quantize as _quantize
from .fixedpoint import multiply_by_quantized_multiplier, requantize

QDTYPE = "int8"
ADD_LEFT_SHIFT = 20      # qadd's headroom: inputs are shifted up before rescaling (TFLite)


def _np(a) -> np.ndarray:
    return a.numpy() if hasattr(a, "numpy") else np.asarray(a)


# -- the arithmetic, numpy in, numpy out (reference and simulation) ------------------------

def quantize_ref(attrs, x):
    return _quantize(x, attrs["scale"], attrs["zero_point"], QDTYPE, num_bits=attrs.get("bits"))


def dequantize_ref(attrs, q):
    return _dequantize(q, attrs["scale"], attrs["zero_point"])


def _flat(a):
    return a.reshape(-1, a.shape[-1])


def qlinear_ref(attrs, a, w, s_w, bias, m0, shift):
    """Integer only: the int64 accumulator, then :func:`~mlc.quant.requantize`."""
    acc = (_flat(a).astype(np.int64) - attrs["z_in"]) @ w.astype(np.int64) + bias
    q = requantize(acc.astype(np.int32), m0, shift, attrs["z_out"], QDTYPE, attrs["relu"],
                   attrs.get("bits"))
    return q.reshape(a.shape[:-1] + (w.shape[1],))


def qlinear_sim(attrs, a, w, s_w, bias, m0, shift, rounding="fixedpoint"):
    """Fake-quant: the real product of the dequantized input and weight plus the real
    bias, in float64; divided by the accumulator's scale it is the integer accumulator
    (exactly: float64 holds these sums without rounding), then the fixed-point rule.
    ``rounding="float"``: one float rounding to the output grid instead."""
    s_in = np.float64(attrs["s_in"])
    acc_scale = s_in * s_w.astype(np.float64)
    x_hat = s_in * (_flat(a).astype(np.float64) - attrs["z_in"])
    y = x_hat @ (s_w.astype(np.float64) * w.astype(np.float64)) + acc_scale * bias
    if rounding == "float":        # what fake-quant training does: one rounding, in float
        q = _on_grid(y, attrs, attrs["relu"])
    else:
        acc = np.rint(y / acc_scale).astype(np.int32)
        q = requantize(acc, m0, shift, attrs["z_out"], QDTYPE, attrs["relu"], attrs.get("bits"))
    return q.reshape(a.shape[:-1] + (w.shape[1],))


def _on_grid(y, attrs, relu):
    from .affine import qrange

    q_min, q_max = qrange(QDTYPE, attrs.get("bits"))
    lo = max(q_min, attrs["z_out"]) if relu else q_min
    return np.clip(np.rint(y / np.float64(attrs["s_out"])) + attrs["z_out"], lo, q_max
                   ).astype(QDTYPE)


def add_params(s_a, s_b, s_out) -> dict:
    """qadd's attributes from the three scales (TFLite's ``PrepareGeneralSubOp``): both
    inputs are rescaled to ``2 max(s_a, s_b) / 2^20``, summed, and requantized."""
    from .fixedpoint import quantize_multiplier

    twice_max = 2.0 * max(s_a, s_b)
    out = {}
    for key, real in (("a", s_a / twice_max), ("b", s_b / twice_max),
                      ("out", twice_max / ((1 << ADD_LEFT_SHIFT) * s_out))):
        out[f"m_{key}"], out[f"shift_{key}"] = (int(v) for v in quantize_multiplier(real))
    return out


def qadd_ref(attrs, a, b):
    def rescaled(q, key):
        d = (q.astype(np.int32) - np.int32(attrs[f"z_{key}"])) << ADD_LEFT_SHIFT
        return multiply_by_quantized_multiplier(d.astype(np.int32), attrs[f"m_{key}"],
                                                attrs[f"shift_{key}"]).astype(np.int64)
    acc = (rescaled(a, "a") + rescaled(b, "b")).astype(np.int32)
    return requantize(acc, attrs["m_out"], attrs["shift_out"], attrs["z_out"], QDTYPE,
                      attrs.get("relu", False), attrs.get("bits"))


def qadd_sim(attrs, a, b, rounding="fixedpoint"):
    """Fake-quant: the real inputs ``s (q - z)``, each put on the shared accumulator grid
    with the fixed-point rule (its integer is recovered exactly from the float value),
    summed and requantized; ``rounding="float"``: the real sum rounded once to the output
    grid (then a code may differ: the integer op rounds each input's rescale)."""
    real = [attrs[f"s_{k}"] * (q.astype(np.float64) - attrs[f"z_{k}"]) for k, q in
            (("a", a), ("b", b))]
    if rounding == "float":
        return _on_grid(real[0] + real[1], attrs, attrs.get("relu", False))
    acc = np.zeros(a.shape, np.int64)
    for key, r in zip("ab", real, strict=True):
        d = np.rint(r / attrs[f"s_{key}"]).astype(np.int32) << ADD_LEFT_SHIFT
        acc += multiply_by_quantized_multiplier(d, attrs[f"m_{key}"], attrs[f"shift_{key}"])
    return requantize(acc.astype(np.int32), attrs["m_out"], attrs["shift_out"], attrs["z_out"],
                      QDTYPE, attrs.get("relu", False), attrs.get("bits"))


def _operand(attrs, key, x):
    """An operand of qmatmul as float64: ``q - z`` for codes (the scale is applied once,
    to the sum), the value itself for a float operand (no ``s_<key>`` attribute)."""
    x = x.astype(np.float64)
    return x - attrs[f"z_{key}"] if f"s_{key}" in attrs else x


def qmatmul_scale(attrs) -> float:
    """``s_a s_b alpha`` (1 for a float operand; ``alpha``: a scalar factor folded in)."""
    return float(np.float64(attrs.get("s_a", 1.0)) * np.float64(attrs.get("s_b", 1.0))
                 * np.float64(attrs.get("alpha", 1.0)))


def qmatmul_ref(attrs, a, b):
    """``dequantize(a) @ dequantize(b)`` with the dequantize folded into the product: the
    sum of ``(a - z_a)(b - z_b)`` (exact in float64 for int8 codes: an integer below
    2^53), times ``s_a s_b`` (and ``alpha``) once, as float32. An operand without a
    scale is float."""
    return (qmatmul_scale(attrs) * (_operand(attrs, "a", a) @ _operand(attrs, "b", b))
            ).astype(np.float32)


def _group_weight(attrs, codes, scales):
    from .weightonly import GroupWeight

    return GroupWeight(codes, scales, attrs["bits"], attrs["group_size"], attrs["k"])


def wmatmul_ref(attrs, x, codes, scales):
    w = _group_weight(attrs, codes, scales).dequantize()
    return (_flat(x) @ w).reshape(x.shape[:-1] + (w.shape[1],))


# -- extern kernels: what a built graph calls ---------------------------------------------

_PACKED: dict = {}


def packed_weight(w: np.ndarray):
    """The :class:`~mlc.quant.PackedWeight` of a constant weight, packed once per array.

    A built graph hands the kernel a fresh view of the same constant at every call, so
    the key is the array that owns the memory (and the view's place in it); the entry
    goes when that array does."""
    from .qops import PackedWeight

    root = w
    while isinstance(root.base, np.ndarray):
        root = root.base
    key = (id(root), w.__array_interface__["data"][0], w.shape, w.strides)
    hit = _PACKED.get(key)
    if hit is None or hit[0]() is not root:
        hit = (weakref.ref(root), PackedWeight(w, 0))
        _PACKED[key] = hit
        weakref.finalize(root, _PACKED.pop, key, None)
    return hit[1]


def qlinear_kernel(attrs, a, w, s_w, bias, m0, shift, device=None):
    from .qops import qlinear

    q = qlinear(np.ascontiguousarray(_flat(a)), packed_weight(w), attrs["z_in"], bias, m0,
                shift, attrs["z_out"], relu=attrs["relu"], num_bits=attrs.get("bits"),
                device=device)
    return q.reshape(a.shape[:-1] + (w.shape[1],))


def qadd_params(attrs) -> np.ndarray:
    """qadd's attributes as the int32 array :func:`.routines.qadd` reads."""
    from .affine import qrange

    q_min, q_max = qrange(QDTYPE, attrs.get("bits"))
    lo = max(q_min, attrs["z_out"]) if attrs.get("relu", False) else q_min
    return np.array([attrs["z_a"], attrs["m_a"], attrs["shift_a"], attrs["z_b"], attrs["m_b"],
                     attrs["shift_b"], attrs["m_out"], attrs["shift_out"], attrs["z_out"], lo,
                     q_max, ADD_LEFT_SHIFT], np.int32)


def qadd_kernel(attrs, a, b, device=None):
    """The Numba kernel of qadd (cpu, or cuda: one routine), on checked int8 inputs."""
    from .qops import _device_name

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != np.int8 or b.dtype != np.int8:
        raise ValueError(f"qadd needs two int8 arrays of one shape, got {a.dtype}{a.shape} "
                         f"and {b.dtype}{b.shape}")
    dev = _device_name(device)
    if dev == "cpu_numpy":
        return qadd_ref(attrs, a, b)
    flat = [np.ascontiguousarray(v).reshape(-1) for v in (a, b)]
    if dev == "cuda":
        from .kernels_cuda import qadd_cuda

        return qadd_cuda(*flat, qadd_params(attrs)).reshape(a.shape)
    from .kernels_graph import qadd_kernel as kernel

    out = np.empty(a.size, np.int8)
    kernel(*flat, qadd_params(attrs), out)
    return out.reshape(a.shape)


def qmatmul_kernel(attrs, a, b, device=None):
    """The Numba kernel of qmatmul on ``(..., M, K) @ (..., K, N)`` with equal batch axes."""
    from .kernels_graph import qmatmul_batched
    from .qops import _device_name

    a, b = np.asarray(a), np.asarray(b)
    shape = _batched_shape([a.shape, b.shape], attrs)
    dev = _device_name(device)
    if dev == "cpu_numpy":
        return qmatmul_ref(attrs, a, b)
    if dev == "cuda":
        from .kernels_cuda import qmatmul_cuda

        return qmatmul_cuda(*qmatmul_operands(attrs, a, b), qmatmul_scale(attrs)).reshape(shape)
    out = np.empty(shape, np.float32)
    qmatmul_batched(*qmatmul_operands(attrs, a, b), qmatmul_scale(attrs),
                    np.empty(shape[-1]), out.reshape(-1, *shape[-2:]))
    return out


def qmatmul_operands(attrs, a, b):
    """The kernel's ``a, z_a, b, z_b`` (3-D, contiguous; zero point 0.0 for a float)."""
    return (np.ascontiguousarray(a).reshape(-1, *a.shape[-2:]), float(attrs.get("z_a", 0)),
            np.ascontiguousarray(b).reshape(-1, *b.shape[-2:]), float(attrs.get("z_b", 0)))


def wmatmul_kernel(attrs, x, codes, scales, device=None):
    from .weightonly import wmatmul

    y = wmatmul(np.ascontiguousarray(_flat(x), np.float32), _group_weight(attrs, codes, scales),
                device=device)
    return y.reshape(x.shape[:-1] + (y.shape[1],))


# -- shapes and dtypes ---------------------------------------------------------------------

def _linear_shape(shapes, attrs):
    a, w = shapes[0], shapes[1]
    if len(w) != 2 or a[-1] != w[0]:
        raise ValueError(f"{attrs.get('op', 'qlinear')}: input {a} does not match weight {w}")
    return a[:-1] + (w[1],)


def _wmatmul_shape(shapes, attrs):
    x = shapes[0]
    if x[-1] != attrs["k"]:
        raise ValueError(f"wmatmul: input {x} does not match a weight with K={attrs['k']}")
    return x[:-1] + (shapes[2][1],)


def _batched_shape(shapes, attrs):
    a, b = shapes
    if len(a) < 2 or a[:-2] != b[:-2] or a[-1] != b[-2]:
        raise ValueError(f"qmatmul needs (..., M, K) @ (..., K, N) with equal batch axes, "
                         f"got {a} and {b}")
    return a[:-1] + (b[-1],)


def _same_shape(shapes, attrs):
    if len(set(shapes)) != 1:
        raise ValueError(f"qadd needs equal shapes, got {shapes}")
    return shapes[0]


def _check_dtype(want):
    def dtype(dtypes, attrs):
        if dtypes[0] != want:
            raise TypeError(f"expects a {want} input, got {dtypes[0]}")
        return attrs.get("out_dtype", QDTYPE if want == "float32" else "float32")
    return dtype


# name: (arity, shape rule, dtype rule, reference, simulation, extern kernel, flops/element)
QUANTIZED_OPS = {
    "quantize": (1, lambda s, a: s[0], _check_dtype("float32"), quantize_ref, quantize_ref,
                 None, 2),
    "dequantize": (1, lambda s, a: s[0], _check_dtype("int8"), dequantize_ref, dequantize_ref,
                   None, 2),
    "qlinear": (6, _linear_shape, lambda d, a: QDTYPE, qlinear_ref, qlinear_sim, qlinear_kernel,
                None),
    "qadd": (2, _same_shape, lambda d, a: QDTYPE, qadd_ref, qadd_sim, qadd_kernel, 6),
    "qmatmul": (2, _batched_shape, lambda d, a: "float32", qmatmul_ref, qmatmul_ref,
                qmatmul_kernel, None),
    "observe": (1, lambda s, a: s[0], lambda d, a: d[0], lambda attrs, x: x, lambda attrs, x: x,
                None, 0),
    "wmatmul": (3, _wmatmul_shape, lambda d, a: "float32", wmatmul_ref, wmatmul_ref,
                wmatmul_kernel, None),
}


def run(op: str, attrs: dict, arrays, mode: str = "reference", device=None) -> np.ndarray:
    """Run quantized ``op`` on numpy arrays: ``mode`` is ``"reference"`` (integer, numpy),
    ``"simulate"`` (fake-quant; ``"simulate_float"`` with float rounding) or ``"kernel"``
    (the extern kernel on ``device``; the reference where an op has none)."""
    _, _, _, ref, sim, kern, _ = QUANTIZED_OPS[op]
    if mode in ("simulate", "simulate_float"):
        if op in ("qlinear", "qadd"):
            return sim(attrs, *arrays, rounding="float" if mode == "simulate_float" else
                       "fixedpoint")
        return sim(attrs, *arrays)
    if mode == "kernel" and kern is not None:
        return kern(attrs, *arrays, device=device)
    return ref(attrs, *arrays)


def _flops(per_element):
    if per_element is not None:
        return lambda node: per_element * node.size
    return lambda node: 2 * node.size * node.inputs[0].shape[-1]


def _reference(op):
    def reference(attrs, *arrays):
        out = run(op, attrs, [_np(a) for a in arrays])
        return nd.array(out, dtype=str(out.dtype), device=nd.cpu_numpy())
    return reference


def _extern(op):
    def extern(node, *arrays):
        return run(op, node.attrs, arrays, "kernel")
    from .bound import BINDERS

    extern.bind = BINDERS.get(op)     # what a built graph calls: see :mod:`.bound`
    return extern


def register_all() -> None:
    """Add the quantized ops to ``graph.OPS`` (once; importing ``mlc.quant`` does it)."""
    from ..graph.ops.registry import OPS, OpDef, register

    for name, (arity, shape, dtype, ref, _, _, per_el) in QUANTIZED_OPS.items():
        if name not in OPS:
            register(OpDef(name, "opaque", shape, _reference(name), None, dtype=dtype,
                           arity=arity, flops=_flops(per_el), extern=_extern(name),
                           doc=ref.__doc__ or ""))
