"""Unit 01, NDArray: strides and views, on bare ``(shape, strides, offset)`` triples.

The student's functions never see an NDArray: a view is a triple of plain tuples and an
int, strides counted in elements. To grade a triple we *use* it: we lay numpy's
``np.arange(n)`` out as the flat buffer, read the view the triple describes, and compare
with what numpy's own indexing returns. Every buffer position holds its own address, so
equal values mean the student's view touches exactly the right addresses in the right
order. Triples are checked to stay inside the buffer before anything is read.
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from ..registry import CheckFailed, _short, exercise, call as _call

NB = "01_ndarray"


# ---- helpers shared by the checks -----------------------------------------------------------

def _triple_of(view: np.ndarray, flat: np.ndarray) -> tuple[tuple, tuple, int]:
    """The (shape, strides in elements, offset) of a numpy view of the 1-D array ``flat``."""
    item = flat.itemsize
    offset = (view.__array_interface__["data"][0] - flat.__array_interface__["data"][0]) // item
    return tuple(view.shape), tuple(s // item for s in view.strides), int(offset)


def _as_triple(result, what: str) -> tuple[tuple, tuple, int]:
    """The student's ``(shape, strides, offset)`` as tuples of python ints, or a clear failure."""
    try:
        shape, strides, offset = result
        shape = tuple(int(n) for n in shape)
        strides = tuple(int(s) for s in strides)
        offset = int(offset)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what}: expected a tuple (shape, strides, offset), "
                          f"got {result!r}") from None
    return shape, strides, offset


def _read_view(flat: np.ndarray, shape, strides, offset, what: str) -> np.ndarray:
    """The elements the view (shape, strides, offset) of ``flat`` shows, in row-major order.

    Checks the triple first: as_strided does not, and a wrong triple must cost points,
    not crash the grader by reading outside the buffer.
    """
    if len(shape) != len(strides):
        raise CheckFailed(f"{what}: shape {shape} and strides {strides} have different lengths")
    if any(n < 0 for n in shape):
        raise CheckFailed(f"{what}: shape {shape} has a negative dimension")
    if math.prod(shape) == 0:
        return np.empty(shape, flat.dtype)
    lo = offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=False) if s < 0)
    hi = offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=False) if s > 0)
    if lo < 0 or hi >= flat.size:
        raise CheckFailed(f"{what}: the view (shape={shape}, strides={strides}, "
                          f"offset={offset}) reaches buffer positions {lo}..{hi}, but the "
                          f"buffer has positions 0..{flat.size - 1}")
    # Start at the view's first element; negative strides step back into flat, which the
    # bounds check above allows.
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=shape, strides=tuple(s * flat.itemsize for s in strides),
        writeable=False)
    return np.array(view)


def _same_view(t, fn, args, expected: np.ndarray, flat: np.ndarray, what: str,
               record: bool = True) -> None:
    """The triple ``fn(*args)`` shows exactly numpy's view ``expected`` of ``flat``."""
    shape, strides, offset = _as_triple(_call(what, fn, *args), what)
    exp = _triple_of(expected, flat)
    both = (f"expected (shape={exp[0]}, strides={exp[1]}, offset={exp[2]}), got "
            f"(shape={shape}, strides={strides}, offset={offset})")
    if shape != expected.shape:
        raise CheckFailed(f"{what}: {both}: the shape differs")
    got = _read_view(flat, shape, strides, offset, what)
    if not np.array_equal(got, expected):
        bad = tuple(int(i) for i in np.argwhere(got != expected)[0])
        raise CheckFailed(f"{what}: {both}; element {bad} of your view is buffer position "
                          f"{got[bad]}, numpy's is {expected[bad]}")
    if record:
        t.passed.append(what)


def _random_base(rng, flat_size: int = 0):
    """A random numpy view of a fresh ``np.arange`` buffer: compact, stepped, reversed or
    permuted, so student code cannot assume compact strides or a zero offset."""
    ndim = int(rng.integers(1, 5))
    full = tuple(int(n) for n in rng.integers(1, 6, size=ndim))
    flat = np.arange(math.prod(full) + flat_size)
    arr = flat[flat_size:].reshape(full)
    kind = rng.integers(0, 4)
    if kind == 1:  # a stepped, possibly reversed window on each axis
        idx = []
        for n in full:
            step = int(rng.choice([-2, -1, 1, 2]))
            idx.append(slice(None, None, step) if n > 1 else slice(None))
        arr = arr[tuple(idx)]
    elif kind == 2:
        arr = arr.transpose(tuple(rng.permutation(ndim)))
    elif kind == 3:
        arr = arr.transpose(tuple(rng.permutation(ndim)))[(slice(None, None, -1),)]
    return flat, arr


def _source_mentions(fn, words) -> list[str]:
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        return []
    return [w for w in words if w in src]


# ---- 1. compact strides ---------------------------------------------------------------------

@exercise("ndarray.compact_strides", points=1, notebook=NB,
          hint="Walk the axes from the last one: the last axis has stride 1, and each axis "
               "before it steps over a whole row of the axes after it, so "
               "strides[i] = shape[i+1] * strides[i+1].")
def _compact_strides(ns, t):
    f = t.need(ns, "compact_strides")
    cases = [(3, 4), (2, 3, 4), (5,), (), (1,), (4, 1), (1, 4), (2, 1, 3), (2, 0, 3),
             (0,), (3, 0), (7, 1, 1, 2), (2, 3, 4, 5, 6)]
    for shape in cases:
        expected = tuple(math.prod(shape[i + 1:]) for i in range(len(shape)))
        got = f(shape)
        try:
            got = tuple(int(s) for s in got)
        except TypeError:
            raise CheckFailed(f"compact_strides({shape}): expected a tuple such as "
                              f"{expected}, got {got!r}") from None
        t.equal(got, expected, f"compact_strides({shape})")
    nonzero = (3, 4, 5)
    t.equal(tuple(s * 8 for s in f(nonzero)), np.empty(nonzero).strides,
            "agrees with numpy's strides (in bytes: times 8 for float64) for shape (3, 4, 5)")


# ---- 2. permute -----------------------------------------------------------------------------

@exercise("ndarray.permute", points=2, notebook=NB,
          hint="Axis i of the result is axis axes[i] of the input: pick shape[axes[i]] and "
               "strides[axes[i]]; the offset does not change. Before that, check that "
               "sorted(axes) == list(range(len(shape))) and raise ValueError if not.")
def _permute(ns, t):
    f = t.need(ns, "permute")
    flat = np.arange(12)
    a = flat.reshape(3, 4)
    what = "permute of a 3x4 matrix with axes (1, 0)"
    _same_view(t, f, ((3, 4), (4, 1), 0, (1, 0)), a.T, flat, what)
    rng = np.random.default_rng(101)
    for case in range(25):
        flat, base = _random_base(rng)
        shape, strides, offset = _triple_of(base, flat)
        axes = tuple(int(x) for x in rng.permutation(base.ndim))
        _same_view(t, f, (shape, strides, offset, axes), base.transpose(axes), flat,
                   f"random case {case}: permute(shape={shape}, strides={strides}, "
                   f"offset={offset}, axes={axes})", record=False)
    t.passed.append("25 random permutations of stepped, reversed and permuted views")
    _same_view(t, f, ((), (), 5, ()), np.arange(6)[5, ...], np.arange(6),
               "permute of a 0-d view with axes ()")
    for shape, strides, axes in [((2, 3), (3, 1), (0, 0)), ((2, 3), (3, 1), (0, 2)),
                                 ((2, 3, 4), (12, 4, 1), (0, 1)),
                                 ((2, 3), (3, 1), (0, 1, 2)),
                                 ((2, 3, 4), (12, 4, 1), (2, 2, 1))]:
        t.raises(ValueError, lambda s=shape, st=strides, ax=axes: f(s, st, 0, ax),
                 f"permute(shape={shape}, ..., axes={axes}) raises ValueError")


# ---- 3. broadcast_to ------------------------------------------------------------------------

@exercise("ndarray.broadcast_to", points=2, notebook=NB,
          hint="Line the shapes up on the right. New leading axes get stride 0; an axis of "
               "length 1 stretched to length m > 1 gets stride 0; an axis whose length "
               "already matches keeps its stride; anything else raises ValueError with "
               "both shapes in the message.")
def _broadcast_to(ns, t):
    f = t.need(ns, "broadcast_to")
    cases = [((3,), (2, 3)), ((3, 1), (3, 4)), ((1,), (2, 3, 4)), ((), (2, 2)),
             ((2, 1, 3), (4, 2, 5, 3)), ((1, 1), (1, 1)), ((4,), (4,)), ((1,), (0,)),
             ((0,), (3, 0)), ((2, 1), (2, 0)), ((1, 3), (2, 2, 3))]
    for shape, new_shape in cases:
        flat = np.arange(math.prod(shape) + 3)
        base = flat[3:].reshape(shape)
        # A stepped base so that kept strides are not all compact.
        if shape and shape[-1] > 1:
            flat = np.arange(2 * math.prod(shape) + 3)
            base = flat[3::2][: math.prod(shape)].reshape(shape)
        sh, st, off = _triple_of(base, flat)
        _same_view(t, f, (sh, st, off, new_shape), np.broadcast_to(base, new_shape), flat,
                   f"broadcast_to(shape={sh}, strides={st}, offset={off}, "
                   f"new_shape={new_shape})")
    rng = np.random.default_rng(202)
    for case in range(15):
        flat, base = _random_base(rng)
        # squash random axes to length 1, then stretch them and add leading axes
        idx = tuple(slice(0, 1) if rng.random() < 0.5 else slice(None) for _ in base.shape)
        base = base[idx]
        lead = tuple(int(n) for n in rng.integers(1, 4, size=int(rng.integers(0, 3))))
        new_shape = lead + tuple(int(rng.integers(1, 4)) if n == 1 else n for n in base.shape)
        sh, st, off = _triple_of(base, flat)
        _same_view(t, f, (sh, st, off, new_shape), np.broadcast_to(base, new_shape), flat,
                   f"random case {case}: broadcast_to(shape={sh}, strides={st}, "
                   f"offset={off}, new_shape={new_shape})", record=False)
    t.passed.append("15 random broadcasts of stepped, reversed and permuted views")
    for shape, new_shape in [((3,), (4,)), ((2, 3), (3,)), ((2,), (2, 1)), ((2, 3), (2, 3, 3)),
                             ((3, 1), (3, 4, 2))]:
        strides = tuple(math.prod(shape[i + 1:]) for i in range(len(shape)))
        what = f"broadcast_to(shape={shape}, ..., new_shape={new_shape}) raises ValueError"
        try:
            f(shape, strides, 0, new_shape)
        except ValueError as err:
            msg = str(err)
            if str(shape) not in msg or str(new_shape) not in msg:
                raise CheckFailed(f"{what} naming both shapes: the message should contain "
                                  f"{shape} and {new_shape}, it is {msg!r}") from None
            t.passed.append(what + " naming both shapes")
        except Exception as err:  # noqa: BLE001 - the student's code may raise anything
            raise CheckFailed(f"{what}: got {type(err).__name__}: {err}") from None
        else:
            raise CheckFailed(f"{what}: nothing was raised")


# ---- 4. getitem -----------------------------------------------------------------------------

def _random_index(rng, shape):
    """A tuple of ints and slices for the first k <= ndim axes, like a student would write."""
    k = int(rng.integers(0, len(shape) + 1))
    idx = []
    for n in shape[:k]:
        if rng.random() < 0.3 and n > 0:
            idx.append(int(rng.integers(-n, n)))
            continue

        def bound(n=n):
            return None if rng.random() < 0.3 else int(rng.integers(-n - 2, n + 3))

        step = None if rng.random() < 0.3 else int(rng.choice([-3, -2, -1, 1, 2, 3]))
        idx.append(slice(bound(), bound(), step))
    return tuple(idx)


def _fmt_index(idx) -> str:
    def one(i):
        if isinstance(i, slice):
            parts = ["" if v is None else str(v) for v in (i.start, i.stop, i.step)]
            return ":".join(parts[:2]) + (f":{parts[2]}" if i.step is not None else "")
        return str(i)

    return "[" + ", ".join(one(i) for i in idx) + "]"


@exercise("ndarray.getitem", points=3, notebook=NB,
          hint="Pad idx with slice(None) up to ndim. For a slice, start, stop, step = "
               "s.indices(n); the new length is len(range(start, stop, step)), the new stride "
               "is stride * step and the offset moves by start * stride (only when the length "
               "is not 0). An int i (after i += n when negative; IndexError unless "
               "0 <= i < n) moves the offset by i * stride and drops the axis.")
def _getitem(ns, t):
    f = t.need(ns, "getitem")
    flat = np.arange(12)
    a = flat.reshape(3, 4)
    shown = [((1,), "a[1]"), ((slice(None), 2), "a[:, 2]"), ((slice(None, None, 2),), "a[::2]"),
             ((slice(None), slice(None, None, -1)), "a[:, ::-1]"), ((-1, -1), "a[-1, -1]"),
             ((slice(1, 3), slice(1, None, 2)), "a[1:3, 1::2]"), ((), "a[()]"),
             ((slice(5, 9),), "a[5:9] (empty)")]
    for idx, text in shown:
        _same_view(t, f, ((3, 4), (4, 1), 0, idx), a[idx], flat, f"{text} of a 3x4 matrix")
    rng = np.random.default_rng(303)
    for case in range(120):
        flat, base = _random_base(rng, flat_size=int(rng.integers(0, 4)))
        shape, strides, offset = _triple_of(base, flat)
        idx = _random_index(rng, shape)
        _same_view(t, f, (shape, strides, offset, idx), base[idx], flat,
                   f"random case {case}: view{_fmt_index(idx)} with shape={shape}, "
                   f"strides={strides}, offset={offset}", record=False)
    t.passed.append("120 random indexings of stepped, reversed and permuted views")
    for shape, idx in [((3, 4), (3,)), ((3, 4), (-4,)), ((3, 4), (0, 4)), ((3, 4), (1, -5)),
                       ((0, 2), (0,)), ((5,), (7,))]:
        strides = tuple(math.prod(shape[i + 1:]) for i in range(len(shape)))
        t.raises(IndexError, lambda s=shape, st=strides, i=idx: f(s, st, 0, i),
                 f"index {_fmt_index(idx)} on shape {shape} raises IndexError")


# ---- 5. compact -----------------------------------------------------------------------------

@exercise("ndarray.compact", points=2, notebook=NB,
          hint="Allocate out = np.empty(prod(shape), flat.dtype). Visit every index tuple of "
               "the view in row-major order (itertools.product(*map(range, shape)) or an "
               "odometer of counters) and copy flat[offset + sum(i * s for i, s in "
               "zip(index, strides, strict=False))] to out[k], k = 0, 1, 2, ...")
def _compact(ns, t):
    f = t.need(ns, "compact")
    used = _source_mentions(f, ["as_strided", "stride_tricks", "np.ndarray(", "numpy.ndarray("])
    t.true(not used, "compact walks the indices itself",
           f"it uses {', '.join(used)}; compute each element's position from the strides")
    flat = np.arange(12, dtype=np.float32) * 1.5
    shown = [("a compact 3x4 array", flat.reshape(3, 4)),
             ("the transpose of a 3x4 array", flat.reshape(3, 4).T),
             ("every other column, reversed", flat.reshape(3, 4)[:, ::-2]),
             ("a row broadcast to 3 rows (stride 0)", np.broadcast_to(flat[4:8], (3, 4))),
             ("a single element as a 0-d view", flat[7, ...]),
             ("an empty view of shape (0, 4)", flat.reshape(3, 4)[3:]),
             ("an empty view of shape (2, 0, 3)", np.broadcast_to(flat[:0, None], (2, 0, 3)))]
    for what, view in shown:
        shape, strides, offset = _triple_of(view, flat)
        before = flat.copy()
        label = f"compact of {what} (shape={shape}, strides={strides}, offset={offset})"
        out = _call(label, f, flat, shape, strides, offset)
        if not isinstance(out, np.ndarray):
            raise CheckFailed(f"{label}: expected a numpy array, got {type(out).__name__}")
        if out.dtype != flat.dtype:
            raise CheckFailed(f"{label}: expected dtype {flat.dtype} (the buffer's), "
                              f"got {out.dtype}")
        expected = np.ascontiguousarray(view).reshape(-1)
        if out.shape != expected.shape:
            raise CheckFailed(f"{label}: expected a 1-D array of shape {expected.shape}, "
                              f"got shape {out.shape}")
        if not np.array_equal(out, expected):
            k = int(np.argwhere(out != expected)[0][0])
            raise CheckFailed(f"{label}: expected {expected.tolist()}, got {out.tolist()} "
                              f"(first difference at position {k})")
        if np.shares_memory(out, flat):
            raise CheckFailed(f"{label}: the result shares memory with the buffer; "
                              "allocate a fresh output array")
        if not np.array_equal(flat, before):
            raise CheckFailed(f"{label}: the buffer was modified; only write to the output")
        t.passed.append(label)
    rng = np.random.default_rng(404)
    for case in range(20):
        flat, base = _random_base(rng, flat_size=int(rng.integers(0, 4)))
        if rng.random() < 0.3:  # stretch a length-1 axis or add one, with stride 0
            base = np.broadcast_to(base[..., :1], base.shape[:-1] + (3,))
        shape, strides, offset = _triple_of(base, flat)
        label = (f"random case {case}: compact(flat, shape={shape}, strides={strides}, "
                 f"offset={offset})")
        out = np.asarray(_call(label, f, flat, shape, strides, offset))
        expected = np.ascontiguousarray(base).reshape(-1)
        if out.shape != expected.shape or not np.array_equal(out, expected):
            raise CheckFailed(f"{label}: expected {_short(expected)}, got {_short(out)}")
    t.passed.append("20 random stepped, reversed, permuted and broadcast views")
