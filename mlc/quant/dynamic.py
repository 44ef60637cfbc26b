"""Dynamic quantization: int8 weights made once, activations quantized at run time.

Static post-training quantization (:mod:`.ptq`) fixes every activation's range ahead of
time from calibration batches. **Dynamic** quantization (PyTorch's
``torch.ao.quantization.quantize_dynamic``, ONNX Runtime's ``MatMulInteger`` path) fixes
only the *weights* ahead of time (symmetric int8, a scale per output channel) and,
at every call, measures the input's own range, quantizes it with that range, runs the
int8 x int8 -> int32 product and scales the accumulators straight back to float::

    s_x, z_x = range of this x            # one min/max pass over the input
    q_x = quantize(x, s_x, z_x)           # uint8 codes
    acc = (q_x - z_x) @ q_w               # int32, exact
    y = s_x * s_w[j] * acc + b            # float32 out: no output range is needed

No calibration, no stale range (a batch that is larger than anything calibrated is not
clipped), and the output stays float, so the next op needs no quantized form. The cost
is the min/max pass and the float epilogue at every call. It pays where the *weights*
dominate the time: batch-1 inference of large Linear layers (LSTMs, transformers), where
reading 1-byte weights instead of 4-byte ones is the saving and the activation is a
single short row.

``granularity="tensor"`` gives the whole batch one range (PyTorch's default): then a
row's output depends on the *other* rows of its batch. ``granularity="row"`` gives each
row (each token) its own range, as LLM.int8() and per-token schemes do: a row's output
is then the same whatever it is batched with.

**Why x86 wants 7-bit activations** (``reduce_range``). The fast int8 instruction of
AVX2, ``vpmaddubsw``, multiplies 32 *unsigned* bytes by 32 *signed* bytes and adds each
adjacent pair of products into an **int16**, with saturation (:func:`maddubs` computes
it). Two products of ``255 * 127`` sum to 64,770, past int16's 32,767, so the result is
silently clamped. FBGEMM's answer (PyTorch's ``reduce_range=True`` for activations on
x86) is to quantize activations to ``[0, 127]``: ``2 * 127 * 128 = 32,512`` always fits,
at the price of one bit (about 6 dB of SQNR) on every activation. VNNI's ``vpdpbusd``
sums four products straight into int32 and has no such limit; ARM's ``sdot`` neither.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import Tensor
from .affine import as_numpy, qparams, quantize
from .qops import PackedWeight, qmatmul

__all__ = ["dynamic_qparams", "DynamicLinear", "quantize_dynamic", "maddubs"]

GRANULARITIES = ("tensor", "row")


def _check_options(granularity, reduce_range):
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if not isinstance(reduce_range, (bool, np.bool_)):
        raise TypeError(f"reduce_range must be True or False, got {reduce_range!r}")


def dynamic_qparams(x, granularity: str = "tensor", reduce_range: bool = False):
    """``(scale, zero_point)`` of uint8 codes for ``x`` (2-D, rows x features) from its
    own range: floats and ints for ``granularity="tensor"``, arrays of one per row for
    ``"row"``. ``reduce_range`` uses the codes ``[0, 127]`` (7 bits) instead of
    ``[0, 255]``.

    >>> dynamic_qparams(np.array([[0.0, 2.55]], np.float32))
    (0.009999999776482582, 0)
    """
    _check_options(granularity, reduce_range)
    x = np.asarray(as_numpy(x), np.float32)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"dynamic_qparams expects a non-empty 2-D array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("dynamic_qparams: the input holds NaN or infinity")
    bits = 7 if reduce_range else 8
    if granularity == "tensor":
        return qparams(float(x.min()), float(x.max()), "uint8", num_bits=bits)
    return qparams(x.min(axis=1), x.max(axis=1), "uint8", num_bits=bits)


class DynamicLinear:
    """``y = x @ weight + bias`` with int8 weights and run-time-quantized activations.

    ``weight`` is ``(K, N)`` float (as ``nn.Linear`` stores it), quantized once:
    symmetric int8 codes with a scale per output column (``w_q``, ``s_w``), packed for
    the CPU kernel. Each call quantizes ``x`` (``(M, K)`` float, or any leading axes)
    with :func:`dynamic_qparams`, multiplies codes in int32 and returns float32.
    """

    def __init__(self, weight, bias=None, granularity: str = "tensor",
                 reduce_range: bool = False):
        from .passes import quantize_weight

        _check_options(granularity, reduce_range)
        w = np.asarray(as_numpy(weight), np.float32)
        if w.ndim != 2 or w.size == 0:
            raise ValueError(f"DynamicLinear: the weight must be a non-empty (K, N) matrix, "
                             f"got shape {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError("DynamicLinear: the weight holds NaN or infinity")
        self.w_q, self.s_w = quantize_weight(w, per_channel=True)
        self.packed = PackedWeight(self.w_q)
        self.bias = (np.zeros(w.shape[1], np.float32) if bias is None
                     else np.asarray(as_numpy(bias), np.float32).reshape(-1))
        if self.bias.shape != (w.shape[1],):
            raise ValueError(f"DynamicLinear: bias of {self.bias.size} values for "
                             f"{w.shape[1]} output columns")
        self.granularity, self.reduce_range = granularity, bool(reduce_range)

    @property
    def shape(self) -> tuple[int, int]:
        return self.packed.k, self.packed.n

    @property
    def nbytes(self) -> int:
        """Stored bytes: the int8 codes, a float32 scale and a float32 bias per column."""
        return self.packed.nbytes + self.s_w.nbytes + self.bias.nbytes

    def accumulate(self, x):
        """The steps of one call, for reading and testing: ``(q_x, s_x, z_x, acc)``, the
        input's codes and qparams and the exact int32 accumulator ``(q_x - z_x) @ w_q``."""
        k = self.packed.k
        if x.ndim != 2 or x.shape[1] != k:
            raise ValueError(f"DynamicLinear{self.shape}: input of shape {x.shape} does not "
                             f"have {k} features")
        s_x, z_x = dynamic_qparams(x, self.granularity, self.reduce_range)
        bits = 7 if self.reduce_range else 8
        if self.granularity == "tensor":
            q_x = quantize(x, s_x, z_x, "uint8", num_bits=bits)
            return q_x, s_x, z_x, qmatmul(q_x, self.packed, za=z_x)
        q_x = quantize(x, s_x, z_x, "uint8", axis=0, num_bits=bits)
        # a zero point per row: the kernel folds none, so subtract z_x[i] * colsum[j] here
        acc = qmatmul(q_x, self.packed).astype(np.int64)
        acc -= z_x.astype(np.int64)[:, None] * self.packed.colsum[None, :]
        return q_x, s_x, z_x, acc.astype(np.int32)

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(as_numpy(x), np.float32)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
        _, s_x, _, acc = self.accumulate(x2)
        s_x = np.asarray(s_x, np.float32).reshape(-1, 1)
        y = (acc * s_x) * self.s_w + self.bias
        return y.astype(np.float32).reshape(lead + (self.packed.n,))

    def __repr__(self):
        return (f"DynamicLinear({self.packed.k}->{self.packed.n}, {self.granularity}, "
                f"{'7' if self.reduce_range else '8'}-bit activations)")


class DynamicModule(nn.Module):
    """An ``nn.Linear`` swapped for its :class:`DynamicLinear` (inference only: the
    result is a constant of the tape, so no gradient flows through it)."""

    def __init__(self, linear: nn.Linear, granularity: str, reduce_range: bool):
        super().__init__()
        bias = None if linear.bias is None else linear.bias.numpy()
        self.op = DynamicLinear(linear.weight.numpy(), bias, granularity, reduce_range)
        self.device = linear.weight.device

    def forward(self, x):
        return Tensor(self.op(x), device=self.device, requires_grad=False)


def quantize_dynamic(model, granularity: str = "tensor", reduce_range: bool = False):
    """A copy of ``model`` (any ``nn.Module`` tree) whose ``nn.Linear`` layers are
    dynamically quantized (:class:`DynamicLinear`); everything else stays float, as in
    PyTorch's ``quantize_dynamic``. The float model is left unchanged.

    Before and after, for ``Sequential(Linear(64, 64), ReLU(), Linear(64, 10))``::

        Linear(64, 64) -> DynamicModule(DynamicLinear(64->64, tensor, 8-bit activations))
        ReLU()         -> ReLU()                         (float, on dequantized values)
        Linear(64, 10) -> DynamicModule(DynamicLinear(64->10, tensor, 8-bit activations))
    """
    from .qat import _map_tree

    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize_dynamic expects an nn.Module, got {type(model).__name__}")
    _check_options(granularity, reduce_range)
    swapped = []

    def swap(m, path):
        if isinstance(m, nn.Linear):
            swapped.append(path)
            return DynamicModule(m, granularity, reduce_range)
        return None

    new = _map_tree(model, swap)
    if not swapped:
        raise ValueError("quantize_dynamic: the model has no nn.Linear layer to quantize")
    new.eval()
    return new


def maddubs(a, b) -> np.ndarray:
    """What x86's ``vpmaddubsw`` computes: ``a`` uint8 and ``b`` int8, both ``(..., 2m)``;
    each adjacent pair of products ``a[2i] b[2i] + a[2i+1] b[2i+1]`` summed and
    **saturated** to int16, shape ``(..., m)``.

    >>> maddubs(np.array([255, 255], np.uint8), np.array([127, 127], np.int8))
    array([32767], dtype=int16)
    """
    a, b = as_numpy(a), as_numpy(b)
    if a.dtype != np.uint8 or b.dtype != np.int8:
        raise TypeError(f"maddubs multiplies uint8 by int8, got {a.dtype} and {b.dtype}")
    if a.shape != b.shape or a.ndim == 0 or a.shape[-1] % 2:
        raise ValueError(f"maddubs needs two arrays of one shape with an even last axis, got "
                         f"{a.shape} and {b.shape}")
    prod = a.astype(np.int32) * b.astype(np.int32)
    pairs = prod[..., 0::2] + prod[..., 1::2]
    return np.clip(pairs, -(1 << 15), (1 << 15) - 1).astype(np.int16)
