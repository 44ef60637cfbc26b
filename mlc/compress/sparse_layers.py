"""``SparseLinear``: a Linear layer for inference that stores and multiplies only nonzeros.

A pruned ``nn.Linear`` still holds every zero and still multiplies by it.
:func:`to_sparse` swaps each pruned Linear of a model for a ``SparseLinear`` holding
``W.T`` in CSR or 2:4 form, so ``y = x @ W + b`` becomes ``y = (A @ x.T).T + b`` with the
sparse kernels of ``sparse_kernels.py``. It is for inference only: its op,
:class:`SparseMatMul`, has no gradient.

The op's inputs are ``x`` and the format's arrays (CSR: ``indptr``, ``indices``,
``data``; 2:4: ``values``, ``meta``; then the bias), so tracing a sparse model records
them as constants of one ``sparse_matmul`` node, and a built graph calls the same Numba
kernel as an extern op (as a compiler calls a sparse library): the compiled model gives
the eager model's outputs on any input.
"""

from __future__ import annotations

import numpy as np

from .. import ndarray as nd
from .. import nn
from ..autograd import Tensor, TensorOp
from .masks import effective_weight
from .sparse import (CSRMatrix, Sparse24Matrix, csr_matmul, is_2_4, sparse24_matmul, to_2_4,
                     to_csr)

__all__ = ["SparseLinear", "SparseMatMul", "to_sparse"]


def _arrays_of(matrix) -> list[np.ndarray]:
    if isinstance(matrix, CSRMatrix):
        return [matrix.indptr, matrix.indices, matrix.data]
    return [matrix.values, matrix.meta]


def _matrix_of(fmt: str, shape, arrays):
    arrays = [np.asarray(a) for a in arrays]
    return CSRMatrix(*arrays, tuple(shape)) if fmt == "csr" else Sparse24Matrix(*arrays,
                                                                               tuple(shape))


def sparse_linear(matrix, x: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``x @ matrix.T + bias`` for ``x`` of shape ``(..., K)`` (numpy in, numpy out)."""
    m, k = matrix.shape
    if x.shape[-1] != k:
        raise ValueError(f"sparse matmul: the weight takes {k} features, the input has "
                         f"shape {x.shape}")
    xt = np.ascontiguousarray(x.reshape(-1, k).T, dtype=np.float32)
    mm = csr_matmul if isinstance(matrix, CSRMatrix) else sparse24_matmul
    y = mm(matrix, xt).T
    if bias is not None:
        y = y + bias.reshape(1, m)
    return y.reshape(*x.shape[:-1], m)


class SparseMatMul(TensorOp):
    """``x @ W + b`` with ``W.T`` in a sparse format: inputs ``x``, the format's arrays
    and, when ``bias``, the bias. Inference only (no gradient)."""

    def __init__(self, fmt: str, shape, bias: bool, matrix=None):
        self.fmt, self.shape, self.bias = fmt, tuple(shape), bias
        self._matrix = matrix  # eager calls reuse it instead of rebuilding it from arrays

    def compute(self, x, *arrays):
        return nd.array(self.apply([a.numpy() for a in (x, *arrays)]), device=x.device)

    def apply(self, arrays: list[np.ndarray]) -> np.ndarray:
        """The product on numpy arrays (``x``, the format's arrays, the bias)."""
        x, rest = arrays[0], arrays[1:]
        bias = rest.pop() if self.bias else None
        matrix = (self._matrix if self._matrix is not None
                  else _matrix_of(self.fmt, self.shape, rest))
        return sparse_linear(matrix, x, bias)


class SparseLinear(nn.Module):
    """``y = x @ W + b`` with ``W.T`` stored as a :class:`CSRMatrix` or
    :class:`Sparse24Matrix` (``fmt="csr"`` or ``"2:4"``); inference only."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None, fmt: str = "csr",
                 device=None):
        super().__init__()
        w = np.ascontiguousarray(np.asarray(weight, dtype=np.float32).T)  # (out, in)
        self.out_features, self.in_features = w.shape
        if fmt == "csr":
            self.matrix = to_csr(w)
        elif fmt == "2:4":
            self.matrix = to_2_4(w)
        else:
            raise ValueError(f"SparseLinear: fmt must be 'csr' or '2:4', got {fmt!r}")
        self.fmt = fmt
        self.bias_array = None if bias is None else np.asarray(bias, np.float32).reshape(1, -1)
        self.device = device
        _register_graph_op()

    @classmethod
    def from_linear(cls, linear: nn.Linear, fmt: str = "csr") -> "SparseLinear":
        bias = None if linear.bias is None else linear.bias.numpy()
        return cls(effective_weight(linear), bias, fmt, device=linear.weight.device)

    def weight_numpy(self) -> np.ndarray:
        """The dense ``(in, out)`` weight it represents."""
        return self.matrix.toarray().T

    @property
    def nnz(self) -> int:
        if isinstance(self.matrix, CSRMatrix):
            return self.matrix.nnz
        return int(np.count_nonzero(self.matrix.values))

    def forward(self, x):
        if not isinstance(x, Tensor):
            x = Tensor(np.asarray(x, np.float32), device=self.device, requires_grad=False)
        if x.shape[-1] != self.in_features:
            raise ValueError(f"SparseLinear({self.in_features}, {self.out_features}) got "
                             f"input of shape {x.shape}")
        arrays = _arrays_of(self.matrix) + ([] if self.bias_array is None else
                                            [self.bias_array])
        key = (x.device.name, id(self.matrix), id(self.bias_array))
        if vars(self).get("_operand_key") != key:  # the arrays as constant Tensors, once
            self._operands = [Tensor(a, device=x.device, dtype=str(a.dtype),
                                     requires_grad=False) for a in arrays]
            self._operand_key = key
        op = SparseMatMul(self.fmt, self.matrix.shape, self.bias_array is not None,
                          self.matrix)
        return op(x, *self._operands)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, fmt={self.fmt!r}, nnz={self.nnz}"


def to_sparse(model: nn.Module, fmt: str = "csr", min_sparsity: float = 0.0) -> nn.Module:
    """Replace, in place, every ``nn.Linear`` of a ``Sequential`` tree whose weight is at
    least ``min_sparsity`` zero by a :class:`SparseLinear`; returns ``model``.

    With ``fmt="2:4"`` only weights with the 2:4 pattern along the input are converted.
    Use on a copy (``models.clone``) to keep the trainable original.
    """
    for m in [model] + model._children():
        if not isinstance(m, nn.Sequential):
            continue
        for i, layer in enumerate(m.modules):
            if not isinstance(layer, nn.Linear):
                continue
            w = effective_weight(layer)
            if 1.0 - np.count_nonzero(w) / w.size < min_sparsity:
                continue
            if fmt == "2:4" and not is_2_4(w.T):
                continue
            m.modules[i] = SparseLinear.from_linear(layer, fmt)
    return model



# -- the graph op ------------------------------------------------------------------------------

_FMT_ATTR = {"csr": "csr", "2:4": "two_four"}  # a saved graph's string attributes are names


def _op_of(attrs) -> SparseMatMul:
    fmt = {v: k for k, v in _FMT_ATTR.items()}[attrs["fmt"]]
    return SparseMatMul(fmt, attrs["shape"], attrs["bias"])


def _shape(shapes, attrs):
    m, k = attrs["shape"]
    if shapes[0][-1] != k:
        raise ValueError(f"sparse_matmul: the weight takes {k} features, the input has "
                         f"shape {shapes[0]}")
    return tuple(shapes[0][:-1]) + (m,)


def _reference(attrs, *arrays):
    out = _op_of(attrs).apply([a.numpy() for a in arrays])
    return nd.array(out, device=nd.cpu_numpy())


def _extern(node, *arrays):
    return _op_of(node.attrs).apply(list(arrays))


def _flops(node) -> int:
    stored = node.inputs[3 if node.attrs["fmt"] == "csr" else 1]  # data, or 2:4's values
    return 2 * (node.size // node.shape[-1]) * stored.size


def _register_graph_op() -> None:
    """Add ``sparse_matmul`` to ``graph.OPS`` (once; the first SparseLinear does it, so
    that ``mlc.compress`` does not import the graph compiler unless a sparse layer exists)."""
    from ..graph.ops.registry import OPS, OpDef, register

    if "sparse_matmul" not in OPS:
        register(OpDef("sparse_matmul", "opaque", _shape, _reference, None,
                       dtype=lambda dtypes, attrs: "float32", arity=None, flops=_flops,
                       traces=(SparseMatMul,),
                       attrs_of=lambda op: {"fmt": _FMT_ATTR[op.fmt], "shape": op.shape,
                                            "bias": op.bias},
                       extern=_extern, doc=SparseMatMul.__doc__))
