"""Devices: a name plus a Python module of kernels over flat 1-D buffers.

Every backend module offers the same functions (see ``BACKEND_API``), so NDArray never
needs to know which device it is on: it computes shapes and strides, then calls
``device.ewise_add(a, b, out)`` and the module does the arithmetic.

- ``cpu_numpy()``  the reference, written with numpy (``backends/numpy.py``);
- ``cpu()``        Numba ``@njit`` kernels, the default (``backends/cpu/``);
- ``cuda()``       Numba-CUDA kernels (``backends/cuda/``), on a GPU or in Numba's
  CUDA simulator.

Backend modules are imported on first use, so ``import mlc.ndarray`` does not pay for
Numba's CUDA support unless you ask for ``cuda()``.
"""

from __future__ import annotations

import functools
import importlib

import numpy as np

#: The interface every backend module implements. ``ndarray.py`` uses nothing else.
BACKEND_API = (
    "Array", "to_numpy", "from_numpy", "fill", "compact", "ewise_setitem", "scalar_setitem",
    # binary ops, array-array and array-scalar; the scalar_r* forms compute ``val <op> a``
    "ewise_add", "ewise_sub", "ewise_mul", "ewise_div", "ewise_power",
    "ewise_maximum", "ewise_minimum",
    "ewise_eq", "ewise_ne", "ewise_lt", "ewise_le", "ewise_gt", "ewise_ge",
    "scalar_add", "scalar_sub", "scalar_mul", "scalar_div", "scalar_power",
    "scalar_maximum", "scalar_minimum",
    "scalar_eq", "scalar_ne", "scalar_lt", "scalar_le", "scalar_gt", "scalar_ge",
    "scalar_rsub", "scalar_rdiv", "scalar_rpower",
    # unary ops and casts
    "ewise_neg", "ewise_log", "ewise_exp", "ewise_tanh", "ewise_abs", "ewise_sqrt", "ewise_erf",
    "ewise_astype",
    # reductions over the middle axis of a compact (outer, reduce, inner) array
    "reduce_sum", "reduce_max",
    # (batched) matrix products of compact row-major operands
    "matmul", "matmul_tiled",
)


class BackendDevice:
    """A device: ``name`` and the module of kernels that implement it.

    Two devices are equal when they have the same name. Attribute look-ups that are not
    the device's own (``device.ewise_add``) go to the backend module.
    """

    def __init__(self, name: str, module_name: str):
        self.name = name
        self._module_name = module_name
        self._mod = None

    @property
    def mod(self):
        """The backend module, imported on first use."""
        if self._mod is None:
            if not self.enabled():
                raise RuntimeError(f"device {self!r} is not available here")
            self._mod = importlib.import_module(self._module_name, __package__)
        return self._mod

    def enabled(self) -> bool:
        """Whether this device can run here (``cuda()`` needs a GPU or the simulator)."""
        if self.name == "cuda":
            return _cuda_available()
        return True

    @property
    def memory(self):
        """This device's :class:`~mlc.ndarray.accounting.MemoryCounter`: the bytes its
        buffers hold now (``live``) and at most since ``reset_peak()`` (``peak``)."""
        from .accounting import counter

        return counter(self.name)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.mod, name)

    def __eq__(self, other):
        return isinstance(other, BackendDevice) and self.name == other.name

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return f"{self.name}()"

    # ---- needle-style constructors: device.randn(2, 3), device.full((2, 3), 1.0) -------
    def empty(self, shape, dtype="float32"):
        from .creation import empty

        return empty(shape, dtype, device=self)

    def full(self, shape, fill_value, dtype="float32"):
        from .creation import full

        return full(shape, fill_value, dtype, device=self)

    def rand(self, *shape, dtype="float32", rng=None):
        """Uniform in [0, 1), drawn with numpy's RNG (seed it with ``np.random.seed``)."""
        from .creation import rand

        return rand(*shape, dtype=dtype, device=self, rng=rng)

    def randn(self, *shape, dtype="float32", rng=None):
        """Standard normal, drawn with numpy's RNG (seed it with ``np.random.seed``)."""
        from .creation import randn

        return randn(*shape, dtype=dtype, device=self, rng=rng)

    def one_hot(self, n, i, dtype="float32"):
        """Rows of the ``n x n`` identity picked by the integer labels ``i``."""
        from .ndarray import NDArray

        labels = np.asarray(i.numpy() if isinstance(i, NDArray) else i).astype(np.int64)
        return NDArray(np.eye(n, dtype=dtype)[labels], device=self, dtype=dtype)


@functools.cache
def _cuda_available() -> bool:
    try:
        from numba import cuda as numba_cuda

        return bool(numba_cuda.is_available())
    except Exception:  # numba without CUDA support, or a broken driver
        return False


_CPU = BackendDevice("cpu", ".backends.cpu")
_CPU_NUMPY = BackendDevice("cpu_numpy", ".backends.numpy")
_CUDA = BackendDevice("cuda", ".backends.cuda")


def cpu() -> BackendDevice:
    """The CPU with Numba kernels (the default device)."""
    return _CPU


def cpu_numpy() -> BackendDevice:
    """The CPU with numpy kernels: the reference the others are tested against."""
    return _CPU_NUMPY


def cuda() -> BackendDevice:
    """An NVIDIA GPU through Numba-CUDA (or Numba's CUDA simulator when there is none)."""
    return _CUDA


def all_devices() -> list[BackendDevice]:
    """Every device, enabled here or not (check ``d.enabled()``)."""
    return [cpu(), cpu_numpy(), cuda()]


def default_device() -> BackendDevice:
    return cpu()
