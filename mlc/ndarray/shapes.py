"""Shape, stride and dtype arithmetic shared by NDArray and every backend.

Nothing here touches data: these functions only compute the ``(shape, strides, offset)``
triple that describes a view, and check that a request makes sense *before* any kernel
runs. Numba kernels do not check bounds, so every error has to be caught here, in Python,
with a message that names the shapes, axes or dtypes involved.

Strides are counted in *elements*, not bytes (numpy counts bytes): element ``(i, j, k)``
of a view lives at ``offset + i*strides[0] + j*strides[1] + k*strides[2]`` in the flat
buffer.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Iterable, Sequence

import numpy as np

#: The dtypes every device supports, by name. The narrow floats after float16 are storage
#: formats computed in float32 (``backends/half.py``); their numpy types come from
#: ``ml_dtypes`` (installed with onnx), which registers the names with numpy.
DTYPES = ("float32", "float64", "float16", "int8", "int32", "uint8", "int64",
          "int16", "uint16", "uint32", "uint64")
FLOAT_DTYPES = ("float32", "float64", "float16")
try:
    import ml_dtypes  # registers bfloat16, float8_*, int4, ... with numpy by name
except ImportError:                                     # pragma: no cover
    STORAGE_DTYPES, STORAGE_INT_DTYPES = ("float16",), ()
else:
    STORAGE_DTYPES = ("float16", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz",
                      "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn")
    DTYPES += STORAGE_DTYPES[1:]
    FLOAT_DTYPES += STORAGE_DTYPES[1:]
    # 4- and 2-bit integers (a byte each in ml_dtypes): storage only. They are read and
    # written through the same float32 shadow (every value is exact there), so views,
    # copies and astype work; arithmetic on them is refused (check_arithmetic): numpy's
    # int8 wraps, ml_dtypes' narrow ints do not, and quantized kernels widen them first.
    STORAGE_INT_DTYPES = ("int4", "uint4", "int2", "uint2")
    STORAGE_DTYPES += STORAGE_INT_DTYPES
    DTYPES += STORAGE_INT_DTYPES


def prod(xs: Iterable[int]) -> int:
    return math.prod(xs)


def compact_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Row-major strides of a freshly allocated array: the last axis moves fastest."""
    strides, stride = [], 1
    for n in reversed(shape):
        strides.append(stride)
        stride *= n
    return tuple(reversed(strides))


def is_contiguous(shape: Sequence[int], strides: Sequence[int]) -> bool:
    """Whether the elements sit next to each other in row-major order.

    Axes of length 1 are never stepped along, so their stride does not matter.
    """
    return all(s == c for n, s, c in zip(shape, strides, compact_strides(shape), strict=True)
               if n != 1)


def as_shape(shape, what: str = "shape") -> tuple[int, ...]:
    """Normalise ``3``, ``(2, 3)`` or ``[2, 3]`` to a tuple of non-negative ints."""
    if type(shape) is tuple and all(type(n) is int and n >= 0 for n in shape):
        return shape  # the common case, fast
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        out = tuple(int(operator_index(n)) for n in shape)
    except TypeError:
        raise TypeError(f"{what} must be a tuple of ints, got {shape!r}") from None
    if any(n < 0 for n in out):
        raise ValueError(f"{what} {out} has a negative dimension")
    return out


def operator_index(n):
    """``int(n)`` for integers (python or numpy), TypeError for floats and the rest."""
    if type(n) is int:
        return n
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise TypeError(f"expected an integer, got {n!r}")
    return int(n)


def check_dtype(dtype) -> str:
    """The canonical name of ``dtype`` ("float32", ...), or TypeError if unsupported."""
    if type(dtype) is str and dtype in DTYPES:
        return dtype
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in DTYPES:
        raise TypeError(f"dtype {name} is not supported; use one of {', '.join(DTYPES)}")
    return name


def normalize_axis(axis: int, ndim: int) -> int:
    """A possibly negative axis as a non-negative one, IndexError if out of range."""
    axis = operator_index(axis)
    if not -ndim <= axis < ndim:
        raise IndexError(f"axis {axis} is out of range for an array with {ndim} dimensions")
    return axis % ndim if ndim else axis


def normalize_axes(axes, ndim: int) -> tuple[int, ...]:
    """``None`` (all axes), an int or a tuple of ints as a sorted tuple without repeats."""
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, numbers.Integral):
        axes = (axes,)
    out = tuple(normalize_axis(a, ndim) for a in axes)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {tuple(axes)}")
    return tuple(sorted(out))


def check_permutation(axes: Sequence[int], ndim: int) -> tuple[int, ...]:
    """Validate the argument of ``permute``: each axis exactly once."""
    if len(axes) != ndim:
        raise ValueError(f"permute needs {ndim} axes for an array with {ndim} dimensions, "
                         f"got {tuple(axes)}")
    out = tuple(normalize_axis(a, ndim) for a in axes)
    if sorted(out) != list(range(ndim)):
        raise ValueError(f"axes {tuple(axes)} are not a permutation of {tuple(range(ndim))}")
    return out


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    """numpy's rule: align shapes on the right; each pair of dims must agree or one be 1."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(-ndim, 0):
        dims = {s[i] for s in shapes if len(s) >= -i} - {1}
        if len(dims) > 1:
            raise ValueError("shapes " + " and ".join(str(tuple(s)) for s in shapes)
                             + " cannot be broadcast together")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def broadcast_strides(shape, strides, new_shape) -> tuple[int, ...]:
    """Strides that show an array of ``shape`` as ``new_shape`` without copying.

    New leading axes and stretched axes of length 1 get stride 0: every index along
    them lands on the same element.
    """
    lead = len(new_shape) - len(shape)
    if lead < 0:
        raise ValueError(f"cannot broadcast shape {tuple(shape)} to {tuple(new_shape)}: "
                         "the target has fewer dimensions")
    out = [0] * lead
    for i, (n, s) in enumerate(zip(shape, strides, strict=True)):
        m = new_shape[lead + i]
        if n == m:
            out.append(s)
        elif n == 1:
            out.append(0)
        else:
            raise ValueError(f"cannot broadcast shape {tuple(shape)} to {tuple(new_shape)}: "
                             f"axis {i} has length {n}, expected 1 or {m}")
    return tuple(out)


def reshape_shape(size: int, shape, old_shape) -> tuple[int, ...]:
    """Resolve a single ``-1`` in ``shape`` and check the element count is kept."""
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    shape = tuple(operator_index(n) for n in shape)
    unknown = [i for i, n in enumerate(shape) if n == -1]
    if len(unknown) > 1 or any(n < -1 for n in shape):
        raise ValueError(f"cannot reshape {tuple(old_shape)} to {shape}: "
                         "only one dimension may be -1 and none may be negative")
    if unknown:
        known = prod(n for n in shape if n != -1)
        if known == 0 or size % known:
            raise ValueError(f"cannot reshape array of shape {tuple(old_shape)} "
                             f"(size {size}) to {shape}")
        shape = shape[:unknown[0]] + (size // known,) + shape[unknown[0] + 1:]
    if prod(shape) != size:
        raise ValueError(f"cannot reshape array of shape {tuple(old_shape)} (size {size}) "
                         f"to {shape} (size {prod(shape)})")
    return shape


def index_view(idx, shape, strides, offset):
    """The ``(shape, strides, offset)`` of ``view[idx]`` (basic indexing as in numpy).

    An int picks one position and drops the axis; a slice keeps the axis with
    ``length = len(range(start, stop, step))`` and ``stride * step``; ``None`` inserts an
    axis of length 1; ``...`` stands for as many ``:`` as needed.
    """
    if not isinstance(idx, tuple):
        idx = (idx,)
    n_real = sum(1 for i in idx if i is not None and i is not Ellipsis)
    if sum(1 for i in idx if i is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if n_real > len(shape):
        raise IndexError(f"too many indices for array of shape {tuple(shape)}: "
                         f"{n_real} were given")
    if Ellipsis in idx:
        k = idx.index(Ellipsis)
        idx = idx[:k] + (slice(None),) * (len(shape) - n_real) + idx[k + 1:]
    else:
        idx = idx + (slice(None),) * (len(shape) - n_real)
    new_shape, new_strides, axis = [], [], 0
    for i in idx:
        if i is None:
            new_shape.append(1)
            new_strides.append(0)
            continue
        n, s = shape[axis], strides[axis]
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            new_shape.append(len(range(start, stop, step)))
            new_strides.append(s * step)
            offset += start * s if new_shape[-1] else 0
        elif isinstance(i, numbers.Integral) and not isinstance(i, (bool, np.bool_)):
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n} "
                                 f"(shape {tuple(shape)})")
            offset += (i % n) * s
        else:
            raise IndexError(f"only integers, slices, None and ... are valid indices, "
                             f"got {type(i).__name__}")
        axis += 1
    return tuple(new_shape), tuple(new_strides), offset


def strided_extent(shape, strides, offset) -> tuple[int, int]:
    """The lowest and highest flat position a view touches (for bounds checks)."""
    if prod(shape) == 0:
        return offset, offset
    lo = offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True) if s < 0)
    hi = offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True) if s > 0)
    return lo, hi


def simplify_view(shape, strides) -> tuple[list[int], list[int]]:
    """The same walk with fewer axes: drop length-1 axes, merge axes that step contiguously.

    A compact ``(4, 5, 6)`` view becomes one axis of 120; a transposed matrix stays 2-d.
    Kernels that unravel an index axis by axis do less work on the simplified view. The
    result has at least two axes (a leading ``(1, 0)`` is added as needed).
    """
    dims: list[tuple[int, int]] = []
    for n, s in zip(shape, strides, strict=True):
        if n == 1:
            continue
        if dims and dims[-1][1] == s * n:
            dims[-1] = (dims[-1][0] * n, s)
        else:
            dims.append((n, s))
    while len(dims) < 2:
        dims.insert(0, (1, 0))
    return [n for n, _ in dims], [s for _, s in dims]


# ---- dtype rules -------------------------------------------------------------------------

_NUMPY_OPS = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide,
    "power": np.power, "maximum": np.maximum, "minimum": np.minimum,
}


@functools.lru_cache(maxsize=None)
def _result_dtype(op: str, a: str, b) -> str:
    x = np.ones(1, a)
    y = b if not isinstance(b, str) else np.ones(1, b)
    return _NUMPY_OPS.get(op, np.add)(x, y).dtype.name


def check_arithmetic(op: str, *dtypes) -> None:
    """TypeError for arithmetic on a storage-only integer dtype (int4, ...)."""
    for d in dtypes:
        if d in STORAGE_INT_DTYPES:
            raise TypeError(f"{op} on {d}: {d} is a storage format only; convert with "
                            f".astype('int8') or .astype('float32') first")


def result_dtype(op: str, a: str, b) -> str:
    """numpy's result dtype for ``a <op> b``.

    ``b`` is a dtype name, or a python scalar. Scalars are *weak* as in numpy 2: a float32
    array plus ``2.5`` stays float32, an int32 array plus ``2.5`` becomes float64. numpy
    scalars (``np.float64(2.5)``) are treated as python scalars too. Comparisons have the
    dtype of their promoted inputs (they hold 1 or 0 there).
    """
    check_arithmetic(op, a, b if isinstance(b, str) else a)
    if not isinstance(b, str):
        b = 1.5 if isinstance(b, float) else 1  # a representative of the scalar's kind
    out = _result_dtype(op, a, b)
    if out not in DTYPES:
        raise TypeError(f"{op} of {a} and {b} would give {out}, which is not supported")
    return out


def scalar_value(x):
    """A python scalar from a python or numpy scalar (TypeError for anything else)."""
    if isinstance(x, (bool, np.bool_)):
        return int(x)
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        return float(x)
    raise TypeError(f"expected a number or an NDArray, got {type(x).__name__}")


def check_scalar_fits(value, dtype: str) -> None:
    """Integer scalars must fit the integer dtype they meet (numpy raises too)."""
    if dtype.startswith(("int", "uint")) and isinstance(value, int):
        # numpy's iinfo does not know ml_dtypes' 4- and 2-bit integers; ml_dtypes' does
        info = ml_dtypes.iinfo(dtype) if dtype in STORAGE_INT_DTYPES else np.iinfo(dtype)
        if not info.min <= value <= info.max:
            raise ValueError(f"scalar {value} is out of range for {dtype} "
                             f"[{info.min}, {info.max}]")
