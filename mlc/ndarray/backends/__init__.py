"""One module of kernels per device, all implementing the same interface.

``mlc.ndarray.device.BACKEND_API`` lists the functions (``compact``, ``ewise_add``,
``reduce_sum``, ``matmul``, ...); each works on flat buffers with shapes and strides
passed as plain arguments, so NDArray can run on any of them unchanged:

- ``numpy.py``  the reference, written with numpy: read it first;
- ``cpu/``      the default device: the same functions as Numba ``@njit`` kernels;
- ``cuda/``     Numba-CUDA kernels, on a GPU or in Numba's CUDA simulator.

A device imports its backend on first use (``mlc.ndarray.device``), so ``import
mlc.ndarray`` does not pay for Numba or CUDA until an array lives there.
"""
