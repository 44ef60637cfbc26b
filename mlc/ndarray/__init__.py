"""``mlc.ndarray``: strided n-dimensional arrays on pluggable devices (needle-compatible).

    import mlc.ndarray as nd
    a = nd.array([[1, 2, 3], [4, 5, 6]], device=nd.cpu())
    a.permute((1, 0))            # a view: no data moves
    (a + 1).sum(axis=0)          # numpy broadcasting and reductions
    a @ a.permute((1, 0)).compact()

dtypes: float32 (the default), float64, int8, int32, uint8 (labels and pixels of image data
sets arrive as uint8). Operations promote as numpy does
(python scalars are weak: ``float32_array * 2.5`` stays float32); comparisons return
1/0 in the promoted dtype (there is no bool); integer sums and int8 @ int8 give int32.

Files, in reading order:
- ``shapes.py``      shape/stride arithmetic and the checks that guard every kernel;
- ``ndarray.py``     the NDArray class: fields, views, compact, setitem;
- ``elementwise.py``, ``reduce.py``, ``linalg.py``  the operations (dtype and shape rules);
- ``creation.py``    array, full, zeros, rand, concatenate, stack, ...;
- ``functions.py``   needle/numpy-style free functions: ``nd.exp(a)``, ``nd.sum(a, axis)``;
- ``device.py``      devices and the backend interface ``BACKEND_API``;
- ``backends/``      one module of kernels per device, all with the same functions:
  ``numpy.py`` (the reference, read it first), ``cpu/`` (Numba: ``__init__.py`` is the
  backend, the kernels are in ``strided.py``, ``elementwise.py``, ``reduce.py``,
  ``matmul.py``, compiled by ``jit.py``), ``cuda/`` (Numba-CUDA: ``__init__.py`` and
  ``kernels.py``).
"""

from .._env import cuda_simulated
from .creation import (array, concatenate, empty, full, ones, rand, randn, split, stack,
                       zeros)
from .device import BACKEND_API, BackendDevice, all_devices, cpu, cpu_numpy, cuda, default_device
from .functions import (abs, broadcast_to, exp, flip, log, max, maximum, minimum, permute,
                        reshape, sqrt, sum, summation, tanh)
from .linalg import matmul
from .ndarray import NDArray
from .shapes import DTYPES, broadcast_shapes

__all__ = [
    "NDArray", "BackendDevice", "BACKEND_API", "DTYPES",
    "cpu", "cpu_numpy", "cuda", "all_devices", "default_device", "cuda_simulated",
    "array", "empty", "full", "zeros", "ones", "rand", "randn",
    "concatenate", "stack", "split", "matmul", "broadcast_shapes",
    "broadcast_to", "reshape", "permute", "flip", "maximum", "minimum", "log", "exp", "tanh",
    "sqrt", "abs", "sum", "summation", "max",
]
