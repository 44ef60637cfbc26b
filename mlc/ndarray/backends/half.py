"""float16 storage, float32 arithmetic: the conversion at the kernel boundary.

Numba has no float16 arithmetic on the CPU, and numpy's float16 reductions and products
accumulate in float16. So float16 is a *storage* format here: every backend function
that meets a float16 buffer sees instead a float32 copy of it (exact: every float16 is a
float32), runs its float32 kernel, and the buffers it writes (``out``) are rounded back
to float16 (round to nearest even, as numpy's ``astype`` does). An elementwise op thus
rounds once, like hardware fp16 with fp32 compute; a sum or a matmul accumulates in
float32 and rounds once at the end (as fp16 tensor cores do).

``widen_float16(namespace)`` wraps a backend module's kernel functions in place; the
backends call it last. The transfers (``to_numpy`` / ``from_numpy`` / ``fill``) are left
alone: they move float16 bytes as they are.

bfloat16, the float8 formats and float4_e2m1fn (``shapes.STORAGE_DTYPES``, from
``ml_dtypes``) are storage formats in exactly the same way: Numba knows none of them, so
the same shadow copy in float32 is every kernel's view of them, and a written buffer is
rounded back to its own format (ml_dtypes rounds to nearest even; float8 without
infinities gives NaN on overflow, which is why ONNX's saturating ``Cast`` clips first).
The 4- and 2-bit integers go through the same shadow (their values are exact in
float32); ``mlc.ndarray`` refuses arithmetic on them before a kernel is reached, so only
copies and ``astype`` meet them here.
"""

from __future__ import annotations

import functools

import numpy as np

from ..shapes import STORAGE_DTYPES

SKIP = frozenset({"to_numpy", "from_numpy", "fill", "strided_view", "Array"})


class Shadow:
    """A float32 stand-in for a storage-format buffer (a temporary: its bytes are not
    counted)."""

    def __init__(self, buf, to_host, to_device):
        self.source = buf
        self._to_device = to_device
        self.array = to_device(to_host(buf.array).astype(np.float32))
        self.dtype = "float32"

    @property
    def size(self) -> int:
        return self.array.size

    def write_back(self, to_host) -> None:
        host = to_host(self.array).astype(self.source.array.dtype)
        if isinstance(self.source.array, np.ndarray):
            self.source.array[:] = host
        else:                                   # a device array
            self.source.array.copy_to_device(host)


def _host_numpy(arr):
    return arr


def _device_numpy(arr):
    return arr


def _wrap(fn, to_host, to_device):
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        for a in args:                          # the common case first, cheaply
            if getattr(a, "dtype", None) in STORAGE_DTYPES:
                break
        else:
            return fn(*args, **kwargs)
        shadows = {}
        new_args = []
        for a in args:
            if getattr(a, "dtype", None) in STORAGE_DTYPES and hasattr(a, "array"):
                if id(a) not in shadows:
                    shadows[id(a)] = Shadow(a, to_host, to_device)
                new_args.append(shadows[id(a)])
            else:
                new_args.append(a)
        result = fn(*new_args, **kwargs)
        for s in shadows.values():              # what a kernel may have written
            s.write_back(to_host)
        return result

    wrapped.float16_widened = True
    return wrapped


def widen_float16(namespace: dict, to_host=_host_numpy, to_device=_device_numpy) -> None:
    """Wrap every public kernel function of a backend module (its ``globals()``)."""
    for name, fn in list(namespace.items()):
        if (name.startswith("_") or name in SKIP or not callable(fn) or isinstance(fn, type)
                or getattr(fn, "__module__", None) != namespace["__name__"]
                or getattr(fn, "float16_widened", False)):
            continue
        namespace[name] = _wrap(fn, to_host, to_device)
