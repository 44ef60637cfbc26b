"""Unit 01, NDArray: strides and views, on bare ``(shape, strides, offset)`` triples.

The student's functions never see an NDArray: a view is a triple of plain tuples and an
int, strides counted in elements. To grade a triple the grader *uses* it: it lays
numpy's ``np.arange(n)`` out as the flat buffer, reads the view the triple describes, and
compares with what numpy's own indexing returns. Every buffer position holds its own
address, so equal values mean the student's view touches exactly the right addresses in
the right order. Triples are checked to stay inside the buffer before anything is read.

The split (see :mod:`mlc.grading.registry`): ``cases`` draws every input, hidden ones
too, in the grader and keeps numpy's view of each under a private key; ``observe`` only
calls the student's function in the worker and turns what it returned into ints (or
reports that it could not); ``judge`` reads the view in the grader and compares. Slices
cannot travel, so an index goes out as ints and ``{"slice": [start, stop, step]}`` and
becomes a tuple of ints and slices again in the worker. ``getitem`` and ``compact`` are
in :mod:`.ndarray_views`.
"""

from __future__ import annotations

import math

import numpy as np

from ..registry import Check, CheckFailed, call, exercise, first_line, need, raised

NB = "01_ndarray"


# ---- in the worker: what the student's code returned, as plain data ------------------------

def _repr(value, limit: int = 120) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - the student's object may fail to print
        text = f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def ints_obs(value):
    """``value`` as a tuple of python ints, or ``{"unreadable": repr}``."""
    try:
        return tuple(int(v) for v in value)
    except Exception:  # noqa: BLE001 - anything the student returned
        return {"unreadable": _repr(value)}


def triple_obs(what: str, fn, *args):
    """``fn(*args)`` as ``(shape, strides, offset)`` of python ints, or ``{"unreadable"}``."""
    result = call(what, fn, *args)
    try:
        shape, strides, offset = result
        return (tuple(int(n) for n in shape), tuple(int(s) for s in strides), int(offset))
    except Exception:  # noqa: BLE001 - anything the student returned
        return {"unreadable": _repr(result)}


def raised_with_message(fn, *args) -> dict:
    """:func:`raised`, and the whole message of the exception (checks that read it)."""
    try:
        fn(*args)
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001 - the student's code may raise anything
        return {"raised": f"{type(err).__name__}: {first_line(err)}",
                "mro": [c.__name__ for c in type(err).__mro__], "message": str(err)[:2000]}
    return {"raised": None, "mro": [], "message": ""}


# ---- in the grader: numpy's views and reading the student's ---------------------------------

def triple_of(view: np.ndarray, flat: np.ndarray) -> tuple[tuple, tuple, int]:
    """The (shape, strides in elements, offset) of a numpy view of the 1-D array ``flat``."""
    item = flat.itemsize
    offset = (view.__array_interface__["data"][0] - flat.__array_interface__["data"][0]) // item
    return tuple(view.shape), tuple(s // item for s in view.strides), int(offset)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def as_triple(obs, what: str) -> tuple[tuple, tuple, int]:
    """An observed ``(shape, strides, offset)``, validated (it is untrusted data)."""
    if isinstance(obs, dict) and "unreadable" in obs:
        raise CheckFailed(f"{what}: expected a tuple (shape, strides, offset), got "
                          f"{str(obs['unreadable'])[:120]}")
    if not (isinstance(obs, (tuple, list)) and len(obs) == 3
            and all(isinstance(p, (tuple, list)) and all(_is_int(v) for v in p)
                    for p in obs[:2]) and _is_int(obs[2])):
        raise CheckFailed(f"{what}: malformed observation of (shape, strides, offset)")
    return tuple(obs[0]), tuple(obs[1]), obs[2]


def read_view(flat: np.ndarray, shape, strides, offset, what: str) -> np.ndarray:
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
    # the stride of an axis of length 1 is never used (and may be any number)
    eff = tuple(s if n > 1 else 0 for n, s in zip(shape, strides, strict=True))
    lo = offset + sum((n - 1) * s for n, s in zip(shape, eff, strict=True) if s < 0)
    hi = offset + sum((n - 1) * s for n, s in zip(shape, eff, strict=True) if s > 0)
    if lo < 0 or hi >= flat.size:
        raise CheckFailed(f"{what}: the view (shape={shape}, strides={strides}, "
                          f"offset={offset}) reaches buffer positions {lo}..{hi}, but the "
                          f"buffer has positions 0..{flat.size - 1}")
    # Start at the view's first element; negative strides step back into flat, which the
    # bounds check above allows.
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=shape, strides=tuple(s * flat.itemsize for s in eff),
        writeable=False)
    return np.array(view)


def judge_view(t, obs, expected: np.ndarray, flat: np.ndarray, what: str,
               record: bool = True) -> None:
    """The observed triple shows exactly numpy's view ``expected`` of ``flat``."""
    shape, strides, offset = as_triple(obs, what)
    exp = triple_of(expected, flat)
    both = (f"expected (shape={exp[0]}, strides={exp[1]}, offset={exp[2]}), got "
            f"(shape={shape}, strides={strides}, offset={offset})")
    if shape != expected.shape:
        raise CheckFailed(f"{what}: {both}: the shape differs")
    got = read_view(flat, shape, strides, offset, what)
    if not np.array_equal(got, expected):
        bad = tuple(int(i) for i in np.argwhere(got != expected)[0])
        raise CheckFailed(f"{what}: {both}; element {bad} of your view is buffer position "
                          f"{got[bad]}, numpy's is {expected[bad]}")
    if record:
        t.passed.append(what)


def random_base(rng, flat_size: int = 0):
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


def compact_strides_of(shape) -> tuple:
    return tuple(math.prod(shape[i + 1:]) for i in range(len(shape)))


def view_case(what: str, args: list, view: np.ndarray, flat: np.ndarray) -> dict:
    return {"what": what, "args": args, "_view": view, "_flat": flat}


class ViewCheck(Check):
    """A check of a function that returns a view triple. A case is one call
    (``"args"``, numpy's view under ``"_view"``), a call that must raise
    (``"raises": True``; ``self.error`` unless ``"error"`` names another), or a bundle
    of random calls (``"items"``)."""

    fn = ""
    error: type[BaseException] = ValueError

    def args(self, case: dict) -> list:
        """The arguments as the student's function takes them (in the worker)."""
        return list(case["args"])

    def observe(self, ns, case):
        f = need(ns, self.fn)
        if "items" in case:
            return [triple_obs(it["what"], f, *self.args(it)) for it in case["items"]]
        if case.get("raises"):
            return raised(f, *self.args(case))
        return triple_obs(case["what"], f, *self.args(case))

    def judge(self, case, obs, t):
        if "items" in case:
            items = case["items"]
            if not (isinstance(obs, list) and len(obs) == len(items)):
                t.fail(f"{case['what']}: malformed observation")
            for it, o, view, flat in zip(items, obs, case["_views"], case["_flats"],
                                         strict=True):
                judge_view(t, o, view, flat, it["what"], record=False)
            t.passed.append(case["what"])
        elif case.get("raises"):
            error = {"ValueError": ValueError}.get(case.get("error"), self.error)
            t.raised(obs, error, case["what"])
        else:
            judge_view(t, obs, case["_view"], case["_flat"], case["what"])


def bundle(what: str, items: list[dict]) -> dict:
    """Many view cases as one (one observation, one line in the passed list)."""
    return {"what": what, "items": [{"what": it["what"], "args": it["args"]} for it in items],
            "_views": [it["_view"] for it in items], "_flats": [it["_flat"] for it in items]}


# ---- 1. compact strides ---------------------------------------------------------------------

@exercise("ndarray.compact_strides", points=1, notebook=NB, needs=("compact_strides",),
          hint="In row-major order the last axis is the contiguous one; ask how many elements "
               "one step along an earlier axis skips over (lecture 01, 'Row-major strides'). "
               "Mind the 0-d shape () and shapes with a 0 in them.",
          rebuilds=("mlc.ndarray.shapes:compact_strides",))
class _CompactStrides(Check):
    SHAPES = [(3, 4), (2, 3, 4), (5,), (), (1,), (4, 1), (1, 4), (2, 1, 3), (2, 0, 3),
              (0,), (3, 0), (7, 1, 1, 2), (2, 3, 4, 5, 6)]

    def cases(self):
        out = [{"what": f"compact_strides({shape})", "shape": shape} for shape in self.SHAPES]
        out.append({"what": "agrees with numpy's strides (in bytes: times 8 for float64) for "
                            "shape (3, 4, 5)", "shape": (3, 4, 5), "_numpy": True})
        return out

    def observe(self, ns, case):
        return ints_obs(call(case["what"], need(ns, "compact_strides"), case["shape"]))

    def judge(self, case, obs, t):
        shape = case["shape"]
        expected = compact_strides_of(shape)
        if isinstance(obs, dict) and "unreadable" in obs:
            t.fail(f"compact_strides({shape}): expected a tuple such as {expected}, got "
                   f"{str(obs['unreadable'])[:120]}")
        if not (isinstance(obs, tuple) and all(_is_int(s) for s in obs)):
            t.fail(f"{case['what']}: malformed observation")
        if case.get("_numpy"):
            t.equal(tuple(s * 8 for s in obs), np.empty(shape).strides, case["what"])
        else:
            t.equal(obs, expected, case["what"])


# ---- 2. permute -----------------------------------------------------------------------------

@exercise("ndarray.permute", points=2, notebook=NB, needs=("permute",),
          hint="Permuting the axes moves no data: it only reorders what describes each axis. "
               "Which axis of the input does axis i of the result come from? Axes that are "
               "not a permutation of 0..ndim-1 must raise ValueError (lecture 01, 'Transpose: "
               "permute the strides').",
          rebuilds=("mlc.ndarray.ndarray:NDArray.permute",))
class _Permute(ViewCheck):
    fn = "permute"

    def cases(self):
        flat = np.arange(12)
        out = [view_case("permute of a 3x4 matrix with axes (1, 0)", [(3, 4), (4, 1), 0, (1, 0)],
                         flat.reshape(3, 4).T, flat)]
        rng = np.random.default_rng(101)
        items = []
        for case in range(25):
            flat, base = random_base(rng)
            shape, strides, offset = triple_of(base, flat)
            axes = tuple(int(x) for x in rng.permutation(base.ndim))
            items.append(view_case(f"random case {case}: permute(shape={shape}, "
                                   f"strides={strides}, offset={offset}, axes={axes})",
                                   [shape, strides, offset, axes], base.transpose(axes), flat))
        out.append(bundle("25 random permutations of stepped, reversed and permuted views",
                          items))
        flat = np.arange(6)
        out.append(view_case("permute of a 0-d view with axes ()", [(), (), 5, ()],
                             flat[5, ...], flat))
        for shape, strides, axes in [((2, 3), (3, 1), (0, 0)), ((2, 3), (3, 1), (0, 2)),
                                     ((2, 3, 4), (12, 4, 1), (0, 1)),
                                     ((2, 3), (3, 1), (0, 1, 2)),
                                     ((2, 3, 4), (12, 4, 1), (2, 2, 1))]:
            out.append({"what": f"permute(shape={shape}, ..., axes={axes}) raises ValueError",
                        "raises": True, "args": [shape, strides, 0, axes]})
        return out


# ---- 3. broadcast_to ------------------------------------------------------------------------

@exercise("ndarray.broadcast_to", points=2, notebook=NB, needs=("broadcast_to",),
          hint="Line the two shapes up the way numpy's broadcasting rules do (lecture 01, "
               "'Broadcasting is stride 0'). A stretched or added axis must show the same "
               "element at every position along it: which stride does that? Shapes that do "
               "not broadcast raise ValueError, and the message names both shapes.",
          rebuilds=("mlc.ndarray.ndarray:NDArray.broadcast_to",))
class _BroadcastTo(ViewCheck):
    fn = "broadcast_to"

    def cases(self):
        out = []
        for shape, new_shape in [((3,), (2, 3)), ((3, 1), (3, 4)), ((1,), (2, 3, 4)),
                                 ((), (2, 2)), ((2, 1, 3), (4, 2, 5, 3)), ((1, 1), (1, 1)),
                                 ((4,), (4,)), ((1,), (0,)), ((0,), (3, 0)), ((2, 1), (2, 0)),
                                 ((1, 3), (2, 2, 3))]:
            flat = np.arange(math.prod(shape) + 3)
            base = flat[3:].reshape(shape)
            # A stepped base so that kept strides are not all compact.
            if shape and shape[-1] > 1:
                flat = np.arange(2 * math.prod(shape) + 3)
                base = flat[3::2][: math.prod(shape)].reshape(shape)
            sh, st, off = triple_of(base, flat)
            out.append(view_case(f"broadcast_to(shape={sh}, strides={st}, offset={off}, "
                                 f"new_shape={new_shape})", [sh, st, off, new_shape],
                                 np.broadcast_to(base, new_shape), flat))
        rng = np.random.default_rng(202)
        items = []
        for case in range(15):
            flat, base = random_base(rng)
            # squash random axes to length 1, then stretch them and add leading axes
            idx = tuple(slice(0, 1) if rng.random() < 0.5 else slice(None) for _ in base.shape)
            base = base[idx]
            lead = tuple(int(n) for n in rng.integers(1, 4, size=int(rng.integers(0, 3))))
            new_shape = lead + tuple(int(rng.integers(1, 4)) if n == 1 else n
                                     for n in base.shape)
            sh, st, off = triple_of(base, flat)
            items.append(view_case(f"random case {case}: broadcast_to(shape={sh}, strides={st}, "
                                   f"offset={off}, new_shape={new_shape})",
                                   [sh, st, off, new_shape], np.broadcast_to(base, new_shape),
                                   flat))
        out.append(bundle("15 random broadcasts of stepped, reversed and permuted views", items))
        # an axis of length 0 stretches no more than one of length 3: only length 1 does
        for shape, new_shape in [((3,), (4,)), ((2, 3), (3,)), ((2,), (2, 1)),
                                 ((2, 3), (2, 3, 3)), ((3, 1), (3, 4, 2)), ((0,), (3,)),
                                 ((2, 0), (2, 4))]:
            out.append({"what": f"broadcast_to(shape={shape}, ..., new_shape={new_shape}) "
                                "raises ValueError", "raises": True,
                        "args": [shape, compact_strides_of(shape), 0, new_shape]})
        return out

    def observe(self, ns, case):
        if case.get("raises"):
            return raised_with_message(need(ns, self.fn), *self.args(case))
        return super().observe(ns, case)

    def judge(self, case, obs, t):
        super().judge(case, obs, t)
        if case.get("raises"):
            shape, new_shape = case["args"][0], case["args"][3]
            msg = obs.get("message")
            msg = msg if isinstance(msg, str) else ""
            # written as a tuple or as a list: either names the shape
            named = [str(tuple(x)) in msg or str(list(x)) in msg for x in (shape, new_shape)]
            t.true(all(named), f"{case['what']} naming both shapes",
                   f"the message should contain {shape} and {new_shape}, it is {msg[:200]!r}")
