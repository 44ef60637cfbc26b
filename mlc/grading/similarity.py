"""Near-copies across a class, for the instructor to review (``grades/similarity.csv``).

For each exercise, the functions it grades (its ``needs``) are read from every student's
notebook, *normalised* and compared pairwise, and with the library's own implementation
of what the exercise rebuilds (``Exercise.rebuilds``). Normalising, as MOSS does for
text, removes what a copier changes cheaply: names of arguments and locals become their
order of first use, docstrings and comments go, the function's own name goes. What is
left is the shape of the code: a sequence of AST nodes, compared with
:class:`difflib.SequenceMatcher`.

A pair above the threshold is a lead, never a verdict: two students may write the same
six lines of a short function honestly. It changes no score.
"""

from __future__ import annotations

import ast
import csv
import difflib
import importlib
import inspect
import textwrap
from itertools import combinations
from pathlib import Path

from .registry import Exercise

LIBRARY = "(library)"


class _Rename(ast.NodeTransformer):
    def __init__(self):
        self.names: dict[str, str] = {}

    def _name(self, name: str) -> str:
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node):
        return ast.copy_location(ast.Name(self._name(node.id), node.ctx), node)

    def visit_arg(self, node):
        node.arg, node.annotation = self._name(node.arg), None
        return node


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(getattr(body[0], "value", None), ast.Constant) and \
                isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]


def tokens(fn: ast.FunctionDef) -> list[str]:
    """The normalised token stream of one function definition."""
    tree = ast.parse(ast.unparse(fn))  # a copy to rewrite
    node = tree.body[0]
    node.name, node.decorator_list, node.returns = "f", [], None
    _strip_docstrings(node)
    _Rename().visit(node)
    out = []
    for sub in ast.walk(node):
        out.append(type(sub).__name__)
        if isinstance(sub, ast.Name):
            out.append(sub.id)
        elif isinstance(sub, ast.Constant):
            out.append(repr(sub.value)[:20])
        elif isinstance(sub, ast.Attribute):
            out.append(sub.attr)
    return out


def _is_stub(fn: ast.FunctionDef | ast.ClassDef) -> bool:
    return any(isinstance(n, ast.Raise) and "NotImplementedError" in ast.unparse(n)
               for n in ast.walk(fn))


def definitions(cells: list[str], names: tuple[str, ...]) -> dict[str, list[str]]:
    """The last definition of each of ``names`` in ``cells`` as tokens (stubs left out)."""
    found: dict[str, list[str]] = {}
    for source in cells:
        try:
            tree = ast.parse(source)
        except SyntaxError:  # IPython magics, broken cells: no definition to compare
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
                if _is_stub(node):
                    found.pop(node.name, None)
                else:
                    found[node.name] = tokens(node)
    return found


def library_tokens(ex: Exercise) -> list[str]:
    """The tokens of the library code that ``ex`` rebuilds (its first ``rebuilds`` entry)."""
    for dotted in ex.rebuilds:
        module, _, rest = dotted.partition(":")
        try:
            obj = importlib.import_module(module)
            for part in rest.split("."):
                obj = getattr(obj, part)
            src = textwrap.dedent(inspect.getsource(getattr(obj, "py_func", obj)))
            node = ast.parse(src).body[0]
        except (ImportError, AttributeError, OSError, TypeError, SyntaxError, IndexError):
            continue
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):  # an observer is a class
            return tokens(node)
    return []


def similarity(a: list[str], b: list[str]) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def near_copies(subs: dict[str, list[str]], exercises: list[Exercise],
                threshold: float = 0.9, min_tokens: int = 40) -> list[tuple]:
    """``(exercise, student_a, student_b, similarity)`` for every pair of submissions
    (``subs``: student -> code cells) whose graded functions are at least ``threshold``
    alike; ``student_b`` is ``"(library)"`` for a near-copy of the library's code.
    Functions shorter than ``min_tokens`` are too short to say anything."""
    rows = []
    for ex in exercises:
        if not ex.needs:
            continue
        code = {}
        for student, cells in subs.items():
            defs = definitions(cells, ex.needs)
            if len(defs) == len(ex.needs):
                code[student] = [t for n in ex.needs for t in defs[n]]
        lib = library_tokens(ex)
        if lib:
            code[LIBRARY] = lib
        for a, b in combinations(sorted(code, key=lambda s: (s == LIBRARY, s)), 2):
            if min(len(code[a]), len(code[b])) < min_tokens:
                continue
            score = similarity(code[a], code[b])
            if score >= threshold:
                rows.append((ex.id, a, b, round(score, 3)))
    return sorted(rows, key=lambda r: (r[0], -r[3], r[1], r[2]))


def write_csv(rows: list[tuple], path: Path | str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["exercise", "student", "other", "similarity"])
        out.writerows(rows)
