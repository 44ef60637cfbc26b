"""The checks of unit 01 (ndarray): full marks for the reference, clear failures otherwise.

Each check must pass on a correct solution and fail, with a message that points at the
mistake, on the mistakes students actually make: column-major strides, an inverted
permutation, forgotten validation, broadcasting aligned on the left, slices whose step is
ignored, negative indices not wrapped, a compact that returns the buffer itself.
"""

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from check_util import check_runner

from mlc.grading import registry
from mlc.grading.check import run_check
from mlc.grading.protocol import verdict
from mlc.grading.wire import public, roundtrip

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "01_ndarray.ipynb"
EXERCISE = ROOT / "exercises" / "01_ndarray.ipynb"
IDS = ["ndarray.compact_strides", "ndarray.permute", "ndarray.broadcast_to", "ndarray.getitem",
       "ndarray.compact"]


# ---- reference solutions (the same as in solutions/01_ndarray.ipynb) -----------------------

def compact_strides(shape):
    strides = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * shape[i + 1]
    return tuple(strides)


def permute(shape, strides, offset, axes):
    axes = tuple(axes)
    if sorted(axes) != list(range(len(shape))):
        raise ValueError(f"axes {axes} are not a permutation of {tuple(range(len(shape)))}")
    return tuple(shape[a] for a in axes), tuple(strides[a] for a in axes), offset


def broadcast_to(shape, strides, offset, new_shape):
    shape, new_shape = tuple(shape), tuple(new_shape)
    lead = len(new_shape) - len(shape)
    if lead < 0:
        raise ValueError(f"cannot broadcast {shape} to {new_shape}")
    new_strides = [0] * lead
    for n, s, m in zip(shape, strides, new_shape[lead:], strict=False):
        if n == m:
            new_strides.append(s)
        elif n == 1:
            new_strides.append(0)
        else:
            raise ValueError(f"cannot broadcast {shape} to {new_shape}")
    return new_shape, tuple(new_strides), offset


def getitem(shape, strides, offset, idx):
    idx = tuple(idx)
    if len(idx) > len(shape):
        raise IndexError(f"too many indices for shape {shape}")
    idx = idx + (slice(None),) * (len(shape) - len(idx))
    new_shape, new_strides = [], []
    for n, s, i in zip(shape, strides, idx, strict=False):
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            length = len(range(start, stop, step))
            new_shape.append(length)
            new_strides.append(s * step)
            if length:
                offset += start * s
        else:
            if not -n <= i < n:
                raise IndexError(f"index {i} out of bounds for size {n}")
            offset += (i % n) * s
    return tuple(new_shape), tuple(new_strides), offset


def compact(flat, shape, strides, offset):
    out = np.empty(math.prod(shape), dtype=flat.dtype)
    for k, index in enumerate(itertools.product(*(range(n) for n in shape))):
        out[k] = flat[offset + sum(i * s for i, s in zip(index, strides, strict=False))]
    return out


REFERENCE = {"compact_strides": compact_strides, "permute": permute,
             "broadcast_to": broadcast_to, "getitem": getitem, "compact": compact}


_run, _fails = check_runner(REFERENCE)


# ---- the reference passes ------------------------------------------------------------------

@pytest.mark.parametrize("ex_id", IDS)
def test_reference_gets_full_marks(ex_id):
    rec = _run(ex_id)
    assert rec["score"] == rec["max_score"] > 0, rec["message"]
    assert len(rec["passed"]) > 5


def test_solution_notebook_gets_full_marks(graded):
    report = graded(SOLUTION)
    assert (report.score, report.max_score) == (10, 10), report.results


def test_exercise_notebook_gets_zero_without_hints(graded):
    report = graded(EXERCISE)
    assert (report.score, report.max_score) == (0, 10), report.results
    for rec in report.results:
        assert "not implemented yet" in rec.message and rec.hint == "", rec


def test_missing_and_unimplemented_definitions():
    rec = run_check("ndarray.permute", {})
    assert rec["score"] == 0 and "`permute` is not defined" in rec["message"]
    assert rec["hint"] == ""


def _todo(*args):
    raise NotImplementedError("your code here")


@pytest.mark.parametrize("ex_id", IDS)
def test_untouched_stub_gets_only_not_implemented(ex_id):
    rec = _run(ex_id, **{name: _todo for name in registry.get(ex_id).needs})
    assert rec["score"] == 0
    assert "not implemented yet" in rec["message"]
    assert rec["hint"] == ""


# ---- the checks' own contract: plain cases, untrusted observations, nudging hints -----------

def _keys(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _keys(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _keys(v)


@pytest.mark.parametrize("ex_id", IDS)
def test_cases_travel_without_their_answers(ex_id):
    for case in registry.get(ex_id).check.cases():
        sent = roundtrip(public(case))
        assert "what" in sent
        assert not [k for k in _keys(sent) if k.startswith("_")], case["what"]


FORGED = [None, 0, "all cases passed", [], {}, (1, 2, 3), [(3, 4), (4, 1)],
          {"unreadable": 5}, ((3, 4), (4, 1), 10**30), ((10**9, 10**9), (0, 0), 0),
          ((3, 4), (True, 1), 0), ((4,), (10**40,), 0), {"raised": "ValueError"},
          {"raised": None, "mro": "ValueError"}, {"array": True, "dtype": "float32"},
          [None] * 200, np.zeros((2, 2)), {"items": [1, 2]}]


@pytest.mark.parametrize("ex_id", IDS)
def test_forged_observations_score_zero(ex_id):
    ex = registry.get(ex_id)
    cases = ex.check.cases()
    names = {n: "callable" for n in ex.needs}
    for forged in FORGED:
        for case in cases:
            rec = verdict(ex, [case], names, [{"ok": roundtrip(forged)}], None)
            assert rec["score"] == 0, (forged, case["what"])
            assert "unexpected form" not in rec["message"], (forged, rec["message"])


CODE = ["=", "range(", "np.", "itertools", "product(", "indices(", "strides[", "shape[", "zip("]


@pytest.mark.parametrize("ex_id", IDS)
def test_hints_are_nudges_not_code(ex_id):
    hint = registry.get(ex_id).hint
    assert len(hint) > 40
    assert not [c for c in CODE if c in hint], hint


def test_length_one_axes_may_have_any_stride():
    """numpy never reads the stride of an axis of length 1; neither does the check."""
    def odd_strides(shape, strides, offset, idx):
        new_shape, new_strides, offset = getitem(shape, strides, offset, idx)
        return new_shape, tuple(10**12 if n == 1 else s for n, s in
                                zip(new_shape, new_strides, strict=True)), offset

    assert _run("ndarray.getitem", getitem=odd_strides)["score"] == 3


# ---- the reference agrees with numpy (a sanity check of the checks' own oracle) -------------

@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=0, max_size=4), st.data())
def test_reference_getitem_matches_numpy(shape, data):
    flat = np.arange(math.prod(shape))
    arr = flat.reshape(shape)
    idx = []
    for n in shape[:data.draw(st.integers(0, len(shape)))]:
        if n and data.draw(st.booleans()):
            idx.append(data.draw(st.integers(-n, n - 1)))
        else:
            bound = st.none() | st.integers(-n - 2, n + 2)
            step = st.none() | st.sampled_from([-3, -2, -1, 1, 2, 3])
            idx.append(slice(data.draw(bound), data.draw(bound), data.draw(step)))
    view = arr[tuple(idx)]
    new_shape, new_strides, offset = getitem(shape, compact_strides(shape), 0, tuple(idx))
    assert new_shape == view.shape
    assert np.array_equal(compact(flat, new_shape, new_strides, offset),
                          view.reshape(-1))


# ---- wrong solutions fail with a useful message ---------------------------------------------

def test_compact_strides_failures():
    def column_major(shape):
        return tuple(math.prod(shape[:i]) for i in range(len(shape)))

    msg = _fails("ndarray.compact_strides", "compact_strides((3, 4))", "expected (4, 1)",
                 compact_strides=column_major)
    assert "got (1, 3)" in msg

    def no_empty_shape(shape):
        return compact_strides(shape) if shape else (1,)

    _fails("ndarray.compact_strides", "compact_strides(())", compact_strides=no_empty_shape)

    def skips_size_zero(shape):
        return tuple(math.prod(n for n in shape[i + 1:] if n) for i in range(len(shape)))

    _fails("ndarray.compact_strides", "compact_strides((2, 0, 3))", "expected (0, 3, 1)",
           compact_strides=skips_size_zero)


def test_permute_failures():
    def inverse(shape, strides, offset, axes):
        inv = tuple(int(a) for a in np.argsort(axes))
        return permute(shape, strides, offset, inv)

    _fails("ndarray.permute", "random case", "expected (shape=", permute=inverse)

    def unchecked(shape, strides, offset, axes):
        return tuple(shape[a] for a in axes), tuple(strides[a] for a in axes), offset

    _fails("ndarray.permute", "raises ValueError", "nothing was", permute=unchecked)

    def loses_offset(shape, strides, offset, axes):
        return permute(shape, strides, 0, axes)

    _fails("ndarray.permute", "offset=", permute=loses_offset)


def test_broadcast_to_failures():
    def left_aligned(shape, strides, offset, new_shape):
        shape, strides = tuple(shape), tuple(strides)
        pad = len(new_shape) - len(shape)
        return broadcast_to(shape + (1,) * pad, strides + (0,) * pad, offset, new_shape)

    _fails("ndarray.broadcast_to", "broadcast_to(shape=(3,)", "your code raised ValueError",
           broadcast_to=left_aligned)

    def all_zero(shape, strides, offset, new_shape):
        out_shape, out_strides, offset = broadcast_to(shape, strides, offset, new_shape)
        return out_shape, (0,) * len(out_shape), offset

    _fails("ndarray.broadcast_to", "element", "buffer position", broadcast_to=all_zero)

    def vague(shape, strides, offset, new_shape):
        try:
            return broadcast_to(shape, strides, offset, new_shape)
        except ValueError:
            raise ValueError("incompatible shapes") from None

    _fails("ndarray.broadcast_to", "naming both shapes", "incompatible shapes",
           broadcast_to=vague)

    def no_check(shape, strides, offset, new_shape):
        lead = len(new_shape) - len(shape)
        return tuple(new_shape), (0,) * lead + tuple(
            0 if n == 1 else s for n, s in zip(shape, strides, strict=False)), offset

    _fails("ndarray.broadcast_to", "raises ValueError", broadcast_to=no_check)


def test_getitem_failures():
    def ignores_step(shape, strides, offset, idx):
        fixed = tuple(slice(i.start, i.stop) if isinstance(i, slice) and i.step
                      and i.step > 0 else i for i in idx)
        return getitem(shape, strides, offset, fixed)

    _fails("ndarray.getitem", "a[::2] of a 3x4 matrix", "expected (shape=(2, 4)",
           "the shape differs", getitem=ignores_step)

    def keeps_int_axes(shape, strides, offset, idx):
        fixed = tuple(slice(i, i + 1) if isinstance(i, int) and i >= 0 else i for i in idx)
        return getitem(shape, strides, offset, fixed)

    _fails("ndarray.getitem", "a[1] of a 3x4 matrix", "expected (shape=(4,)",
           getitem=keeps_int_axes)

    def no_negative_ints(shape, strides, offset, idx):
        if any(isinstance(i, int) and i < 0 for i in idx):
            raise IndexError("negative index")
        return getitem(shape, strides, offset, idx)

    _fails("ndarray.getitem", "a[-1, -1]", "IndexError", getitem=no_negative_ints)

    def unchecked(shape, strides, offset, idx):
        idx = tuple(idx) + (slice(None),) * (len(shape) - len(idx))
        new_shape, new_strides = [], []
        for n, s, i in zip(shape, strides, idx, strict=False):
            if isinstance(i, slice):
                start, stop, step = i.indices(n)
                new_shape.append(len(range(start, stop, step)))
                new_strides.append(s * step)
                offset += start * s if new_shape[-1] else 0
            else:
                offset += (i % n if n else i) * s
        return tuple(new_shape), tuple(new_strides), offset

    _fails("ndarray.getitem", "raises IndexError", getitem=unchecked)

    def far_away(shape, strides, offset, idx):
        new_shape, new_strides, off = getitem(shape, strides, offset, idx)
        return new_shape, new_strides, off + 10**9

    # A triple outside the buffer must be caught before anything is read.
    _fails("ndarray.getitem", "reaches buffer positions", getitem=far_away)


def test_compact_failures():
    def column_major(flat, shape, strides, offset):
        order = itertools.product(*(range(n) for n in reversed(shape)))
        out = [flat[offset + sum(i * s for i, s in zip(reversed(index), strides, strict=False))]
               for index in order]
        return np.array(out, dtype=flat.dtype)

    _fails("ndarray.compact", "compact of a compact 3x4 array", "first difference at position 1",
           compact=column_major)

    def returns_buffer(flat, shape, strides, offset):
        if strides == compact_strides(shape) and offset == 0:
            return flat
        return compact(flat, shape, strides, offset)

    _fails("ndarray.compact", "shares memory with the buffer", compact=returns_buffer)

    def compact(flat, shape, strides, offset):  # noqa: F811 - the grader reads this source
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape, tuple(s * flat.itemsize for s in strides))
        return view.copy().reshape(-1)

    _fails("ndarray.compact", "walks the indices itself", "as_strided", compact=compact)

    def float64(flat, shape, strides, offset):
        return compact(flat, shape, strides, offset).astype(np.float64)

    _fails("ndarray.compact", "expected dtype float32", compact=float64)

    def no_zero_d(flat, shape, strides, offset):
        if not shape:
            return np.empty(0, flat.dtype)
        return compact(flat, shape, strides, offset)

    _fails("ndarray.compact", "0-d view", compact=no_zero_d)


def _cheat_cells():
    helper = (
        "import numpy as np\n"
        "def _helper(flat, shape, strides, offset):\n"
        "    view = np.lib.stride_tricks.as_strided(\n"
        "        flat[offset:], shape, tuple(s * flat.itemsize for s in strides))\n"
        "    return view.copy().reshape(-1)\n")
    return {"alias": [helper, "compact = _helper"],
            "through a helper": [helper, "def compact(flat, shape, strides, offset):\n"
                                 "    return _helper(flat, shape, strides, offset)\n"],
            "np.ndarray": ["import numpy as np\n"
                           "def compact(flat, shape, strides, offset):\n"
                           "    view = np.ndarray(shape, flat.dtype, flat, offset * "
                           "flat.itemsize,\n"
                           "                      tuple(s * flat.itemsize for s in strides))\n"
                           "    return view.copy().reshape(-1)\n"],
            "an aliased as_strided": [
                "from numpy.lib.stride_tricks import as_strided as strided_view\n",
                "def compact(flat, shape, strides, offset):\n"
                "    view = strided_view(flat[offset:], shape,\n"
                "                        tuple(s * flat.itemsize for s in strides))\n"
                "    return view.copy().reshape(-1)\n"],
            "an aliased stride_tricks module": [
                "import numpy as np\ntricks = np.lib.stride_tricks\n",
                "def compact(flat, shape, strides, offset):\n"
                "    make = getattr(tricks, 'as_' + 'strided')\n"
                "    view = make(flat[offset:], shape, tuple(s * flat.itemsize for s in strides))\n"
                "    return view.copy().reshape(-1)\n"],
            "getattr with a string": [
                "import numpy as np\n",
                "def compact(flat, shape, strides, offset):\n"
                "    make = getattr(np.lib, 'stride_tricks').as_strided\n"
                "    view = make(flat[offset:], shape, tuple(s * flat.itemsize for s in strides))\n"
                "    return view.copy().reshape(-1)\n"]}


@pytest.mark.parametrize("how", ["alias", "through a helper", "np.ndarray", "an aliased as_strided",
                                 "an aliased stride_tricks module", "getattr with a string"])
def test_compact_source_rule_follows_the_notebook(how):
    """The rule reads the notebook's source (here IPython's ``In``), through aliases and
    helper functions defined in it."""
    cells = _cheat_cells()[how]
    ns = {"In": cells}
    for cell in cells:
        exec(cell, ns)
    rec = run_check("ndarray.compact", ns)
    assert rec["score"] == 0 and "walks the indices itself" in rec["message"], rec
    assert rec["hint"]


def test_compact_source_rule_ignores_unrelated_cells():
    """A scratch cell that tries as_strided on its own does not count against compact."""
    scratch = ("import numpy as np\n"
               "view = np.lib.stride_tricks.as_strided(np.arange(4), (2, 2), (8, 8))\n")
    ns = {"In": [scratch], "compact": compact}
    rec = run_check("ndarray.compact", ns)
    assert rec["score"] == 2, rec["message"]


# ---- issue 20's audit: wrong answers that once scored, each now graded 0 --------------------

def test_getitem_that_drops_extra_indices_fails():
    """zip() stops at the shorter of shape and index: a[1, 2, 0] on a matrix must raise, as
    numpy does, not quietly return a[1, 2]."""
    def zipped(shape, strides, offset, idx):
        return getitem(shape, strides, offset, tuple(idx)[:len(shape)])

    msg = _fails("ndarray.getitem", "index [1, 2, 0] on shape (3, 4) raises IndexError",
                 "nothing was", getitem=zipped)
    assert "IndexError" in msg

    def length_by_division(shape, strides, offset, idx):  # (stop - start) // step
        idx = tuple(idx) + (slice(None),) * (len(shape) - len(idx))
        new_shape, new_strides = [], []
        for n, s, i in zip(shape, strides, idx, strict=True):
            if isinstance(i, slice):
                start, stop, step = i.indices(n)
                new_shape.append(max(0, (stop - start) // step))
                new_strides.append(s * step)
                offset += start * s if new_shape[-1] else 0
            else:
                offset += (i % n) * s
        return tuple(new_shape), tuple(new_strides), offset

    _fails("ndarray.getitem", "a[::2] of a 3x4 matrix", "the shape differs",
           getitem=length_by_division)


def test_getitem_that_reads_a_zero_step_as_one_fails():
    """``step = i.step or 1`` turns a[::0] into a[:]; numpy and Python refuse a step of 0."""
    def step_or_one(shape, strides, offset, idx):
        idx = tuple(idx)
        if len(idx) > len(shape):
            raise IndexError(f"too many indices for shape {shape}")
        fixed = tuple(slice(i.start, i.stop, i.step or 1) if isinstance(i, slice) else i
                      for i in idx)
        return getitem(shape, strides, offset, fixed)

    _fails("ndarray.getitem", "index [::0] on shape (3, 4) raises ValueError", "nothing was",
           getitem=step_or_one)


def test_broadcast_to_that_stretches_empty_axes_fails():
    """Only an axis of length 1 stretches; numpy refuses to broadcast (0,) to (3,)."""
    def zero_stretches(shape, strides, offset, new_shape):
        try:
            return broadcast_to(shape, strides, offset, new_shape)
        except ValueError:
            if 0 not in shape:
                raise
            lead = len(new_shape) - len(shape)
            return tuple(new_shape), (0,) * lead + tuple(
                s if n == m else 0 for n, s, m in zip(shape, strides, new_shape[lead:],
                                                       strict=True)), offset

    _fails("ndarray.broadcast_to", "new_shape=(3,)) raises ValueError", "nothing was",
           broadcast_to=zero_stretches)


_OTHER_DOORS = {
    "strides written on a view": (
        "import numpy as np\n"
        "def compact(flat, shape, strides, offset):\n"
        "    if not shape:\n"
        "        return flat[offset:offset + 1].copy()\n"
        "    view = np.broadcast_to(flat[offset:offset + 1].reshape((1,) * len(shape)),\n"
        "                           shape).view()\n"
        "    view.strides = tuple(s * flat.itemsize for s in strides)\n"
        "    return view.copy().reshape(-1)\n", "assignment to a view's .strides"),
    "the array interface": (
        "import numpy as np\n"
        "class _View:\n"
        "    pass\n"
        "def compact(flat, shape, strides, offset):\n"
        "    face = dict(flat.__array_interface__)\n"
        "    face.update(shape=tuple(shape), strides=tuple(s * flat.itemsize for s in strides),\n"
        "                data=(face['data'][0] + offset * flat.itemsize, True))\n"
        "    view = _View()\n"
        "    view.__array_interface__ = face\n"
        "    return np.array(view).reshape(-1)\n", "__array_interface__"),
    "a run-time import": (
        "import importlib\n"
        "def compact(flat, shape, strides, offset):\n"
        "    tricks = importlib.import_module('numpy.lib.' + 'stride' + '_tricks')\n"
        "    make = getattr(tricks, 'as_' + 'strided')\n"
        "    view = make(flat[offset:], shape, tuple(s * flat.itemsize for s in strides))\n"
        "    return view.copy().reshape(-1)\n", "an import spelt at run time"),
}


@pytest.mark.filterwarnings("ignore:Setting the strides:DeprecationWarning")
@pytest.mark.parametrize("how", sorted(_OTHER_DOORS))
def test_compact_through_another_door_to_a_strided_view_fails(how):
    """Right values, every time: numpy built the view, and compact copied it."""
    cell, fragment = _OTHER_DOORS[how]
    ns = {"In": [cell]}
    exec(cell, ns)
    rec = run_check("ndarray.compact", ns)
    assert rec["score"] == 0, rec
    assert "walks the indices itself" in rec["message"] and fragment in rec["message"], rec
    assert rec["hint"]


def test_compact_by_gathering_computed_positions_passes():
    """Positions computed from the strides with numpy, then gathered: that is the idea."""
    cell = ("import numpy as np\n"
            "def compact(flat, shape, strides, offset):\n"
            "    pos = np.full(shape, offset)\n"
            "    for axis, (n, s) in enumerate(zip(shape, strides)):\n"
            "        along = [1] * len(shape)\n"
            "        along[axis] = n\n"
            "        pos = pos + np.arange(n).reshape(along) * s\n"
            "    return flat[pos.reshape(-1)]\n")
    ns = {"In": [cell]}
    exec(cell, ns)
    assert run_check("ndarray.compact", ns)["score"] == 2


def test_broadcast_to_may_name_the_shapes_as_lists():
    """An honest message that writes the shapes as lists names them too."""
    def lists(shape, strides, offset, new_shape):
        try:
            return broadcast_to(shape, strides, offset, new_shape)
        except ValueError:
            raise ValueError(f"cannot broadcast {list(shape)} to {list(new_shape)}") from None

    assert _run("ndarray.broadcast_to", broadcast_to=lists)["score"] == 2


def test_more_plausible_stride_mistakes_fail():
    """Strides in bytes of a float32, a stride of 0 for every axis of length 1 (it is never
    read, but a compact array's is the product of the axes to its right), and a permute
    that reorders the shape and keeps the strides."""
    _fails("ndarray.compact_strides", "compact_strides((3, 4))", "got (16, 4)",
           compact_strides=lambda shape: tuple(4 * s for s in compact_strides(shape)))
    _fails("ndarray.compact_strides", "compact_strides((1,))", "got (0,)",
           compact_strides=lambda shape: tuple(0 if n == 1 else s for n, s in
                                               zip(shape, compact_strides(shape), strict=True)))

    def shape_only(shape, strides, offset, axes):
        new_shape, _, offset = permute(shape, strides, offset, axes)
        return new_shape, tuple(strides), offset

    _fails("ndarray.permute", "permute of a 3x4 matrix with axes (1, 0)",
           "reaches buffer positions", permute=shape_only)
