"""Counting a model: parameters, nonzeros, stored bytes and FLOPs per example.

FLOPs are counted as 2 per multiply-add of the layers that do the arithmetic (Linear,
Conv, the depthwise-separable conv, ``SparseLinear``); activations, norms and bias adds
are a rounding error next to them and are left out. ``flops`` is what a dense kernel
executes; ``sparse_flops`` counts only the multiply-adds by nonzero weights, what an
ideal sparse kernel would do (a real one pays for indices on top, see ``sparse.py``).

The shapes come from one forward pass on one example: a forward hook on each counted
layer notes its input and output shapes for the duration of the call.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .. import nn
from ..autograd import Tensor, no_grad
from .light import DepthwiseSeparableConv
from .masks import effective_weight, prunable
from .sparse import FORMATS, stored_bytes
from .sparse_layers import SparseLinear

__all__ = ["count_parameters", "count_nonzeros", "count_flops", "model_bytes", "stored_model_bytes",
           "layer_flops"]


def count_parameters(model: nn.Module) -> int:
    """Every trainable number (``SparseLinear`` counts its nonzeros and biases)."""
    n = sum(p.size for p in model.parameters())
    for m in [model] + model._children():
        if isinstance(m, SparseLinear):
            n += m.nnz + (0 if m.bias_array is None else m.bias_array.size)
    return int(n)


def count_nonzeros(model: nn.Module) -> int:
    """Parameters that are not zero, masks applied."""
    masked = {id(getattr(m, a)): effective_weight(m, a) for _, m, a in prunable(model)}
    n = 0
    for p in model.parameters():
        w = masked.get(id(p))
        n += int(np.count_nonzero(p.numpy() if w is None else w))
    for m in [model] + model._children():
        if isinstance(m, SparseLinear):
            n += m.nnz + (0 if m.bias_array is None else int(np.count_nonzero(m.bias_array)))
    return n


def model_bytes(model: nn.Module) -> dict[str, int | None]:
    """Stored bytes of the whole model in each format of ``sparse.FORMATS``.

    The format applies to the prunable weights (and ``SparseLinear`` weights); biases and
    norm parameters are stored dense float32 in every format. ``"2:4"`` is None unless
    every prunable weight has the 2:4 pattern.
    """
    weights = [effective_weight(m, a) for _, m, a in prunable(model)]
    weight_ids = {id(getattr(m, a)) for _, m, a in prunable(model)}
    for m in [model] + model._children():
        if isinstance(m, SparseLinear):
            weights.append(m.weight_numpy())
    other = 4 * sum(p.size for p in model.parameters() if id(p) not in weight_ids)
    for m in [model] + model._children():
        if isinstance(m, SparseLinear) and m.bias_array is not None:
            other += 4 * m.bias_array.size
    out = {}
    for fmt in FORMATS:
        sizes = [stored_bytes(w, fmt) for w in weights]
        out[fmt] = None if any(s is None for s in sizes) else int(sum(sizes) + other)
    return out


def stored_model_bytes(model: nn.Module) -> int:
    """Bytes the model holds *as it is*: every parameter and buffer at its dtype's size
    (masks included: a masked model stores its zeros *and* a mask), plus each
    ``SparseLinear`` in its own format (``csr`` or ``2:4``)."""
    n = sum(t.size * np.dtype(t.dtype).itemsize
            for _, t in model.named_parameters() + model.named_buffers())
    for m in [model] + model._children():
        if isinstance(m, SparseLinear):
            n += stored_bytes(m.weight_numpy(), m.fmt)
            n += 0 if m.bias_array is None else 4 * m.bias_array.size
    return int(n)


@contextlib.contextmanager
def _recording(model: nn.Module, log: list):
    """A forward hook on each counted layer appends ``(layer, in_shape, out_shape)``."""
    counted = (nn.Linear, nn.Conv, DepthwiseSeparableConv, SparseLinear)

    def note(layer, args, out):
        log.append((layer, tuple(args[0].shape), tuple(out.shape)))

    handles = [m.register_forward_hook(note) for _, m in model.named_modules()
               if isinstance(m, counted)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def layer_flops(layer, in_shape, out_shape) -> tuple[int, int]:
    """``(dense FLOPs, FLOPs by nonzero weights)`` of one layer call, per batch given."""
    if isinstance(layer, SparseLinear):
        rows = int(np.prod(in_shape[:-1]))
        return 2 * rows * layer.in_features * layer.out_features, 2 * rows * layer.nnz
    if isinstance(layer, nn.Linear):
        rows = int(np.prod(in_shape[:-1]))
        w = effective_weight(layer)
        return 2 * rows * w.size, 2 * rows * int(np.count_nonzero(w))
    n, ho, wo = out_shape[:3]
    pixels = n * ho * wo
    if isinstance(layer, nn.Conv):
        w = effective_weight(layer)
        return 2 * pixels * w.size, 2 * pixels * int(np.count_nonzero(w))
    # depthwise-separable: K*K per channel, then the pointwise matmul
    dw = layer.depthwise.size
    pw = effective_weight(layer, "pointwise")
    return (2 * pixels * (dw + pw.size),
            2 * pixels * (int(np.count_nonzero(layer.depthwise.numpy()))
                          + int(np.count_nonzero(pw))))


def count_flops(model: nn.Module, example, sparse: bool = False) -> int:
    """FLOPs of one forward pass per example; ``example`` is one input (or a batch, then
    the count is divided by its size). ``sparse=True`` counts only nonzero weights."""
    x = example.numpy() if isinstance(example, Tensor) else np.asarray(example, np.float32)
    device = next((p.device for p in model.parameters()), None)
    log: list = []
    model.eval()
    with _recording(model, log), no_grad():
        model(Tensor(x, device=device, requires_grad=False))
    total = sum(layer_flops(m, i, o)[1 if sparse else 0] for m, i, o in log)
    return int(round(total / x.shape[0]))
