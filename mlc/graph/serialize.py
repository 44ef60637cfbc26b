"""Saving graphs and executables as data: JSON plus an ``.npz`` of constants, no pickle.

::

    graph.save(g, "mlp")                 # mlp/graph.json, mlp/constants.npz
    g2 = graph.load("mlp")
    exe.save("mlp_exe")                  # + program.json (steps, target, plan), source.py
    exe2 = graph.load_executable("mlp_exe")

A pickle runs code when it is loaded, so a model file from someone else is a program
from someone else. Here nothing loaded is ever executed: the graph is plain JSON (ops by
name, attributes as numbers, strings and lists; the batch symbol as ``{"N": [a, c]}``),
the constants are numeric arrays read with ``np.load(..., allow_pickle=False)``, and an
executable's kernels are **regenerated** on load by lowering the saved steps again (the
same lowering gives the same code, so the outputs are the same bit for bit).
``source.py`` is written beside them for reading only; loading never opens it.

Everything read is validated before use: the format and its version, every field's type,
each op against the op registry, inputs that name earlier nodes, every shape re-inferred
from its inputs, each constant's shape and dtype, the steps (each op in exactly one, in
an order that runs) and the memory plan (verified: no two live tensors overlap). A bad or
tampered file raises :class:`FormatError` saying which file and which node.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from .ir import Graph, Node
from .symbolic import Dim

GRAPH_FORMAT, EXE_FORMAT, VERSION = "mlc.graph", "mlc.executable", 1
DTYPES = ("float32", "float64", "float16", "int8", "uint8", "int16", "int32", "int64", "bool")
_SCALARS = (str, int, float, bool, type(None))


class FormatError(ValueError):
    """A saved graph or executable that is malformed, tampered with, or of another version."""


# ---- attributes and symbolic shapes as JSON --------------------------------------------------

def _enc(v, where):
    if isinstance(v, Dim):
        return {"N": v.to_json()}
    if isinstance(v, (tuple, list)):
        return [_enc(x, where) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return {"float": repr(v)}
    if isinstance(v, _SCALARS):
        return v
    raise TypeError(f"{where}: a value of type {type(v).__name__} cannot be saved")


# a string attribute is a name (a dtype, a mode): never text that could become code
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _dec(v, where):
    if isinstance(v, list):
        return tuple(_dec(x, where) for x in v)
    if isinstance(v, dict):
        if set(v) == {"N"} and _is_pair(v["N"]):
            return Dim(*v["N"])
        if set(v) == {"float"} and v["float"] in ("inf", "-inf", "nan"):
            return float(v["float"])
        raise FormatError(f"{where}: unexpected object {v!r}")
    if isinstance(v, str) and not _WORD.fullmatch(v):
        raise FormatError(f"{where}: {v[:40]!r} is not a name")
    if isinstance(v, _SCALARS):
        return v
    raise FormatError(f"{where}: unexpected value {v!r}")


def encode_attrs(attrs: dict, where: str = "attrs") -> dict:
    """Attributes as JSON values (tuples become lists, the batch symbol an object)."""
    return {str(k): _enc(v, f"{where} attribute {k}") for k, v in attrs.items()}


def decode_attrs(data, where: str = "attrs") -> dict:
    """The attributes :func:`encode_attrs` wrote (lists become tuples), checked."""
    _need(isinstance(data, dict), f"{where}: attrs must be an object")
    return {str(k): _dec(v, f"{where} attribute {k}") for k, v in data.items()}


def _is_pair(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(
        isinstance(x, int) and not isinstance(x, bool) for x in v)


# ---- graphs ---------------------------------------------------------------------------------

def graph_to_data(g: Graph) -> tuple[dict, dict]:
    """``(json-able dict, {key: constant array})`` of graph ``g``."""
    arrays, nodes = {}, []
    for i, n in enumerate(g.nodes):
        where = f"%{n.name}"
        d = {"name": n.name, "op": n.op, "inputs": [x.name for x in n.inputs],
             "attrs": encode_attrs(n.attrs, where),
             "shape": list(n.shape), "dtype": n.dtype, "sym": None}
        if n.sym is not None:
            d["sym"] = {"shape": _enc(n.sym[0], where),
                        "attrs": encode_attrs(n.sym[1], where)}
        if n.op == "constant":
            d["value"] = f"c{i}"
            arrays[f"c{i}"] = np.ascontiguousarray(n.value, dtype=n.dtype)
        nodes.append(d)
    return {"format": GRAPH_FORMAT, "version": VERSION, "nodes": nodes,
            "inputs": [n.name for n in g.inputs], "outputs": [n.name for n in g.outputs],
            "batch_reason": getattr(g, "batch_reason", None)}, arrays


def save(g: Graph, path) -> str:
    """Write graph ``g`` into folder ``path`` (``graph.json``, ``constants.npz``)."""
    data, arrays = graph_to_data(g)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "graph.json"), "w") as f:
        json.dump(data, f, indent=1)
    np.savez(os.path.join(path, "constants.npz"), **arrays)
    return str(path)


def _need(cond, msg):
    if not cond:
        raise FormatError(msg)


def _ints(v, what) -> tuple:
    _need(isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and
                                      x >= 0 for x in v),
          f"{what}: expected a list of non-negative ints, got {v!r}"[:300])
    return tuple(v)


def graph_from_data(data, arrays, where: str = "graph.json") -> Graph:
    """The :class:`Graph` of :func:`graph_to_data`'s output, validated (see the module
    docstring); ``arrays`` maps constant keys to arrays."""
    from .ops.registry import known
    from .symbolic import batch_size, evaluate, infer, symbolic

    fmt = data.get("format") if isinstance(data, dict) else None
    _need(fmt == GRAPH_FORMAT, f"{where}: not a saved mlc graph (format {fmt!r})")
    _need(data.get("version") == VERSION,
          f"{where}: format version {data.get('version')!r}; this mlc reads version {VERSION}")
    _need(isinstance(data.get("nodes"), list), f"{where}: 'nodes' must be a list")
    by_name: dict = {}
    nodes = []
    for k, d in enumerate(data["nodes"]):
        _need(isinstance(d, dict), f"{where}: node {k} is not an object")
        name, op = d.get("name"), d.get("op")
        at = f"{where}: node {k} (%{name})"
        _need(isinstance(name, str) and 0 < len(name) <= 200 and name.isprintable() and
              name not in by_name, f"{at}: missing, repeated or unprintable name")
        _need(op in ("input", "constant") or (isinstance(op, str) and known(op)),
              f"{at}: unknown op {op!r}")
        _need(d.get("dtype") in DTYPES, f"{at}: unknown dtype {d.get('dtype')!r}")
        shape = _ints(d.get("shape"), f"{at} shape")
        ins = d.get("inputs")
        _need(isinstance(ins, list) and all(isinstance(x, str) and x in by_name for x in ins),
              f"{at}: inputs must name earlier nodes, got {ins!r}"[:300])
        attrs = decode_attrs(d.get("attrs"), at)
        _need(not symbolic(attrs), f"{at}: a batch symbol among the concrete attrs")
        value = None
        if op == "constant":
            key = d.get("value")
            _need(isinstance(key, str) and key in arrays, f"{at}: its value is missing")
            value = arrays[key]
            _need(value.shape == shape and str(value.dtype) == d["dtype"],
                  f"{at}: value is {value.dtype}{list(value.shape)}, the node says "
                  f"{d['dtype']}{list(shape)}")
        sym = d.get("sym")
        if sym is not None:
            _need(isinstance(sym, dict) and set(sym) == {"shape", "attrs"} and
                  isinstance(sym["attrs"], dict), f"{at}: malformed sym")
            sym = (_dec(sym["shape"], at), decode_attrs(sym["attrs"], at))
        n = Node(op, [by_name[x] for x in ins], attrs, shape, d["dtype"], name, value, sym)
        if op not in ("input", "constant"):
            _need(not n.is_leaf, f"{at}: an op without inputs")
            try:
                got, dtype = infer(op, [x.shape for x in n.inputs], [x.dtype for x in n.inputs],
                                   attrs)
            except (ValueError, TypeError, KeyError, IndexError, AttributeError,
                    ZeroDivisionError, OverflowError) as e:
                raise FormatError(f"{at}: {op} does not accept its inputs ({e})") from None
            _need(tuple(got) == shape and dtype == n.dtype,
                  f"{at}: {op} of its inputs is {dtype}{list(got)}, the file says "
                  f"{n.dtype}{list(shape)}")
        by_name[name] = n
        nodes.append(n)
    for key in ("inputs", "outputs"):
        names = data.get(key)
        _need(isinstance(names, list) and all(isinstance(x, str) and x in by_name
                                              for x in names),
              f"{where}: bad {key} {names!r}"[:300])
    try:
        g = Graph(nodes, [by_name[x] for x in data["inputs"]],
                  [by_name[x] for x in data["outputs"]])
    except ValueError as e:
        raise FormatError(f"{where}: {e}") from None
    b = batch_size(g)
    for n in g.nodes:            # the symbolic shapes agree with the concrete ones
        _need(n.sym is None or b is not None and evaluate(n.sym[0], b) == n.shape and all(
            evaluate(v, b) == n.attrs.get(k) for k, v in n.sym[1].items()),
            f"{where}: %{n.name}: its batch symbol does not match its shape")
    reason = data.get("batch_reason")
    if reason is not None:
        _need(isinstance(reason, str), f"{where}: batch_reason must be a string")
        g.batch_reason = reason
    return g


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FormatError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: not valid JSON ({e})") from None


def _read_arrays(path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise FormatError(f"{path}: missing") from None
    except (ValueError, OSError, EOFError) as e:   # object arrays need pickle: refused
        raise FormatError(f"{path}: not a plain .npz of numeric arrays ({e})") from None


def load(path) -> Graph:
    """The graph saved by :func:`save` in folder ``path`` (validated; no code is run)."""
    data = _read_json(os.path.join(path, "graph.json"))
    arrays = _read_arrays(os.path.join(path, "constants.npz"))
    return graph_from_data(data, arrays, os.path.join(str(path), "graph.json"))


# ---- executables ----------------------------------------------------------------------------

def save_executable(exe, path) -> str:
    """Write ``exe`` into folder ``path``: its graph (:func:`save`), ``program.json`` (the
    steps as node names, the target, the memory plan) and ``source.py`` (to read)."""
    prog = exe.program
    save(prog.graph, path)
    plan = None
    if prog.plan is not None:
        p = prog.plan
        plan = {"strategy": p.strategy, "alignment": p.alignment, "arena_bytes": p.arena_bytes,
                "offsets": {t.name: o for t, o in p.offsets.items()},
                "inplace": {o.name: i.name for o, i in p.inplace.items()},
                "max_batch": exe.max_batch}
    data = {"format": EXE_FORMAT, "version": VERSION, "target": prog.target,
            "steps": [[n.name for n in s.nodes] for s in prog.steps], "plan": plan}
    with open(os.path.join(path, "program.json"), "w") as f:
        json.dump(data, f, indent=1)
    with open(os.path.join(path, "source.py"), "w") as f:
        f.write("# generated kernels, for reading: loading an executable never runs this "
                "file\n" + exe.source)
    return str(path)


def _steps_of(g, steps, where) -> list:
    by_name = {n.name: n for n in g.nodes}
    _need(isinstance(steps, list), f"{where}: 'steps' must be a list")
    groups, seen = [], set()
    for k, names in enumerate(steps):
        _need(isinstance(names, list) and names and all(
            isinstance(x, str) and x in by_name and not by_name[x].is_leaf and x not in seen
            for x in names), f"{where}: step {k} must list op nodes not in another step")
        seen.update(names)
        group = [by_name[x] for x in names]
        for n in group:            # what a step reads is computed by an earlier step
            for x in n.inputs:
                _need(x.is_leaf or x.name in seen,
                      f"{where}: step {k} reads %{x.name} before a step computes it")
        groups.append(group)
    _need(seen == {n.name for n in g.ops}, f"{where}: the steps do not cover every op "
          f"(missing {sorted({n.name for n in g.ops} - seen)[:5]})")
    return groups


def _plan_of(prog, d, where):
    from .. import memory
    from ..memory.plan import storages, views_of

    _need(isinstance(d, dict) and d.get("strategy") in memory.PLANNERS and all(
        isinstance(d.get(k), int) and not isinstance(d.get(k), bool) and d[k] >= 1
        for k in ("alignment", "arena_bytes")) and isinstance(d.get("offsets"), dict) and
        isinstance(d.get("inplace"), dict), f"{where}: malformed memory plan")
    live = memory.liveness(prog)
    by_name = {t.name: t for t in live}
    _need(set(d["offsets"]) == set(by_name) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in d["offsets"].values()),
        f"{where}: the plan's tensors are not the program's")
    _need(all(o in by_name and i in by_name for o, i in d["inplace"].items()),
          f"{where}: the plan's in-place pairs name unknown tensors")
    inplace = {by_name[o]: by_name[i] for o, i in d["inplace"].items()}
    views = views_of(prog, live)
    storage = storages(live, views, inplace)
    plan = memory.Plan(prog, {t: d["offsets"][t.name] for t in live},
                       {t: t.nbytes for t in live}, dict(live), d["arena_bytes"],
                       d["strategy"], inplace, d["alignment"], storage, views)
    try:
        plan.verify()
    except memory.PlanError as e:
        raise FormatError(f"{where}: the memory plan is unsafe ({e})") from None
    max_batch = d.get("max_batch")
    _need(max_batch is None or isinstance(max_batch, int) and max_batch >= 1,
          f"{where}: bad max_batch")
    return plan, max_batch


def load_executable(path):
    """The executable saved by ``exe.save(path)``: its graph loaded and validated, its
    steps lowered and compiled again for the saved target (no stored code is run), its
    memory plan verified and assigned."""
    from ..codegen import TARGETS
    from .executor import Executable
    from .program import Program, lower

    g = load(path)
    where = os.path.join(str(path), "program.json")
    data = _read_json(where)
    _need(isinstance(data, dict) and data.get("format") == EXE_FORMAT,
          f"{where}: not a saved mlc executable")
    _need(data.get("version") == VERSION,
          f"{where}: format version {data.get('version')!r}; this mlc reads version {VERSION}")
    _need(data.get("target") in TARGETS, f"{where}: unknown target {data.get('target')!r}")
    prog = lower(Program.from_groups(g, _steps_of(g, data.get("steps"), where),
                                     kernel_names=True), data["target"])
    if data.get("plan") is None:
        return Executable(prog)
    from .. import memory

    plan, max_batch = _plan_of(prog, data["plan"], where)
    return Executable(memory.assign(prog, plan), max_batch=max_batch)
