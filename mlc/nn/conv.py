"""``Conv``: a 2-D convolution layer on NHWC images (built on ``ops.conv``)."""

from __future__ import annotations

import math

from .. import init, ops
from .module import Module, Parameter


class Conv(Module):
    """Input ``(N, H, W, C_in)``, weight ``(K, K, C_in, C_out)``, output
    ``(N, H_out, W_out, C_out)``.

    ``padding=None`` means "same" padding ``K // 2`` (as in needle): with stride 1 an
    odd kernel keeps H and W. The weight is Kaiming-uniform with
    ``fan_in = K * K * C_in``; the bias is uniform on ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 bias: bool = True, padding: int | None = None, device=None,
                 dtype: str = "float32"):
        super().__init__()
        if isinstance(kernel_size, tuple):
            kernel_size = kernel_size[0]
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = kernel_size // 2 if padding is None else padding
        k = kernel_size
        fan_in = k * k * in_channels
        self.weight = Parameter(init.kaiming_uniform(
            fan_in, k * k * out_channels, shape=(k, k, in_channels, out_channels),
            device=device, dtype=dtype))
        if bias:
            bound = 1.0 / math.sqrt(fan_in)
            self.bias = Parameter(init.rand(out_channels, low=-bound, high=bound,
                                            device=device, dtype=dtype))
        else:
            self.bias = None

    def forward(self, x):
        y = ops.conv(x, self.weight, stride=self.stride, padding=self.padding)
        if self.bias is not None:
            y = y + self.bias  # (C_out,) broadcasts over N, H, W
        return y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")
