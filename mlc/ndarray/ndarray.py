"""NDArray: a strided view of a flat buffer that lives on a device.

An NDArray is five things: a flat buffer (``_handle``, owned by a backend), a
``shape``, ``strides`` (in elements), an ``offset`` into the buffer and a ``device``.
Element ``idx`` lives at ``offset + sum(idx[i] * strides[i])``.

That is enough to make ``reshape``, ``permute``, ``broadcast_to``, slicing and
``as_strided`` free: each returns a new NDArray over the *same* buffer with different
shape/strides/offset; no element moves. Only ``compact()`` copies, into a fresh buffer
whose strides are row-major, which is what the elementwise, reduction and matmul
kernels expect.

All checks happen here, in Python, before a kernel runs: backends trust their arguments.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import shapes as S
from .device import BackendDevice, default_device


class NDArray:
    """A strided n-dimensional array on a device (``cpu()``, ``cpu_numpy()``, ``cuda()``).

    ``NDArray(obj, device=None, dtype=None)`` copies ``obj`` (an NDArray, a numpy array,
    a list or a scalar) to ``device``. ``dtype=None`` keeps the dtype of an NDArray or
    numpy array when it is supported, and uses float32 otherwise.
    """

    # numpy would otherwise turn ``np_array + ndarray`` into an object array; with this
    # it returns NotImplemented and Python calls our reflected operator instead.
    __array_ufunc__ = None

    def __init__(self, other, device: BackendDevice | None = None, dtype=None):
        if device is not None and not isinstance(device, BackendDevice):
            raise TypeError(f"device must be a device object such as nd.cpu(), nd.cpu_numpy() "
                            f"or nd.cuda(), not {device!r}")
        if isinstance(other, NDArray):
            src = other.astype(dtype) if dtype is not None else other
            arr = src.to(device) if device is not None else src
            if arr is other:
                arr = other.copy()
            self._init(arr)
            return
        device = device if device is not None else default_device()
        data = np.asarray(other)
        # None, strings, ragged lists are not numbers (ml_dtypes' bfloat16/float8 are)
        if data.dtype.kind not in "biuf" and data.dtype.name not in S.DTYPES:
            raise TypeError(f"cannot make an array of numbers from {_short_repr(other)} "
                            f"(numpy reads it as dtype {data.dtype})")
        if dtype is None:
            dtype = data.dtype.name if data.dtype.name in S.DTYPES else "float32"
        dtype = S.check_dtype(dtype)
        _check_range(data, dtype)
        data = np.array(data, dtype=dtype, order="C")  # (ascontiguousarray would make 0-d 1-d)
        arr = NDArray.make(data.shape, device=device, dtype=dtype)
        device.from_numpy(data, arr._handle)
        self._init(arr)

    def _init(self, other: "NDArray") -> None:
        self._shape = other._shape
        self._strides = other._strides
        self._offset = other._offset
        self._device = other._device
        self._handle = other._handle

    @staticmethod
    def make(shape, strides=None, device=None, handle=None, offset=0, dtype="float32"):
        """A new NDArray over ``handle`` (or a fresh buffer): the only raw constructor.

        With ``handle`` given, the array shares that buffer (and takes its dtype); this
        is how every view is made.
        """
        arr = NDArray.__new__(NDArray)
        arr._shape = S.as_shape(shape)
        arr._strides = (S.compact_strides(arr._shape) if strides is None
                        else tuple(int(s) for s in strides))
        if len(arr._strides) != len(arr._shape):
            raise ValueError(f"strides {arr._strides} do not match shape {arr._shape}")
        arr._offset = int(offset)
        arr._device = device if device is not None else default_device()
        if handle is None:
            handle = arr._device.Array(S.prod(arr._shape), S.check_dtype(dtype))
        arr._handle = handle
        return arr

    # ---- fields ----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def strides(self) -> tuple[int, ...]:
        return self._strides

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def device(self) -> BackendDevice:
        return self._device

    @property
    def handle(self):
        return self._handle

    @property
    def dtype(self) -> str:
        return self._handle.dtype

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def size(self) -> int:
        return S.prod(self._shape)

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a 0-d NDArray")
        return self._shape[0]

    # ---- moving data -----------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """A numpy copy of the array (host memory, independent of this buffer)."""
        view = self._device.to_numpy(self._handle, self._shape, self._strides, self._offset)
        return np.array(view, copy=True)

    def __array__(self, dtype=None, copy=None):
        out = self.numpy()
        return out.astype(dtype) if dtype is not None else out

    def to(self, device: BackendDevice) -> "NDArray":
        """The same values on ``device`` (``self`` when already there; otherwise a copy)."""
        if device == self._device:
            return self
        if not isinstance(device, BackendDevice):
            raise TypeError(f"expected a device such as nd.cpu(), got {device!r}")
        return NDArray(self.numpy(), device=device, dtype=self.dtype)

    def copy(self) -> "NDArray":
        """A compact copy in a fresh buffer."""
        out = NDArray.make(self._shape, device=self._device, dtype=self.dtype)
        self._device.compact(self._handle, out._handle, self._shape, self._strides,
                             self._offset)
        return out

    def astype(self, dtype) -> "NDArray":
        """A compact copy converted to ``dtype`` (floats to ints truncate toward zero)."""
        dtype = S.check_dtype(dtype)
        src = self.compact()
        if dtype == self.dtype:
            return src.copy() if src is self else src
        out = NDArray.make(self._shape, device=self._device, dtype=dtype)
        self._device.ewise_astype(src._handle, out._handle)
        return out

    def fill(self, value) -> None:
        """Set every element of this array (or view) to ``value``, in place."""
        value = S.scalar_value(value)
        if self.is_compact():
            self._device.fill(self._handle, value)
        else:
            self._device.scalar_setitem(self.size, value, self._handle, self._shape,
                                        self._strides, self._offset)

    def item(self):
        if self.size != 1:
            raise ValueError(f"item() needs an array of size 1, got shape {self._shape}")
        return self.numpy().reshape(-1)[0].item()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.size != 1:
            raise ValueError(f"the truth value of an NDArray of shape {self._shape} is "
                             "ambiguous; use .numpy().any() or .all()")
        return bool(self.item())

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="NDArray(")
        return f"NDArray({body}, dtype={self.dtype}, device={self._device!r})"

    def __str__(self) -> str:
        return str(self.numpy())

    # ---- views -----------------------------------------------------------------------------
    def is_compact(self) -> bool:
        """Row-major strides over the whole buffer from position 0: what kernels read."""
        return (S.is_contiguous(self._shape, self._strides)
                and self.size == self._handle.size and (self._offset == 0 or self.size == 0))

    def compact(self) -> "NDArray":
        """``self`` if compact, else a compact copy (the one view operation that copies)."""
        return self if self.is_compact() else self.copy()

    def as_strided(self, shape, strides) -> "NDArray":
        """A view with any shape and strides over the same buffer (checked to stay inside)."""
        shape, strides = S.as_shape(shape), tuple(int(s) for s in strides)
        if len(shape) != len(strides):
            raise ValueError(f"as_strided: shape {shape} and strides {strides} differ in length")
        lo, hi = S.strided_extent(shape, strides, self._offset)
        if S.prod(shape) and (lo < 0 or hi >= self._handle.size):
            raise ValueError(f"as_strided: shape {shape} with strides {strides} at offset "
                             f"{self._offset} reaches positions {lo}..{hi}, outside the "
                             f"buffer of {self._handle.size} elements")
        return self._view(shape, strides, self._offset)

    def _view(self, shape, strides, offset) -> "NDArray":
        return NDArray.make(shape, strides, self._device, self._handle, offset)

    def reshape(self, new_shape, *more) -> "NDArray":
        """The same elements under a new shape (one entry may be -1); never copies.

        Only possible when the elements are contiguous in row-major order; a permuted,
        broadcast or stepped view must be ``compact()``-ed first.
        """
        if more:
            new_shape = (new_shape, *more)
        new_shape = S.reshape_shape(self.size, new_shape, self._shape)
        if not S.is_contiguous(self._shape, self._strides):
            raise ValueError(f"cannot reshape a non-contiguous view of shape {self._shape} "
                             f"with strides {self._strides} to {new_shape} without copying; "
                             "call .compact() first")
        return self._view(new_shape, S.compact_strides(new_shape), self._offset)

    @property
    def flat(self) -> "NDArray":
        """The elements in row-major order as one axis, a view (needle's name): writing
        ``a.flat[j] = v`` changes ``a``. Like ``reshape``, it refuses a view that is not
        contiguous rather than copy (writes to a copy would be lost)."""
        return self.reshape((self.size,))

    def pad(self, axes) -> "NDArray":
        """A new array with ``axes[i] = (before, after)`` zeros around axis ``i``, one pair
        for every axis (needle's ``pad``): ``pad(((0, 0), (1, 1)))`` adds a zero column on
        either side of a matrix."""
        pads = tuple(tuple(p) for p in axes)
        if len(pads) != self.ndim or any(len(p) != 2 for p in pads):
            raise ValueError(f"pad: needs one (before, after) pair per axis of shape "
                             f"{self._shape}, got {axes}")
        if any(not isinstance(n, numbers.Integral) or n < 0 for p in pads for n in p):
            raise ValueError(f"pad: amounts must be integers >= 0, got {axes}")
        shape = tuple(n + lo + hi for n, (lo, hi) in zip(self._shape, pads, strict=True))
        out = NDArray.make(shape, device=self._device, dtype=self.dtype)
        out.fill(0)
        out[tuple(slice(lo, lo + n) for n, (lo, _) in zip(self._shape, pads, strict=True))] = self
        return out

    def permute(self, new_axes, *more) -> "NDArray":
        """Reorder the axes: axis ``i`` of the result is axis ``new_axes[i]`` of self."""
        if more or isinstance(new_axes, numbers.Integral):
            new_axes = (new_axes, *more)
        axes = S.check_permutation(tuple(new_axes), self.ndim)
        return self._view(tuple(self._shape[a] for a in axes),
                          tuple(self._strides[a] for a in axes), self._offset)

    def broadcast_to(self, new_shape) -> "NDArray":
        """Stretch axes of length 1 (and add leading axes) with stride 0; never copies."""
        new_shape = S.as_shape(new_shape)
        if new_shape == self._shape:
            return self
        return self._view(new_shape, S.broadcast_strides(self._shape, self._strides, new_shape),
                          self._offset)

    def __getitem__(self, idxs) -> "NDArray":
        """Basic indexing as in numpy: ints (which drop their axis), slices with steps,
        negative indices, ``None`` and ``...``. The result is a view."""
        return self._view(*S.index_view(idxs, self._shape, self._strides, self._offset))

    def __setitem__(self, idxs, other) -> None:
        """Write ``other`` (an NDArray, broadcast to fit, or a scalar) through the view
        ``self[idxs]`` into this array's buffer, in place."""
        view = self[idxs]
        aliased = [ax for ax, (n, st) in enumerate(zip(view.shape, view.strides, strict=True))
                   if st == 0 and n > 1]
        if aliased:
            # Every index along a stride-0 axis is the same element: a write there would
            # store several values into one place (and race on a parallel device).
            raise ValueError(f"cannot write through a broadcast view: axis {aliased[0]} of the "
                             f"view of shape {view.shape} has stride 0, so all its indices "
                             "alias one element; call compact() first to get a writable copy")
        if isinstance(other, (NDArray, np.ndarray, list, tuple)):
            src = _as_operand(other, self)
            if src.shape != view.shape:
                try:
                    src = src.broadcast_to(view.shape)
                except ValueError:
                    raise ValueError(f"could not broadcast input of shape {src.shape} into "
                                     f"the view of shape {view.shape}") from None
            if src.dtype != self.dtype:
                src = src.astype(self.dtype)
            # A source sharing our buffer could be overwritten while being read: copy it.
            src = src.copy() if src._handle is self._handle else src.compact()
            self._device.ewise_setitem(src._handle, self._handle, view.shape, view.strides,
                                       view.offset)
        else:
            value = S.scalar_value(other)
            S.check_scalar_fits(value, self.dtype)
            self._device.scalar_setitem(view.size, value, self._handle, view.shape,
                                        view.strides, view.offset)

    # ---- elementwise (elementwise.py does the work) ---------------------------------------
    def __add__(self, other):
        return _E.binary("add", self, other)

    __radd__ = __add__

    def __sub__(self, other):
        return _E.binary("sub", self, other)

    def __rsub__(self, other):
        return _E.binary("sub", self, other, reflected=True)

    def __mul__(self, other):
        return _E.binary("mul", self, other)

    __rmul__ = __mul__

    def __truediv__(self, other):
        return _E.binary("div", self, other)

    def __rtruediv__(self, other):
        return _E.binary("div", self, other, reflected=True)

    def __pow__(self, other):
        return _E.binary("power", self, other)

    def __rpow__(self, other):
        return _E.binary("power", self, other, reflected=True)

    def __neg__(self):
        return _E.unary("neg", self)

    def __eq__(self, other):
        return _E.binary("eq", self, other)

    def __ne__(self, other):
        return _E.binary("ne", self, other)

    def __lt__(self, other):
        return _E.binary("lt", self, other)

    def __le__(self, other):
        return _E.binary("le", self, other)

    def __gt__(self, other):
        return _E.binary("gt", self, other)

    def __ge__(self, other):
        return _E.binary("ge", self, other)

    __hash__ = None  # == is elementwise, so arrays cannot be dict keys

    def maximum(self, other):
        return _E.binary("maximum", self, other)

    def minimum(self, other):
        return _E.binary("minimum", self, other)

    def log(self):
        return _E.unary("log", self)

    def exp(self):
        return _E.unary("exp", self)

    def tanh(self):
        return _E.unary("tanh", self)

    def abs(self):
        return _E.unary("abs", self)

    __abs__ = abs

    def sqrt(self):
        return _E.unary("sqrt", self)

    def erf(self):
        """The error function (exact GELU is ``x * (1 + erf(x / sqrt(2))) / 2``)."""
        return _E.unary("erf", self)

    # ---- reductions and products -----------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        """Sum over ``axis`` (an int, a tuple, or None for all). Integer sums are int32."""
        return _R.reduce("sum", self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        """Largest element over ``axis`` (an int, a tuple, or None for all)."""
        return _R.reduce("max", self, axis, keepdims)

    def __matmul__(self, other):
        return _L.matmul(self, other)

    def __rmatmul__(self, other):
        return _L.matmul(_as_operand(other, self), self)


def _as_operand(x, like: NDArray) -> NDArray:
    """``x`` as an NDArray on ``like``'s device (numpy arrays and lists are copied there)."""
    if isinstance(x, NDArray):
        if x.device != like.device:
            raise ValueError(f"operands are on different devices: {like.device!r} and "
                             f"{x.device!r}; move one with .to(device)")
        return x
    if isinstance(x, (np.ndarray, list, tuple)):
        data = np.asarray(x)
        dtype = data.dtype.name if data.dtype.name in S.DTYPES else like.dtype
        return NDArray(data, device=like.device, dtype=dtype)
    raise TypeError(f"expected an NDArray, got {type(x).__name__}")


def _short_repr(obj, limit: int = 60) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_range(data: np.ndarray, dtype: str) -> None:
    """Refuse values an integer dtype cannot hold: numpy would wrap them (300 -> 44 in
    int8) without a word."""
    kind = np.dtype(dtype).kind
    if kind not in "iu" or data.size == 0 or np.can_cast(data.dtype, dtype):
        return
    info = np.iinfo(dtype)
    lo, hi = data.min(), data.max()
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < info.min or hi > info.max:
        bad = lo if not np.isfinite(lo) or lo < info.min else hi
        raise ValueError(f"value {bad} does not fit in {dtype} (range {info.min} to "
                         f"{info.max}); clip or rescale it first, or choose a wider dtype")


# Imported last: these modules use NDArray and _as_operand.
from . import elementwise as _E  # noqa: E402
from . import linalg as _L  # noqa: E402
from . import reduce as _R  # noqa: E402
