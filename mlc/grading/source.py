"""The notebook's source, read by the grader: for checks of *how* a function is written.

Some exercises grade a technique, not only a result ("compact must not call as_strided",
"parallel_sum loops with prange"). Asking the worker would mean trusting the student's
process to describe its own code, so the grader reads the notebook file instead: it
finds the last top-level definition of a name in the code cells (the one a notebook run
from top to bottom keeps) and looks at its syntax tree.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass


def _python(cell: str) -> str:
    """A cell as plain Python: IPython's own transform turns magics into calls."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # without IPython: drop magic lines, which are not Python
        return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln
                         for ln in cell.split("\n"))
    return TransformerManager().transform_cell(cell)


@dataclass
class Definition:
    name: str
    text: str
    tree: ast.AST

    def names(self) -> set[str]:
        """Every identifier and attribute name the definition mentions."""
        out = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name):
                out.add(node.id)
            elif isinstance(node, ast.Attribute):
                out.add(node.attr)
            elif isinstance(node, ast.alias):
                out.add(node.asname or node.name)
        return out

    def calls(self) -> set[str]:
        """The names of everything the definition calls (``np.ndarray(...)`` -> ndarray)."""
        out = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Name):
                    out.add(f.id)
                elif isinstance(f, ast.Attribute):
                    out.add(f.attr)
        return out

    def loops(self) -> int:
        """How many ``for``/``while`` loops the definition contains."""
        return sum(isinstance(n, (ast.For, ast.While)) for n in ast.walk(self.tree))


class Sources:
    """The code cells of one notebook, searchable by the names they define."""

    def __init__(self, cells: list[str]):
        self.cells = list(cells)
        self._defs: dict[str, Definition] = {}
        for cell in self.cells:
            try:
                code = _python(cell)
                tree = ast.parse(code)
            except (SyntaxError, ValueError):
                continue  # a cell that does not parse defines nothing the grader can read
            for node in tree.body:
                for name in _defined_names(node):
                    text = ast.get_source_segment(code, node) or ""
                    self._defs[name] = Definition(name, text, node)

    def definition(self, name: str) -> Definition | None:
        """The last top-level definition of ``name`` (def, class or assignment), or None."""
        return self._defs.get(name)

    def reachable(self, name: str, skip=()) -> list[Definition]:
        """The definition of ``name`` and of every notebook function it calls, directly or
        through others (those in ``skip`` left out): what a rule about how ``name`` is
        written must read, since a helper cell can hold the part it forbids."""
        out, todo, seen = [], [name], set(skip)
        while todo:
            n = todo.pop()
            d = self.definition(n)
            if d is None or n in seen:
                continue
            seen.add(n)
            out.append(d)
            todo += sorted(d.calls())
        return out

    def cells_using(self, module: str) -> list[int]:
        """Code cells (from 0) that import ``module`` (e.g. ``"mlc.quant"``) or reach it as
        an attribute (``mlc.quant.x``): for exercises that must not call the library they
        rebuild. Comments and strings do not count."""
        parent, _, leaf = module.rpartition(".")
        out = []
        for index, cell in enumerate(self.cells):
            try:
                tree = ast.parse(_python(cell))
            except (SyntaxError, ValueError):
                continue
            if any(_uses(node, module, parent, leaf) for node in ast.walk(tree)):
                out.append(index)
        return out


def cell_label(index: int) -> str:
    """How messages name code cell ``index`` (counted from 0 among the code cells): from 1,
    in brackets, the number JupyterLab shows beside it after Run All."""
    return f"cell [{index + 1}]"


def _uses(node: ast.AST, module: str, parent: str, leaf: str) -> bool:
    inside = (module, module + ".")
    if isinstance(node, ast.ImportFrom) and node.module:
        return (node.module == module or node.module.startswith(inside[1])
                or (node.module == parent and any(a.name == leaf for a in node.names)))
    if isinstance(node, ast.Import):
        return any(a.name == module or a.name.startswith(inside[1]) for a in node.names)
    if isinstance(node, ast.Attribute) and node.attr == leaf and parent:
        return isinstance(node.value, ast.Name) and node.value.id == parent
    return False


def _defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    targets = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    return [t.id for t in targets if isinstance(t, ast.Name)]
