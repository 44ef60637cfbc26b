"""The student's definitions as source text, for a process where none of the notebook ran.

:func:`definitions` writes out, from the notebook's namespace, the source of the functions
an exercise needs (as IPython keeps the cells' text), the notebook's own functions and
classes they call, the numeric constants they read (``TILE``) and the imports they rely
on: what :mod:`mlc.grading.fresh` runs in its measuring process, and nothing else of the
notebook.
"""

from __future__ import annotations

import ast
import dis
import inspect
import sys
import textwrap

from .registry import CheckFailed

_PRELUDE = "import math\nimport numpy as np\nimport numba\nfrom numba import njit, prange\n"


def _globals_used(fn) -> set[str]:
    """The global names ``fn``'s code (nested functions included) reads; not attribute
    names (``sch.split`` does not need the notebook's ``split``)."""
    names, codes = set(), [getattr(fn, "py_func", fn).__code__]
    while codes:
        code = codes.pop()
        names.update(i.argval for i in dis.get_instructions(code)
                     if i.opname in ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF"))
        codes += [c for c in code.co_consts if hasattr(c, "co_names")]
    return names


def _expression(text: str) -> bool:
    try:
        ast.parse(text, mode="eval")
        return True
    except SyntaxError:
        return False


def _closed_over(fn) -> dict:
    """The values of ``fn``'s free variables (those already bound), by name."""
    out = {}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__, strict=True):
        try:
            out[name] = cell.cell_contents
        except ValueError:  # not bound yet
            continue
    return out


def _import_of(name: str, obj, ns: dict) -> list[str]:
    """``from MODULE import ATTR as name`` for an object the notebook imported (a module
    it imported, numpy or numba holds it), else nothing."""
    if obj is None:
        return []
    if getattr(obj, "__module__", None) == ns.get("__name__"):
        return []  # the notebook's own, without a source: nothing to import it from
    homes = [getattr(obj, "__module__", None)] + [
        m.__name__ for m in ns.values() if inspect.ismodule(m)] + ["numpy", "numba"]
    for home in homes:
        module = sys.modules.get(home) if isinstance(home, str) else None
        for attr, value in (vars(module).items() if module else ()):
            if value is obj and not attr.startswith("__"):
                return [f"from {home} import {attr} as {name}\n"]
    return []


def _lambda_text(source: str) -> str:
    """The first ``lambda`` expression in a line of source (``getsource`` gives the line)."""
    start = source.index("lambda")
    for end in range(len(source), start, -1):
        try:
            ast.parse(source[start:end], mode="eval")
            return source[start:end]
        except SyntaxError:
            continue
    raise CheckFailed("a lambda whose source cannot be read: define it with def")


def definitions(ns: dict, names: tuple[str, ...], values: tuple[str, ...] = ()) -> str:
    """The source of the student's definitions of ``names`` (the notebook's own text, as
    IPython keeps it) after the ``values`` (their repr) and whatever they use: the notebook's
    own functions and classes (their source), constants, and imports."""
    consts, funcs, seen = [], [], set()
    for name in values:  # as the notebook holds them, so the check sees `TILE = "4"` too
        if name in ns and _expression(text := repr(ns[name])):
            consts.append(f"{name} = {text}\n")
            seen.add(name)
    todo = [(name, ns) for name in names]  # a name, and the globals it is looked up in
    while todo:
        name, scope = todo.pop(0)
        if name in seen or name not in scope:
            continue
        seen.add(name)
        obj = scope[name]
        if obj is None or isinstance(obj, (int, float)):  # a flag of a factory too
            consts.append(f"{name} = {obj!r}\n")
            continue
        if inspect.ismodule(obj):  # `import numba as nb` for `@nb.njit`
            consts.append(f"import {obj.__name__} as {name}\n")
            continue
        fn = getattr(obj, "py_func", obj)
        if not ((inspect.isfunction(fn) or inspect.isclass(fn))
                and (name in names or fn.__module__ == scope.get("__name__"))):
            consts += _import_of(name, obj, scope)  # numba's objmode, numpy's sqrt, ...
            continue
        try:
            source = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError):
            raise CheckFailed(f"the source of `{name}` cannot be found: define it in a "
                              "notebook cell") from None
        inner = fn.__globals__ if inspect.isfunction(fn) else scope
        if inspect.isfunction(fn) and fn.__closure__:  # made by a factory: what it closes
            # over becomes a global of the definitions' module, next to the source
            inner = {**inner, **_closed_over(fn)}
        if fn.__name__ == "<lambda>":  # `f = lambda sch: sch`: the expression alone
            funcs.append(f"{name} = {_lambda_text(source)}\n")
            todo += [(n, inner) for n in sorted(_globals_used(fn))]
            continue
        tree = ast.parse(source).body[0]
        if tree.name != name:  # defined under another name, then assigned
            funcs.append(f"{name} = {tree.name}\n")
        funcs.append(source)
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} \
            if inspect.isclass(fn) else _globals_used(fn)
        used |= {n.id for d in tree.decorator_list for n in ast.walk(d)
                 if isinstance(n, ast.Name)}
        todo += [(n, inner) for n in sorted(used)]
    return "\n".join([_PRELUDE, *consts, *funcs[::-1]])
