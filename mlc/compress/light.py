"""Lighter architectures: the depthwise-separable convolution (MobileNet, Howard et al. 2017).

A standard ``K x K`` convolution from ``C_in`` to ``C_out`` channels mixes space and
channels at once: every output channel looks at a ``K x K x C_in`` window,

    params = K^2 C_in C_out,          multiply-adds per pixel = K^2 C_in C_out.

MobileNet factors it into two steps:

1. **depthwise**: one ``K x K`` filter *per input channel*, no mixing of channels
   (``K^2 C_in`` weights): ``d[n, i, j, c] = sum_{a, b} x[n, i + a, j + b, c] w[a, b, c]``;
2. **pointwise**: a ``1 x 1`` convolution, i.e. a matmul over channels
   (``C_in C_out`` weights): ``y = d @ P``.

Together ``K^2 C_in + C_in C_out`` instead of ``K^2 C_in C_out``: a fraction
``1 / C_out + 1 / K^2`` of the cost, about 8-9x less for 3x3 kernels and many channels.

Here both steps are built from ``mlc.ops`` with the same ``im2col`` windows as
``nn.Conv``: the depthwise step multiplies the windows ``(N, H', W', K, K, C)`` by the
filters ``(K, K, C)`` elementwise and sums over the window. Autodiff gives the backward.
On a CPU the FLOPs drop more than the time: the depthwise step is an elementwise
multiply and a reduction (memory-bound), the pointwise a small matmul.
"""

from __future__ import annotations

import math

import numpy as np

from .. import init, ops
from ..nn import Module, Parameter
from .masks import effective_weight

__all__ = ["DepthwiseSeparableConv", "conv_cost"]


class DepthwiseSeparableConv(Module):
    """Depthwise ``K x K`` conv (one filter per channel) then pointwise ``1 x 1`` conv.

    NHWC in, NHWC out, like ``nn.Conv``: ``(N, H, W, C_in) -> (N, H', W', C_out)``,
    ``padding=None`` meaning ``K // 2``. ``depthwise`` has shape ``(K, K, C_in)``,
    ``pointwise`` ``(C_in, C_out)`` (pruned like a Linear's weight), ``bias`` ``(C_out,)``.
    """

    prunable_weights = ("pointwise",)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, bias: bool = True, padding: int | None = None, device=None,
                 dtype: str = "float32"):
        super().__init__()
        k = kernel_size
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = k, stride
        self.padding = k // 2 if padding is None else padding
        self.depthwise = Parameter(init.kaiming_uniform(k * k, k * k * in_channels,
                                                        shape=(k, k, in_channels),
                                                        device=device, dtype=dtype))
        self.pointwise = Parameter(init.kaiming_uniform(in_channels, out_channels,
                                                        device=device, dtype=dtype))
        if bias:
            bound = 1.0 / math.sqrt(in_channels)
            self.bias = Parameter(init.rand(out_channels, low=-bound, high=bound,
                                            device=device, dtype=dtype))
        else:
            self.bias = None

    def forward(self, x):
        if x.ndim != 4 or x.shape[3] != self.in_channels:
            raise ValueError(f"DepthwiseSeparableConv({self.in_channels}, "
                             f"{self.out_channels}) expects (N, H, W, {self.in_channels}), "
                             f"got {x.shape}")
        k, c, p = self.kernel_size, self.in_channels, self.padding
        if p:
            x = ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        cols = ops.im2col(x, (k, k), self.stride)            # (N, H', W', K, K, C)
        n, ho, wo = cols.shape[:3]
        windows = ops.reshape(cols, (n * ho * wo, k * k, c))
        filters = ops.broadcast_to(ops.reshape(self.depthwise, (1, k * k, c)), windows.shape)
        depth = ops.summation(windows * filters, axes=(1,))  # (N H' W', C): no channel mixing
        y = ops.matmul(depth, self.pointwise)                # (N H' W', C_out)
        if self.bias is not None:
            y = y + ops.broadcast_to(ops.reshape(self.bias, (1, self.out_channels)), y.shape)
        return ops.reshape(y, (n, ho, wo, self.out_channels))

    # -- hooks for structured pruning (structured.py) --------------------------------
    def output_importance(self) -> np.ndarray:
        return np.abs(effective_weight(self, "pointwise")).sum(axis=0)

    def slice_outputs(self, keep) -> None:
        self._set("pointwise", np.take(self.pointwise.numpy(), keep, axis=1))
        if getattr(self, "pointwise_mask", None) is not None:
            self._set_buffer("pointwise_mask", np.take(self.pointwise_mask.numpy(), keep, 1))
        if self.bias is not None:
            self._set("bias", self.bias.numpy()[keep])
        self.out_channels = int(len(keep))

    def slice_inputs(self, keep) -> None:
        self._set("depthwise", self.depthwise.numpy()[:, :, keep])
        self._set("pointwise", self.pointwise.numpy()[keep, :])
        if getattr(self, "pointwise_mask", None) is not None:
            self._set_buffer("pointwise_mask", self.pointwise_mask.numpy()[keep, :])
        self.in_channels = int(len(keep))

    def _set(self, name, arr):
        old = getattr(self, name)
        setattr(self, name, Parameter(np.ascontiguousarray(arr), device=old.device,
                                      dtype=old.dtype))

    def _set_buffer(self, name, arr):
        from ..autograd import Tensor

        old = getattr(self, name)
        setattr(self, name, Tensor(np.ascontiguousarray(arr), device=old.device,
                                   dtype=old.dtype, requires_grad=False))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


def conv_cost(in_channels: int, out_channels: int, kernel_size: int, out_pixels: int) -> dict:
    """Parameters (no bias) and FLOPs (2 per multiply-add) of a standard and a
    depthwise-separable convolution producing ``out_pixels`` pixels."""
    k2 = kernel_size * kernel_size
    std_p = k2 * in_channels * out_channels
    sep_p = k2 * in_channels + in_channels * out_channels
    return dict(standard_params=std_p, separable_params=sep_p,
                standard_flops=2 * std_p * out_pixels, separable_flops=2 * sep_p * out_pixels,
                ratio=sep_p / std_p)
