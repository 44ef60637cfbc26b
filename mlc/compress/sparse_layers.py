"""``SparseLinear``: a Linear layer for inference that stores and multiplies only nonzeros.

A pruned ``nn.Linear`` still holds every zero and still multiplies by it.
:func:`to_sparse` swaps each pruned Linear of a model for a ``SparseLinear`` holding
``W.T`` in CSR or 2:4 form, so ``y = x @ W + b`` becomes ``y = (A @ x.T).T + b`` with the
sparse kernels of ``sparse_kernels.py``. It is for inference only: its forward runs on
numpy arrays outside the autodiff graph (the output is a Tensor that requires no grad).
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import Tensor
from .masks import effective_weight
from .sparse import CSRMatrix, csr_matmul, is_2_4, sparse24_matmul, to_2_4, to_csr

__all__ = ["SparseLinear", "to_sparse"]


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
        xs = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
        if xs.shape[-1] != self.in_features:
            raise ValueError(f"SparseLinear({self.in_features}, {self.out_features}) got "
                             f"input of shape {xs.shape}")
        lead = xs.shape[:-1]
        xt = np.ascontiguousarray(xs.reshape(-1, self.in_features).T, dtype=np.float32)
        mm = csr_matmul if isinstance(self.matrix, CSRMatrix) else sparse24_matmul
        y = mm(self.matrix, xt).T
        if self.bias_array is not None:
            y = y + self.bias_array
        device = x.device if isinstance(x, Tensor) else self.device
        return Tensor(y.reshape(*lead, self.out_features), device=device, requires_grad=False)

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

