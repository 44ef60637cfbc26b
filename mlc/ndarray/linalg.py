"""Matrix products: ``a @ b`` for 2-d and batched operands.

Rules (numpy's ``matmul``):
- the last two axes are the matrices: ``(..., m, n) @ (..., n, p) -> (..., m, p)``;
- the leading "batch" axes broadcast against each other;
- a 1-d operand is a row (on the left) or a column (on the right) vector and that axis is
  dropped from the result.

dtypes: operands are promoted as for ``*``; an int8 product accumulates and returns int32
(what quantized inference needs: int8 weights times int8 activations, summed exactly).

The backends multiply compact row-major ``(batch, m, n)`` and ``(batch, n, p)`` buffers.
When ``b`` is a single matrix, the batch of ``a`` is folded into its rows: one
``(batch*m, n) @ (n, p)`` product instead of ``batch`` small ones.
"""

from __future__ import annotations

from . import shapes as S
from .ndarray import NDArray, _as_operand


def matmul(a: NDArray, b, tiled: bool = False) -> NDArray:
    """``a @ b``; ``tiled=True`` uses the backend's plainly tiled teaching kernel."""
    if not isinstance(a, NDArray):
        raise TypeError(f"matmul expects NDArrays, got {type(a).__name__}")
    b = _as_operand(b, a)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul needs arrays with at least 1 dimension, got shapes "
                         f"{a.shape} and {b.shape} (use * for scalars)")
    dtype = S.result_dtype("mul", a.dtype, b.dtype)
    out_dtype = "int32" if dtype == "int8" else dtype
    a_vec, b_vec = a.ndim == 1, b.ndim == 1
    x = a.compact().reshape((1, a.shape[0])) if a_vec else a
    y = b.compact().reshape((b.shape[0], 1)) if b_vec else b
    if x.shape[-1] != y.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned: "
                         f"{x.shape[-1]} (last axis of a) != {y.shape[-2]} "
                         "(second-to-last axis of b)")
    try:
        batch = S.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch axes of shapes {a.shape} and {b.shape} cannot be "
                         "broadcast together") from None
    m, n, p = x.shape[-2], x.shape[-1], y.shape[-1]
    if x.dtype != dtype:
        x = x.astype(dtype)
    if y.dtype != dtype:
        y = y.astype(dtype)
    nb = S.prod(batch)
    kernel = a.device.matmul_tiled if tiled else a.device.matmul
    out = NDArray.make(batch + (m, p), device=a.device, dtype=out_dtype)
    x = x.broadcast_to(batch + (m, n)).compact()
    if y.ndim == 2:
        # one tall product: every batch entry of x shares the same right-hand matrix
        kernel(x.handle, y.compact().handle, out.handle, nb * m, n, p, 1)
    else:
        y = y.broadcast_to(batch + (n, p)).compact()
        kernel(x.handle, y.handle, out.handle, m, n, p, nb)
    shape = out.shape
    if a_vec:
        shape = shape[:-2] + shape[-1:]
    if b_vec:
        shape = shape[:-1]
    return out.reshape(shape) if shape != out.shape else out
