"""Tensor ops with their gradients (needle's ``ops``).

Every op is a class with ``compute`` (on NDArrays) and ``gradient`` (on Tensors) and a
lowercase function that applies it: ``ops.add(a, b)``, ``ops.summation(a, axes=(0,))``.
The files group them by kind:

- ``ops_mathematic``: elementwise arithmetic, powers, log/exp, activations, maximum
- ``ops_shape``: transpose/permute, reshape, broadcast_to, summation, matmul
- ``ops_logarithmic``: logsumexp (stable), log_softmax (alias ``logsoftmax``), softmax
- ``ops_tensor``: tuples, stack/split, flip, pad/crop, dilate/undilate
- ``ops_conv``: im2col/col2im and the 2-D convolution built on them
- ``ops_transformer``: take (embedding), cast, concat, slice, where, erf, gelu, and
  softmax, layer_norm, reduce_mean as one op each
"""

from .ops_mathematic import (  # noqa: F401
    AddScalar, DivScalar, EWiseAdd, EWiseDiv, EWiseMul, EWisePow, Exp, Log, Maximum,
    MaximumScalar, MulScalar, Negate, PowerScalar, ReLU, Sigmoid, Tanh, add, add_scalar,
    broadcast_pair, divide, divide_scalar, exp, log, maximum, mul_scalar, multiply, negate,
    power, power_scalar, relu, sigmoid, tanh,
)
from .ops_shape import (  # noqa: F401
    BroadcastTo, MatMul, Permute, Reshape, Summation, Transpose, broadcast_to, matmul,
    permute, reshape, summation, transpose,
)
from .ops_logarithmic import LogSumExp, log_softmax, logsoftmax, logsumexp  # noqa: F401
from .ops_tensor import (  # noqa: F401
    Crop, Dilate, Flip, MakeTensorTuple, Pad, Split, Stack, TupleGetItem, UnDilate, crop,
    dilate, flip, make_tuple, pad, split, stack, tuple_get_item, undilate,
)
from .ops_conv import Col2Im, Im2Col, col2im, conv, im2col  # noqa: F401
from .ops_transformer import (  # noqa: F401
    GELU, Cast, Concat, Erf, LayerNorm, ReduceMean, ScatterAddRows, Slice, Softmax, Take, Where,
    cast, concat, erf, gelu, layer_norm, reduce_mean, slice_, softmax, take, where,
)
