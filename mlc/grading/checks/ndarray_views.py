"""Unit 01, NDArray (continued): indexing a view and copying it out, ``getitem`` and
``compact``. The helpers and the first three exercises are in :mod:`.ndarray`."""

from __future__ import annotations

import ast

import numpy as np

from ..registry import Check, _short, call, exercise, need
from ..source import _python
from .ndarray import NB, ViewCheck, bundle, compact_strides_of, random_base, triple_of, view_case


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


def _encode_index(idx) -> tuple:
    """Slices cannot travel: each becomes ``{"slice": [start, stop, step]}``."""
    return tuple({"slice": [i.start, i.stop, i.step]} if isinstance(i, slice) else i
                 for i in idx)


def _decode_index(idx) -> tuple:
    """The index as the student's function takes it (in the worker)."""
    return tuple(slice(*i["slice"]) if isinstance(i, dict) else i for i in idx)


def _index_case(what, shape, strides, offset, idx, view, flat) -> dict:
    return view_case(what, [shape, strides, offset, _encode_index(idx)], view, flat)


@exercise("ndarray.getitem", points=3, notebook=NB, needs=("getitem",),
          hint="Treat the axes one at a time (missing trailing indices select the whole "
               "axis). Python's slice objects can normalise themselves for a given length, "
               "out-of-range bounds included. Ask how each slice changes the axis' length, "
               "its stride and where the view starts (also for an empty result), and how an "
               "int index removes an axis. Bad indices raise what numpy raises: IndexError, "
               "or ValueError for a step of 0 (lecture 01, 'Slicing with steps' and "
               "'Integer indexing drops an axis').",
          rebuilds=("mlc.ndarray.ndarray:NDArray.__getitem__",))
class _Getitem(ViewCheck):
    fn = "getitem"
    error = IndexError

    def args(self, case):
        shape, strides, offset, idx = case["args"]
        return [shape, strides, offset, _decode_index(idx)]

    def cases(self):
        flat = np.arange(12)
        a = flat.reshape(3, 4)
        shown = [((1,), "a[1]"), ((slice(None), 2), "a[:, 2]"),
                 ((slice(None, None, 2),), "a[::2]"),
                 ((slice(None), slice(None, None, -1)), "a[:, ::-1]"), ((-1, -1), "a[-1, -1]"),
                 ((slice(1, 3), slice(1, None, 2)), "a[1:3, 1::2]"), ((), "a[()]"),
                 ((slice(5, 9),), "a[5:9] (empty)")]
        out = [_index_case(f"{text} of a 3x4 matrix", (3, 4), (4, 1), 0, idx, a[idx], flat)
               for idx, text in shown]
        rng = np.random.default_rng(303)
        items = []
        for case in range(120):
            flat, base = random_base(rng, flat_size=int(rng.integers(0, 4)))
            shape, strides, offset = triple_of(base, flat)
            idx = _random_index(rng, shape)
            items.append(_index_case(f"random case {case}: view{_fmt_index(idx)} with "
                                     f"shape={shape}, strides={strides}, offset={offset}",
                                     shape, strides, offset, idx, base[idx], flat))
        out.append(bundle("120 random indexings of stepped, reversed and permuted views", items))
        # out of range, and more indices than axes (zip would drop the extra ones silently)
        for shape, idx in [((3, 4), (3,)), ((3, 4), (-4,)), ((3, 4), (0, 4)), ((3, 4), (1, -5)),
                           ((0, 2), (0,)), ((5,), (7,)), ((3, 4), (1, 2, 0)), ((), (0,)),
                           ((3, 4), (slice(None), 1, slice(None)))]:
            out.append({"what": f"index {_fmt_index(idx)} on shape {shape} raises IndexError",
                        "raises": True,
                        "args": [shape, compact_strides_of(shape), 0, _encode_index(idx)]})
        # as numpy and Python's slices do: a step of 0 is no step (`step or 1` hides it)
        out.append({"what": "index [::0] on shape (3, 4) raises ValueError", "raises": True,
                    "error": "ValueError",
                    "args": [(3, 4), (4, 1), 0, _encode_index((slice(None, None, 0),))]})
        return out


# ---- 5. compact -----------------------------------------------------------------------------

def _compact_obs(what, f, flat, shape, strides, offset) -> dict:
    """In the worker: what compact returned, whether it shares the buffer's memory (only
    the worker can tell), and the buffer after the call (it must be unchanged)."""
    out = call(what, f, flat, shape, strides, offset)
    obs = {"type": type(out).__name__, "flat": flat, "array": isinstance(out, np.ndarray)}
    if isinstance(out, np.ndarray):
        obs["dtype"] = str(out.dtype)
        obs["shape"] = tuple(int(n) for n in out.shape)
        obs["out"] = out if out.dtype.kind in "biufc" else None
        try:
            obs["shares"] = bool(np.shares_memory(out, flat, max_work=10**6))
        except Exception:  # noqa: BLE001 - TooHardError (numpy.exceptions from 1.25 on)
            obs["shares"] = bool(np.may_share_memory(out, flat))
    return obs


def _judge_compact(t, case, obs, label, record=True) -> None:
    flat, expected = case["flat"], case["_expected"]
    if not isinstance(obs, dict):
        t.fail(f"{label}: malformed observation")
    if obs.get("array") is not True:
        t.fail(f"{label}: expected a numpy array, got {str(obs.get('type'))[:60]}")
    if obs.get("dtype") != str(flat.dtype):
        t.fail(f"{label}: expected dtype {flat.dtype} (the buffer's), "
               f"got {str(obs.get('dtype'))[:40]}")
    out = obs.get("out")
    if not isinstance(out, np.ndarray):
        t.fail(f"{label}: expected an array of numbers")
    if out.shape != expected.shape:
        t.fail(f"{label}: expected a 1-D array of shape {expected.shape}, got shape {out.shape}")
    if not np.array_equal(out, expected):
        k = int(np.argwhere(out != expected)[0][0])
        if expected.size <= 24:
            t.fail(f"{label}: expected {expected.tolist()}, got {out.tolist()} "
                   f"(first difference at position {k})")
        t.fail(f"{label}: expected {_short(expected)}, got {_short(out)} "
               f"(first difference at position {k})")
    if obs.get("shares") is not False:
        t.fail(f"{label}: the result shares memory with the buffer (the worker's "
               "measurement); allocate a fresh output array")
    after = obs.get("flat")
    if not (isinstance(after, np.ndarray) and after.shape == flat.shape
            and np.array_equal(after, flat)):
        t.fail(f"{label}: the buffer was modified; only write to the output")
    if record:
        t.passed.append(label)


def _compact_case(what, flat, view) -> dict:
    """``what`` is a format with the fields shape, strides and offset."""
    shape, strides, offset = triple_of(view, flat)
    return {"what": what.format(shape=shape, strides=strides, offset=offset), "flat": flat,
            "shape": shape, "strides": strides, "offset": offset,
            "_expected": np.ascontiguousarray(view).reshape(-1)}


_FORBIDDEN = {"as_strided", "stride_tricks"}
# Other doors to a strided view of the buffer: numpy's array interface (a dict of shape,
# strides and address that numpy turns into a view), and a module imported by a name
# spelt at run time (which no reading of the source can follow).
_INTERFACE = {"__array_interface__", "__array_struct__"}
_IMPORTERS = {"importlib", "import_module", "__import__"}
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _aliases(src) -> set[str]:
    """Names a notebook gives numpy's view machinery (``from numpy.lib.stride_tricks import
    as_strided as view``, ``st = np.lib.stride_tricks``): using one is using the original."""
    out = set()
    for cell in src.cells:
        try:
            tree = ast.parse(_python(cell))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and any(
                    m in (node.module or "") for m in ("stride_tricks", "importlib")):
                out |= {a.asname or a.name for a in node.names}
            elif isinstance(node, ast.Import):
                out |= {a.asname for a in node.names if a.asname
                        and ("stride_tricks" in a.name or a.name == "importlib")}
            elif isinstance(node, ast.Assign) and _mentions(node.value, _FORBIDDEN):
                out |= {tg.id for tg in node.targets if isinstance(tg, ast.Name)}
    return out


def _mentions(node, names: set[str]) -> bool:
    """Whether ``node`` names one of ``names`` as an identifier, attribute or string
    (``getattr(np.lib, "stride_tricks")``)."""
    return any((isinstance(n, ast.Name) and n.id in names)
               or (isinstance(n, ast.Attribute) and n.attr in names)
               or (isinstance(n, ast.Constant) and isinstance(n.value, str)
                   and any(f in n.value for f in names)) for n in ast.walk(node))


def _uses(src, name: str) -> set[str]:
    """What of numpy's own view machinery the definition of ``name`` uses, also through
    the notebook's functions it calls (or the definition it is an alias of), under its own
    name or an alias the notebook gave it."""
    forbidden = _FORBIDDEN | {"sliding_window_view"}
    aliases = _aliases(src)
    found, todo, seen = set(), [name], set()
    while todo:
        n = todo.pop()
        d = src.definition(n)
        if d is None or n in seen:
            continue
        seen.add(n)
        found |= forbidden & d.names()
        found |= {f"{a} (an alias of numpy's stride tricks)" for a in aliases & d.names()}
        if _mentions(d.tree, forbidden) and not forbidden & d.names():
            found.add("a string naming numpy's stride tricks")
        if "ndarray" in d.calls():
            found.add("np.ndarray(...)")
        found |= _other_doors(d.tree, d.names())
        alias = not isinstance(d.tree, _DEFS)  # e.g. compact = my_compact
        for m in (d.names() if alias else d.calls()):
            other = src.definition(m)
            if other is not None and (alias or isinstance(other.tree, _DEFS)):
                todo.append(m)
    return found


def _other_doors(tree, names: set[str]) -> set[str]:
    """The ways besides as_strided in which ``tree`` makes numpy build the strided view:
    writing a view's ``.strides``, the array interface, a module imported at run time."""
    found = {f"{n} (a strided view through numpy's array interface)"
             for n in _INTERFACE & names}
    found |= {f"{n} (an import spelt at run time)" for n in _IMPORTERS & names}
    for node in ast.walk(tree):
        targets = (node.targets if isinstance(node, ast.Assign) else
                   [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        if any(isinstance(tg, ast.Attribute) and tg.attr == "strides" for tg in targets) or (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "setattr"
                and any(isinstance(a, ast.Constant) and a.value == "strides"
                        for a in node.args)):
            found.add("an assignment to a view's .strides")
    return found


@exercise("ndarray.compact", points=2, notebook=NB, needs=("compact",),
          hint="Visit the view's elements in row-major order (the last index changes "
               "fastest) and find each one's position in the buffer from the offset and "
               "the strides, with the address formula at the top of this notebook. Write "
               "into a new array of the buffer's dtype; numpy's stride tricks are not "
               "allowed here.",
          rebuilds=("mlc.ndarray.ndarray:NDArray.compact",
                    "mlc.ndarray.backends.numpy:compact",
                    "mlc.ndarray.backends.cpu:compact"))
class _Compact(Check):
    def cases(self):
        flat = np.arange(12, dtype=np.float32) * 1.5
        shown = [("a compact 3x4 array", flat.reshape(3, 4)),
                 ("the transpose of a 3x4 array", flat.reshape(3, 4).T),
                 ("every other column, reversed", flat.reshape(3, 4)[:, ::-2]),
                 ("a row broadcast to 3 rows (stride 0)", np.broadcast_to(flat[4:8], (3, 4))),
                 ("a single element as a 0-d view", flat[7, ...]),
                 ("an empty view of shape (0, 4)", flat.reshape(3, 4)[3:]),
                 ("an empty view of shape (2, 0, 3)",
                  np.broadcast_to(flat[:0, None], (2, 0, 3)))]
        out = [_compact_case(f"compact of {what} (shape={{shape}}, strides={{strides}}, "
                             "offset={offset})", flat, view) for what, view in shown]
        rng = np.random.default_rng(404)
        items = []
        for case in range(20):
            flat, base = random_base(rng, flat_size=int(rng.integers(0, 4)))
            if rng.random() < 0.3:  # stretch a length-1 axis or add one, with stride 0
                base = np.broadcast_to(base[..., :1], base.shape[:-1] + (3,))
            items.append(_compact_case(f"random case {case}: compact(flat, shape={{shape}}, "
                                       "strides={strides}, offset={offset})", flat, base))
        out.append({"what": "20 random stepped, reversed, permuted and broadcast views",
                    "items": [{k: v for k, v in it.items() if k != "_expected"}
                              for it in items],
                    "_expected": [it["_expected"] for it in items]})
        return out

    def observe(self, ns, case):
        f = need(ns, "compact")
        if "items" in case:
            return [_compact_obs(it["what"], f, it["flat"], it["shape"], it["strides"],
                                 it["offset"]) for it in case["items"]]
        return _compact_obs(case["what"], f, case["flat"], case["shape"], case["strides"],
                            case["offset"])

    def judge(self, case, obs, t):
        if "items" not in case:
            _judge_compact(t, case, obs, case["what"])
            return
        if not (isinstance(obs, list) and len(obs) == len(case["items"])):
            t.fail(f"{case['what']}: malformed observation")
        for it, expected, o in zip(case["items"], case["_expected"], obs, strict=True):
            _judge_compact(t, {**it, "_expected": expected}, o, it["what"], record=False)
        t.passed.append(case["what"])

    def inspect(self, src, t):
        t.true(src.definition("compact") is not None,
               "compact is defined in a code cell of the notebook",
               "the grader reads its source; define it with def compact(...)")
        used = sorted(_uses(src, "compact"))
        t.true(not used, "compact walks the indices itself",
               f"it uses {', '.join(used)}; compute each element's position from the strides")
