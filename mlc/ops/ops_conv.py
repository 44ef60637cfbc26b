"""2-D convolution as im2col + matmul (NHWC activations, (K, K, C_in, C_out) weights).

A convolution reads, for every output pixel, a K x K x C window of the input and takes
its dot product with each filter. ``im2col`` lays those windows out side by side
*without computing anything*: with input strides ``(sN, sH, sW, sC)`` the 6-D view

    shape   (N, H_out, W_out, K, K, C)
    strides (sN, sH * stride, sW * stride, sH, sW, sC)

addresses exactly the window of output pixel ``(n, i, j)`` at ``[n, i, j]``. Made
compact and reshaped to ``(N * H_out * W_out, K * K * C)`` it multiplies the weights
reshaped to ``(K * K * C, C_out)``: one big matmul does the whole convolution.

The gradient needs no new idea: matmul and reshape have theirs, and the adjoint of
im2col is ``col2im``, which adds every window back to where it was read from (windows
overlap, so their contributions add up). ``col2im``'s own adjoint is ``im2col``, so
convolutions can be differentiated twice.
"""

from __future__ import annotations

from ..autograd.tensor import Tensor, TensorOp  # the module: see the end of tensor.py
from .. import ndarray as nd
from .ops_shape import matmul, reshape
from .ops_tensor import pad


def _out_size(n: int, k: int, stride: int) -> int:
    return (n - k) // stride + 1


class Im2Col(TensorOp):
    """NHWC ``(N, H, W, C)`` -> windows ``(N, H_out, W_out, KH, KW, C)``."""

    def __init__(self, kernel: tuple[int, int], stride: int):
        self.kernel = kernel
        self.stride = stride

    def compute(self, a):
        a = a.compact()
        n, h, w, c = a.shape
        kh, kw = self.kernel
        s_n, s_h, s_w, s_c = a.strides
        ho, wo = _out_size(h, kh, self.stride), _out_size(w, kw, self.stride)
        windows = a.as_strided((n, ho, wo, kh, kw, c),
                               (s_n, s_h * self.stride, s_w * self.stride, s_h, s_w, s_c))
        return windows.compact()

    def gradient(self, out_grad, node):
        return col2im(out_grad, node.inputs[0].shape, self.kernel, self.stride)


def im2col(x, kernel, stride: int = 1):
    if x.ndim != 4:
        raise ValueError(f"im2col: expects NHWC input with 4 axes, got shape {x.shape}")
    kh, kw = kernel
    if kh > x.shape[1] or kw > x.shape[2] or stride < 1:
        raise ValueError(f"im2col: kernel {kernel} with stride {stride} does not fit "
                         f"input of shape {x.shape}")
    return Im2Col((int(kh), int(kw)), int(stride))(x)


class Col2Im(TensorOp):
    """Windows ``(N, H_out, W_out, KH, KW, C)`` -> ``(N, H, W, C)``, overlaps added."""

    def __init__(self, shape: tuple, kernel: tuple[int, int], stride: int):
        self.shape = tuple(shape)
        self.kernel = kernel
        self.stride = stride

    def compute(self, cols):
        n, ho, wo, kh, kw, c = cols.shape
        s = self.stride
        out = nd.full(self.shape, 0.0, dtype=cols.dtype, device=cols.device)
        # one strided add per kernel offset (K*K of them), each touching every window
        for di in range(kh):
            for dj in range(kw):
                dst = (slice(None), slice(di, di + s * (ho - 1) + 1, s),
                       slice(dj, dj + s * (wo - 1) + 1, s), slice(None))
                src = cols[:, :, :, di:di + 1, dj:dj + 1, :].compact().reshape((n, ho, wo, c))
                out[dst] = out[dst] + src
        return out

    def gradient(self, out_grad, node):
        return im2col(out_grad, self.kernel, self.stride)


def col2im(cols, shape, kernel, stride: int = 1):
    return Col2Im(tuple(shape), (int(kernel[0]), int(kernel[1])), int(stride))(cols)


def conv(x: Tensor, w: Tensor, stride: int = 1, padding: int = 0) -> Tensor:
    """``conv(x, w, stride, padding)``: x ``(N, H, W, C_in)``, w ``(K, K, C_in, C_out)``.

    Output ``(N, H_out, W_out, C_out)`` with ``H_out = (H + 2 * padding - K) // stride + 1``.
    """
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv: expects x (N, H, W, C_in) and w (K, K, C_in, C_out), got "
                         f"shapes {x.shape} and {w.shape}")
    kh, kw, c_in, c_out = w.shape
    if x.shape[3] != c_in:
        raise ValueError(f"conv: x has {x.shape[3]} channels but w expects {c_in} "
                         f"(shapes {x.shape} and {w.shape})")
    if stride < 1 or padding < 0:
        raise ValueError(f"conv: stride must be >= 1 and padding >= 0, got {stride}, {padding}")
    if padding:
        x = pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    n = x.shape[0]
    cols = im2col(x, (kh, kw), stride)
    _, ho, wo = cols.shape[:3]
    out = matmul(reshape(cols, (n * ho * wo, kh * kw * c_in)),
                 reshape(w, (kh * kw * c_in, c_out)))
    return reshape(out, (n, ho, wo, c_out))
